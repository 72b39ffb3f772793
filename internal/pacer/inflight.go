package pacer

import (
	"math"
	"time"
)

// Little's law: a process sending at rate r calls whose answers take L
// keeps r·L calls in flight. What it fetches from the broker must also
// cover the time a command spends before its call (the fetch, the ledger
// claim, the wait for its slot) and after it (the record, the ack), and
// Graph's latency varies from call to call and rises under load. The
// headroom below covers both: twice the measured latency plus a fixed lead.
const (
	// latencyHeadroom multiplies the measured latency: answers that take
	// up to twice the average still find the next call ready to leave.
	latencyHeadroom = 2.0
	// leadTime is the time a command spends in the process outside its
	// Graph call, with room to spare: a broker fetch and a ledger claim
	// before it, a ledger record and an ack after (milliseconds each on a
	// quiet machine, tens on a loaded one).
	leadTime = 250 * time.Millisecond
)

// InFlight is how many commands of this operation the process can work on
// at once now, waits for a departure slot included: the bound on what the
// broker adapter fetches, so that the backlog stays in the broker instead
// of waiting here with its lease running.
//
//   - Paced: rate × (latencyHeadroom × latency + leadTime), Little's law
//     with headroom; latency is the smoothed time from a call's departure
//     to its outcome (Succeeded, Throttled or Failed), 0 before the first.
//   - Open, in the slow start: twice the window (the window's calls and as
//     many ready to leave as each lands).
//   - Open after the slow start: +Inf (Graph has not throttled; only the
//     caller's cap bounds it).
func (p *Pacer) InFlight() float64 {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rateLocked(now)
	if math.IsInf(r, 1) {
		if p.slowStartLocked(now) {
			return float64(2 * max(1, p.window))
		}
		return math.Inf(1)
	}
	return inFlight(r, p.latency)
}

// inFlight is the Little's-law bound of InFlight for a rate and latency.
func inFlight(rate float64, latency time.Duration) float64 {
	return rate * (latencyHeadroom*latency.Seconds() + leadTime.Seconds())
}

// Latency is the smoothed time from a call's departure to its outcome (an
// exponential average over about the last eight calls); 0 before the first
// outcome.
func (p *Pacer) Latency() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latency
}
