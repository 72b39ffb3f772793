package worker

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Waiting is where a command spends most of its life under throttling. While
// it waits it keeps its broker lease and its ledger leases alive; a wait
// longer than the hand-back threshold, or a drain, returns the message to the
// broker instead of holding a slot.

// reservationWaiter is a pacer reservation.
type reservationWaiter interface {
	Cancel()
	Wait(ctx context.Context) error
}

// wait sleeps d (keeping leases alive) and reports whether the job goes on;
// false means the message was handed back.
func (j *job) wait(d time.Duration) bool {
	if d > j.p.cfg.HandbackAfter && !j.m.Last() {
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
	if delay > j.p.cfg.HandbackAfter && !j.m.Last() {
		r.Cancel()
		j.handBack(delay, "throttle wait longer than the hand-back threshold")
		return false
	}
	return j.keepAliveWhile(r.Wait)
}

// keepAliveWhile runs f, renewing the broker and ledger leases meanwhile.
// When the worker drains, f's context ends and the message is handed back.
func (j *job) keepAliveWhile(f func(ctx context.Context) error) bool {
	ctx, cancel := context.WithCancel(j.p.drain)
	var wg sync.WaitGroup
	var renewErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(j.p.cfg.KeepAliveEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := j.renew(); err != nil {
					renewErr = err
					cancel()
					return
				}
			}
		}
	}()
	err := f(ctx)
	cancel()
	wg.Wait()
	switch {
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
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(j.p.cfg.KeepAliveEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := j.renew(); err != nil {
					j.log.Warn("lease renewal failed during a Graph call", "err", err)
				}
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
}

// renew extends every lease the job holds.
func (j *job) renew() error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.p.stop), 5*time.Second)
	defer cancel()
	if err := j.m.KeepAlive(ctx); err != nil {
		j.log.Warn("broker keep-alive failed", "err", err)
	}
	if j.claim != nil {
		if err := j.claim.Renew(ctx); err != nil {
			return err
		}
	}
	if j.lease != nil {
		if err := j.lease.Renew(ctx); err != nil {
			return err
		}
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
