package worker

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Waiting is where a command spends most of its life under throttling. While
// it waits it keeps its ledger leases alive (the consumer runner keeps the
// broker lease); a wait longer than the hand-back threshold, or a drain,
// returns the message to the broker instead of holding a slot, except a
// message kept in order (a Service Bus session), which waits in place.

// reservationWaiter is a pacer reservation.
type reservationWaiter interface {
	Cancel()
	Wait(ctx context.Context) error
}

// wait sleeps d (keeping leases alive) and reports whether the job goes on;
// false means the message was handed back.
func (j *job) wait(d time.Duration) bool {
	if d > j.p.cfg.HandbackAfter && !j.m.Last() && !j.m.InOrder() {
		j.handBack(d, "retry wait longer than the hand-back threshold")
		return false
	}
	return j.keepAliveWhile(func(ctx context.Context) error {
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

// waitFor waits for a pacer reservation of the given delay.
func (j *job) waitFor(delay time.Duration, r reservationWaiter) bool {
	if delay > j.p.cfg.HandbackAfter && !j.m.Last() && !j.m.InOrder() {
		r.Cancel()
		j.handBack(delay, "throttle wait longer than the hand-back threshold")
		return false
	}
	return j.keepAliveWhile(r.Wait)
}

// keepAliveWhile runs f, renewing the broker and ledger leases meanwhile.
// When the worker drains, f's context ends and the message is handed back;
// when a renewal fails (another owner took over), f is stopped and the job
// abandoned.
func (j *job) keepAliveWhile(f func(ctx context.Context) error) bool {
	ctx, cancel := context.WithCancel(j.p.drain)
	stopRenewing := j.renewEvery(func(error) bool { cancel(); return true })
	err := f(ctx)
	cancel()
	switch renewErr := stopRenewing(); {
	case renewErr != nil:
		j.abandon("lease lost while waiting", renewErr)
		return false
	case err != nil:
		j.handBack(0, "draining")
		return false
	}
	return true
}

// renewDuring runs f (a Graph call, which must not be interrupted by a
// drain) while renewing the job's leases. A failed renewal cannot stop the
// call; it is logged, and settling copes with a claim taken over meanwhile.
func (j *job) renewDuring(f func()) {
	stopRenewing := j.renewEvery(func(err error) bool {
		j.warn("lease renewal failed during a Graph call", "err", err)
		return false
	})
	f()
	stopRenewing()
}

// renewEvery renews the job's leases every KeepAliveEvery in the
// background. A failed renewal is passed to onErr, which says whether
// renewing stops there. The returned function stops renewing, waits for a
// renewal under way, and returns the failure that stopped it, if any. The
// job's claim and lease must not be touched elsewhere until then.
//
// It is a timer, not a goroutine with a ticker: nearly every Graph call
// ends long before its first renewal, and a goroutine per call cost more
// than the rest of the wait's bookkeeping.
func (j *job) renewEvery(onErr func(error) (stop bool)) func() error {
	every := j.p.cfg.KeepAliveEvery
	var (
		mu      sync.Mutex // held by a renewal, so that stopping waits for it
		stopped bool
		failed  error
		t       *time.Timer
	)
	mu.Lock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if err := j.renew(); err != nil && onErr(err) {
			failed = err
			return
		}
		t.Reset(every)
	})
	mu.Unlock()
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
		return failed
	}
}

// renew extends the job's ledger leases. The broker's lease on the message
// is renewed by the consumer runner, from the message's own lock expiry.
func (j *job) renew() error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.p.stop), 5*time.Second)
	defer cancel()
	if j.claim != nil {
		return j.claim.Renew(ctx)
	}
	return nil
}

// newBackoff is the exponential backoff with jitter between non-throttle
// retries. The retry budget is enforced by the caller from the first
// attempt (which survives hand-backs), not by the backoff.
func newBackoff(initial, maxInterval time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = initial
	b.MaxInterval = maxInterval
	b.RandomizationFactor = 0.5
	b.Multiplier = 2
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// jitter is a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
