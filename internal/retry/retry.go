// Package retry is the one way the worker retries: exponential backoff with
// jitter from github.com/cenkalti/backoff/v4, bounded by a number of tries
// and by the caller's context. Graph calls, store writes, broker receives and
// the pacer's fleet sync all retry through it; what is worth retrying is the
// caller's decision (return backoff.Permanent to stop at once).
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Policy says how to retry.
type Policy struct {
	// Initial and Max bound the waits between tries (Max defaults to 30 s).
	// Initial 0 retries at once: for a compare-and-swap that lost a race,
	// where each try reads afresh and waiting only lets more writers in.
	Initial, Max time.Duration
	// Tries bounds the attempts, the first included; 0 retries until the
	// context ends.
	Tries int
	// PerTry bounds each try; 0 leaves it to the caller's context.
	PerTry time.Duration
}

// Backoff returns the policy's waits: exponential from Initial, doubling,
// at most Max, each randomised by ±50 %, with no elapsed-time limit (the
// caller's budget decides).
func (p Policy) Backoff() backoff.BackOff {
	if p.Initial <= 0 {
		return &backoff.ZeroBackOff{}
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = p.Initial
	b.MaxInterval = p.Max
	if b.MaxInterval <= 0 {
		b.MaxInterval = 30 * time.Second
	}
	b.RandomizationFactor = 0.5
	b.Multiplier = 2
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// Do calls f until it succeeds, returns a backoff.Permanent error, the
// tries are spent or ctx ends, waiting the policy's backoff between tries.
// It returns f's last error (unwrapped from Permanent).
func Do(ctx context.Context, p Policy, f func(ctx context.Context) error) error {
	b := p.Backoff()
	if p.Tries > 0 {
		b = backoff.WithMaxRetries(b, uint64(p.Tries-1))
	}
	var last error
	err := backoff.Retry(func() error {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if p.PerTry > 0 {
			tctx, cancel = context.WithTimeout(ctx, p.PerTry)
		}
		defer cancel()
		last = f(tctx)
		return last
	}, backoff.WithContext(b, ctx))
	if err != nil && last != nil {
		var pe *backoff.PermanentError
		if errors.As(last, &pe) {
			return pe.Err
		}
		return last
	}
	return err
}
