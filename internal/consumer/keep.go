package consumer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/graphops/worker/internal/dlq"
)

// Renewal timing: a lock is renewed when half of its remaining time has
// passed, so a renewal that is slow or fails once still has the other
// half; never more often than minRenewEvery, and each renewal waits at most
// maxRenewWait for the broker.
const (
	minRenewEvery = 50 * time.Millisecond
	maxRenewWait  = 10 * time.Second
)

// kept is a message a handler holds. Its lock is renewed in the background,
// each renewal scheduled from the expiry the previous one obtained (not per
// wait of the handler, so no wait can outlast it), until the message is
// settled or the handler returns.
type kept struct {
	Leased
	log *slog.Logger

	mu      sync.Mutex // held by a renewal and a settlement: they never overlap
	timer   *time.Timer
	stopped bool // settled, handler returned, or lock lost
}

func keep(m Leased, log *slog.Logger) *kept {
	k := &kept{Leased: m, log: log}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.timer = time.AfterFunc(k.nextRenewal(), k.renew)
	return k
}

// nextRenewal is the wait until half of the lock's remaining time.
func (k *kept) nextRenewal() time.Duration {
	return max(time.Until(k.LockedUntil())/2, minRenewEvery)
}

func (k *kept) renew() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	wait := min(max(time.Until(k.LockedUntil()), time.Second), maxRenewWait)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	err := k.Leased.KeepAlive(ctx)
	cancel()
	if err != nil {
		if errors.Is(err, ErrLockLost) || time.Now().After(k.LockedUntil()) {
			// Logged once: the broker delivers the message again, and
			// the handler learns it when it settles.
			k.log.Warn("message lock lost; no longer renewing it", "id", k.ID(), "err", err)
			k.stopped = true
			return
		}
		k.log.Warn("lock renewal failed; trying again", "id", k.ID(), "err", err)
	}
	k.timer.Reset(k.nextRenewal())
}

// stop ends the renewals, waiting for one under way.
func (k *kept) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.timer.Stop()
}

// settle runs a settlement with no renewal under way; once it succeeds the
// message is no longer renewed.
func (k *kept) settle(f func() error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := f()
	if err == nil {
		k.stopped = true
		k.timer.Stop()
	}
	return err
}

func (k *kept) Ack(ctx context.Context) error {
	return k.settle(func() error { return k.Leased.Ack(ctx) })
}

func (k *kept) HandBack(ctx context.Context, delay time.Duration) error {
	return k.settle(func() error { return k.Leased.HandBack(ctx, delay) })
}

func (k *kept) DeadLetter(ctx context.Context, e dlq.Entry) error {
	return k.settle(func() error { return k.Leased.DeadLetter(ctx, e) })
}

// KeepAlive renews at once and schedules the next renewal from the new
// expiry.
func (k *kept) KeepAlive(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.Leased.KeepAlive(ctx)
	if err == nil && !k.stopped {
		k.timer.Reset(k.nextRenewal())
	}
	return err
}
