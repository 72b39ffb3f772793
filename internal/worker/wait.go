package worker

import (
	"context"
	"math/rand/v2"
	"time"
)

// Waiting is where a command spends most of its life under throttling. The
// broker keeps the message alive meanwhile (the consumer's runner renews
// it from its own lock expiry); the job keeps its ledger claim alive with
// one timer from receipt to settlement, whatever it waits for. A wait longer
// than the hand-back threshold, or a drain, returns the message to the
// broker instead of holding a slot.

// reservationWaiter is a pacer reservation.
type reservationWaiter interface {
	Cancel()
	Wait(ctx context.Context) error
}

// wait sleeps d, logging why, and returns nil when the job goes on, or the
// outcome that ends it (a hand-back, or the claim lost meanwhile).
func (j *job) wait(d time.Duration, kind, why string) *Outcome {
	if d > j.p.cfg.HandbackAfter && j.mayHandBack() {
		o := handBack(d, kind+" wait longer than the hand-back threshold: "+why)
		return &o
	}
	j.info("waiting", "wait", kind, "why", why, "for", d.Round(time.Millisecond), "until", j.p.Now().Add(d).UTC())
	return j.block(func(ctx context.Context) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// waitFor waits for a pacer reservation of the given delay: the throttle
// gate, or the rate.
func (j *job) waitFor(delay time.Duration, r reservationWaiter, gateUntil time.Time) *Outcome {
	if delay > j.p.cfg.HandbackAfter && j.mayHandBack() {
		r.Cancel()
		o := handBack(delay, "throttle wait longer than the hand-back threshold")
		return &o
	}
	// Waits for the rate alone are short and many; a closed gate (Graph
	// throttled) is a decision worth its line.
	if now := j.p.Now(); gateUntil.After(now) || delay >= time.Second {
		j.info("waiting", "wait", "throttle", "why", "throttle gate closed until Retry-After, then paced",
			"for", delay.Round(time.Millisecond), "until", now.Add(delay).UTC(), "gate_until", gateUntil.UTC())
	}
	return j.block(r.Wait)
}

// block runs f until it returns or the job's context ends (a drain, or the
// claim lost), which ends the job.
func (j *job) block(f func(ctx context.Context) error) *Outcome {
	if err := f(j.ctx); err != nil && j.ctx.Err() != nil {
		return j.interrupted()
	}
	return nil
}

// interrupted is the outcome of a wait cut short: the claim was lost
// (another owner settles the command), or the worker drains (the message
// goes back at once).
func (j *job) interrupted() *Outcome {
	j.mu.Lock()
	lost := j.leaseLost
	j.mu.Unlock()
	var o Outcome
	if lost != nil {
		o = leave("claim lost while waiting", lost)
	} else {
		o = handBack(0, "draining")
	}
	return &o
}

// mayHandBack reports whether a long wait may go back to the broker: not a
// last delivery (the broker would drop it), and not a session's message
// (it keeps its place, and the later commands of its session wait behind it).
func (j *job) mayHandBack() bool {
	return !j.m.Last() && !j.m.InOrder()
}

// holdClaim makes sure the claim lasts at least margin more: a Graph call
// must not start on a claim another replica may take over during it.
func (j *job) holdClaim(margin time.Duration) *Outcome {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.claim.Held(margin) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.p.stop), 5*time.Second)
	defer cancel()
	if err := j.claim.Renew(ctx); err != nil {
		o := leave("claim lost before the call", err)
		return &o
	}
	return nil
}

// startRenewing renews the job's ledger claim every KeepAliveEvery from receipt
// until stopRenewing: one timer for the job's whole life, across every
// wait and call, never restarted per wait. A claim renewal that fails (the
// claim was taken over) ends the job's waits.
func (j *job) startRenewing() {
	every := j.p.cfg.KeepAliveEvery
	j.mu.Lock()
	defer j.mu.Unlock()
	j.renewTimer = time.AfterFunc(every, func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.renewOff {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(j.p.stop), 5*time.Second)
		defer cancel()
		if j.claim != nil && j.leaseLost == nil && !j.claimDone {
			if err := j.claim.Renew(ctx); err != nil {
				j.leaseLost = err
				j.warn("claim renewal failed", "err", err)
				j.cancel()
				return
			}
		}
		j.renewTimer.Reset(every)
	})
}

// stopRenewing stops the renewals, waiting for one under way; the claim is
// the job's alone afterwards.
func (j *job) stopRenewing() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.renewOff = true
	j.renewTimer.Stop()
	j.cancel()
}

// jitter is a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
