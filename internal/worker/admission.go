package worker

import (
	"math"
	"time"
)

// Admissible is how many messages the worker can use now, for the broker
// adapter's fetch loop: it makes concurrency follow the pacers instead of a
// fixed count.
//
//   - While every operation's throttle gate stays closed for more than a
//     second, 0: fetching pauses and the backlog waits in the broker, where
//     waiting costs no delivery attempt and no hand-back.
//   - While paced, what the pacers let leave within half the hand-back
//     threshold (rate × HandbackAfter/2, at least 1): a message pulled beyond
//     that would only wait and be handed back.
//   - While open (Graph has not throttled), no limit beyond the configured
//     concurrency.
func (p *Processor) Admissible() int {
	now := p.Now()
	total, gated := 0.0, 0
	for _, pc := range p.Pacers {
		if pc.ThrottledUntil().Sub(now) > time.Second {
			gated++
			continue
		}
		total += pc.Rate()
	}
	switch {
	case gated == len(p.Pacers):
		return 0
	case math.IsInf(total, 1) || total*p.cfg.HandbackAfter.Seconds() > math.MaxInt32:
		return math.MaxInt32
	}
	return max(1, int(math.Ceil(total*p.cfg.HandbackAfter.Seconds()/2)))
}
