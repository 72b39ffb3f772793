package pacer

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"
)

// ErrCanceled is what Wait returns for a reservation that was canceled.
var ErrCanceled = errors.New("pacer: reservation canceled")

// recheckEvery bounds a waiter's sleep: the rate can rise while it waits (a
// ramp, a probe, a replica leaving), and its instant then comes earlier.
const recheckEvery = 100 * time.Millisecond

// windowWait is the Delay of a reservation held by the slow start: it waits
// for an earlier call's outcome, not for a time, and Wait wakes on that
// outcome. A caller of Ready asks again after its next outcome or this long.
const windowWait = 5 * time.Millisecond

// Slow start ends once the window has grown to slowStartEnd calls in flight
// or slowStartMax after the first call of the open phase, whichever comes
// first; the latter guards against a caller that loses outcomes. The window
// once ended at 64: against a Graph that answers in 300ms and more (R ×
// latency calls in flight reach 64 at 200/s, or sooner when answers are
// spread), the open pacer then let every admitted call leave at once (242
// calls in 250ms, 230 answered 429 at R = 100, 150-450ms).

const (
	slowStartEnd = 1024
	slowStartMax = 10 * time.Second
)

// maxFlight bounds the departures remembered for outcomes to come; a
// caller that loses outcomes cannot grow it.
const maxFlight = 4096

type resState uint8

const (
	resWaiting resState = iota
	resTaken
	resCanceled
)

// Reservation is one call's place in the departure queue of a Pacer. It is
// used by one goroutine, the one that will make the call.
type Reservation struct {
	p      *Pacer
	state  resState
	booked time.Time
}

// Reserve books the next departure slot for one call. When the call may
// leave at once the reservation is already taken (Delay is 0). Otherwise
// the caller waits (Wait) or gives the slot back (Cancel), e.g. to hand the
// message back to the broker when Delay is longer than it wants to hold it.
// Reserve never blocks on the fleet's store.
func (p *Pacer) Reserve() *Reservation {
	p.mu.Lock()
	now := p.clock.Now()
	r := &Reservation{p: p, booked: now}
	p.queue = append(p.queue, r)
	p.readyLocked(r, now)
	p.mu.Unlock()
	return r
}

// Delay is how long from now until the call may leave, as things stand:
// a throttle can push it later, a rising rate bring it earlier. Zero means
// the reservation is taken and the call may leave now; the caller then
// reports its outcome (Succeeded, Throttled or Failed). A canceled
// reservation has no delay.
func (r *Reservation) Delay() time.Duration {
	d, _ := r.Ready()
	return d
}

// Ready takes the reservation if its instant has come: it returns (0, true)
// and the call may leave now. Otherwise it returns how long to wait before
// asking again, and false. It is Wait without the waiting, for callers that
// run their own timers.
func (r *Reservation) Ready() (time.Duration, bool) {
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyLocked(r, p.clock.Now())
}

// Wait blocks until the call may leave, then returns nil: the reservation
// is taken. It re-checks at its instant: a throttle that closed the gate
// meanwhile makes it wait on, so no call leaves before a Retry-After
// instant, however early it was booked. When ctx ends first, Wait cancels
// the reservation and returns ctx.Err().
func (r *Reservation) Wait(ctx context.Context) error {
	p := r.p
	for {
		p.mu.Lock()
		d, ok := p.readyLocked(r, p.clock.Now())
		canceled := r.state == resCanceled
		changed := p.changed
		p.mu.Unlock()
		switch {
		case ok:
			return nil
		case canceled:
			return ErrCanceled
		}
		t := p.clock.NewTimer(min(d, recheckEvery))
		select {
		case <-ctx.Done():
			t.Stop()
			r.Cancel()
			return ctx.Err()
		case <-t.C():
		case <-changed:
			t.Stop()
		}
	}
}

// Cancel gives the slot back. On a taken reservation it says the call did
// not leave after all, and no outcome will be reported for it.
func (r *Reservation) Cancel() {
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.state {
	case resWaiting:
		p.dequeueLocked(r)
	case resTaken:
		if n := len(p.flight); n > 0 {
			p.flight = p.flight[:n-1]
		}
	default:
		return
	}
	r.state = resCanceled
	p.signalLocked()
}

// readyLocked takes r when it may leave at now, or says how long until it
// may. The departure schedule is computed afresh at every look, from the
// gate, the rate and r's place in the queue: nothing booked earlier can
// slip under a gate that closed later, and a rate cut applies to every
// call still waiting.
func (p *Pacer) readyLocked(r *Reservation, now time.Time) (time.Duration, bool) {
	switch r.state {
	case resTaken:
		return 0, true
	case resCanceled:
		return 0, false
	}
	k := slices.Index(p.queue, r)
	f := p.fleetRateLocked(now)
	var at time.Time
	var interval time.Duration
	if math.IsInf(f, 1) {
		at = p.view.Until
		if !at.After(now) && p.slowStartLocked(now) && len(p.flight)+p.heldLocked(now) >= p.window {
			if len(p.held) > 0 {
				return p.held[0].at.Sub(now), false
			}
			return windowWait, false
		}
	} else {
		n := float64(p.members)
		interval = seconds(n / f)
		base, phase := p.prev, 1.0
		if p.view.Until.After(p.prev) {
			// After a gate, the replicas leave staggered by their rank
			// in the fleet, with jitter: replicas whose gates open
			// together do not send together, and Graph sees the fleet's
			// calls evenly spread from the first one.
			base, phase = p.view.Until, (float64(p.rank)+p.cfg.Jitter*p.gateJitter)/n
		}
		at = p.law.advance(p.view.Curve, base, (phase+float64(k))*n)
	}
	if at.After(now) {
		if interval > 0 && !p.view.Until.After(now) {
			// Held back by the rate itself, not by a gate: this replica
			// uses its whole share.
			p.limitedAt = now
		}
		return at.Sub(now), false
	}
	p.dequeueLocked(r)
	r.state = resTaken
	p.flight = append(p.flight, now)
	if len(p.flight) > maxFlight {
		p.flight = slices.Delete(p.flight, 0, len(p.flight)-maxFlight)
	}
	p.departures.add(now)
	if interval > 0 {
		// A call that waited for its slot and is a little late keeps the
		// cadence (at most half an interval of credit); a call that finds
		// its slot long past (the process was idle) restarts it: no
		// bursts after a lull.
		p.prev = at
		if !at.After(r.booked) {
			p.prev = now
		} else if late := now.Add(-interval / 2); late.After(p.prev) {
			p.prev = late
		}
	} else {
		p.prev = now
		if p.slowStartAt.IsZero() {
			p.slowStartAt = now
		}
	}
	return 0, true
}

// held is n places in the slow start's window that an answer freed at
// at - slack (the answer's call landed, and the window grew): they are
// usable from at. Against a slow Graph the answers of one window come back
// together, successes and 429s mixed over a few milliseconds; a window sent
// at the first success met Graph's bucket still empty and drew 429s whose
// Retry-After, counted from their answers a round trip later, held the gate
// closed 0.3s longer (issue 15, one replica at 300ms). Held a slack, the
// next window does not leave when a 429 of the same window follows.
type held struct {
	at time.Time
	n  int
}

// heldLocked drops the held places usable at now and counts the others.
func (p *Pacer) heldLocked(now time.Time) int {
	i := 0
	for i < len(p.held) && !p.held[i].at.After(now) {
		i++
	}
	p.held = p.held[i:]
	n := 0
	for _, h := range p.held {
		n += h.n
	}
	return n
}

// slowStartLocked reports whether the slow-start window applies now.
func (p *Pacer) slowStartLocked(now time.Time) bool {
	if p.window >= slowStartEnd {
		return false
	}
	return p.slowStartAt.IsZero() || now.Sub(p.slowStartAt) < slowStartMax
}

func (p *Pacer) dequeueLocked(r *Reservation) {
	if i := slices.Index(p.queue, r); i >= 0 {
		p.queue = slices.Delete(p.queue, i, i+1)
	}
}

// signalLocked wakes every Wait to look again.
func (p *Pacer) signalLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}
