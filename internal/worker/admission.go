package worker

import (
	"math"
	"time"
)

// minAdmissible is the least Admissible while a gate is open: the fixed
// WORKER_CONCURRENCY default it replaced.
const minAdmissible = 16

// Admissible is how many messages the worker can use now, for the broker
// adapter's fetch loop (consumer.Slots' limit, under the WORKER_CONCURRENCY
// cap): it makes concurrency follow the pacers and Graph's latency instead
// of a fixed count.
//
//   - While every operation's throttle gate stays closed for more than a
//     second, 0: fetching pauses and the backlog waits in the broker, where
//     waiting costs no delivery attempt and no hand-back.
//   - Otherwise the sum of the pacers' InFlight: Little's law on the rate
//     each allows and the latency of its calls, with headroom (pacer.InFlight);
//     an open pacer past its slow start sets no limit (the cap does).
//   - Never more than the pacers let leave within half the hand-back
//     threshold (rate × HandbackAfter/2): a message pulled beyond that would
//     only wait and be handed back.
//   - At least minAdmissible (16), within that bound, and at least 1, while a
//     gate is open.
func (p *Processor) Admissible() int {
	now := p.Now()
	need, rate, gated := 0.0, 0.0, 0
	for _, pc := range p.Pacers {
		if pc.ThrottledUntil().Sub(now) > time.Second {
			gated++
			continue
		}
		need += pc.InFlight()
		rate += pc.Rate()
	}
	if gated == len(p.Pacers) {
		return 0
	}
	// Never under what a fixed concurrency gave before (16): at Graph's
	// zero latency the pipeline around the call (fetch, ledger claim,
	// record, ack) sets the pace, and on a loaded machine it takes longer
	// than the pacer's lead time allows for.
	need = max(need, minAdmissible)
	need = min(need, rate*p.cfg.HandbackAfter.Seconds()/2)
	if math.IsInf(need, 1) || need > math.MaxInt32 {
		return math.MaxInt32
	}
	return max(1, int(math.Ceil(need)))
}
