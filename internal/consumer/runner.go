package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/graphops/worker/internal/retry"
)

// Leased is a message as an adapter hands it to the Runner: a Message and
// the instant the broker's lock on it ends (Service Bus LockedUntil; on
// JetStream the ack wait counted from the delivery or the last InProgress).
// KeepAlive moves that instant on.
type Leased interface {
	Message
	LockedUntil() time.Time
	// Done is called once the handler has returned (settled or not), so
	// that the adapter can free what the message held (a Service Bus
	// session).
	Done()
}

// Receiver is what an adapter implements for the Runner: everything else a
// broker needs (slots, handler goroutines, backoff, lock renewal, the
// hand-back at shutdown) is the Runner's.
type Receiver interface {
	// Receive asks the broker for up to n messages and calls deliver for
	// each as it arrives (so the first one need not wait for the others),
	// then returns when its request ends: filled, expired after a wait of
	// the adapter's choosing, or failed. It must call deliver for every
	// message the broker sent it before returning, ctx done or not: a
	// message received and dropped waits out its lock. An error wrapping
	// ErrClosed ends Run; any other is retried with backoff.
	Receive(ctx context.Context, n int, deliver func(Leased)) error
}

// ErrClosed is wrapped by a Receive error after which no Receive can work
// again (the connection was closed for good).
var ErrClosed = errors.New("consumer: closed for good")

// ErrLockLost is wrapped by the errors of a renewal or settlement that came
// too late: the broker has released the message and will deliver it again.
var ErrLockLost = errors.New("message lock lost; the broker delivers the message again")

// ErrRunning is returned by a second Run while one is running.
var ErrRunning = errors.New("consumer: Run is already running")

// Config sets the Runner's limits. Zero fields take their defaults.
type Config struct {
	// Concurrency caps the handlers running at once, and so the messages
	// held (WORKER_CONCURRENCY); default 16.
	Concurrency int
	// Limit, when set, caps the messages in flight below Concurrency at
	// what the worker can use now (see Slots); 0 pauses receiving.
	Limit func() int
	// RetryMin and RetryMax bound the exponential backoff after a failed
	// Receive; defaults 100ms and 5s.
	RetryMin, RetryMax time.Duration
	// NotStartedDelay is the hand-back delay of a message received but not
	// started (it came during a drain); default 0, at once. A broker whose
	// receive stays open during the drain (JetStream's pull request) sets
	// it past that, or the message comes straight back into it, a delivery
	// spent each time.
	NotStartedDelay time.Duration
	// Log receives the Runner's warnings; nil discards.
	Log *slog.Logger
}

// Config defaults.
const (
	DefaultConcurrency = 16
	defaultRetryMin    = 100 * time.Millisecond
	defaultRetryMax    = 5 * time.Second
	// settleTimeout bounds a hand-back at shutdown, when Run's ctx is done
	// already.
	settleTimeout = 10 * time.Second
)

// ConfigError names the setting that is wrong.
type ConfigError struct {
	// Setting is the environment variable where docs/SPEC.md §5 names one
	// (WORKER_CONCURRENCY, SERVICEBUS_QUEUE…), else the Config field.
	Setting string
	Problem string
}

func (e *ConfigError) Error() string { return e.Setting + " " + e.Problem }

// Validate fills zero fields with their defaults and reports the first
// setting that is wrong.
func (c *Config) Validate() error {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.RetryMin == 0 {
		c.RetryMin = defaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = defaultRetryMax
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Concurrency < 1:
		return &ConfigError{Setting: "WORKER_CONCURRENCY", Problem: fmt.Sprintf("must be ≥ 1, got %d", c.Concurrency)}
	case c.RetryMin < 0 || c.RetryMax < c.RetryMin:
		return &ConfigError{Setting: "RetryMax", Problem: fmt.Sprintf("must be ≥ RetryMin (%s), got %s", c.RetryMin, c.RetryMax)}
	}
	return nil
}

// Runner is the one fetch loop of every broker: it receives no more
// messages than there are free handler slots, runs a handler per message on
// a goroutine of its own, renews the lock of every message a handler holds,
// backs off on broker errors, and at shutdown hands back what it received
// but did not start.
type Runner struct {
	cfg     Config
	recv    Receiver
	running atomic.Bool
}

// NewRunner validates cfg and returns a Runner receiving from recv.
func NewRunner(recv Receiver, cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, recv: recv}, nil
}

// Run receives messages and calls h for each, at most Concurrency at once,
// until ctx is done. Each message's lock is renewed from its own expiry
// until h returns (h settles the message; one left unsettled goes back to
// the broker when its lock ends).
//
// When ctx is done Run stops receiving, hands back at once every message
// it received but did not give to a handler (except a last delivery, which
// the broker would drop: that one is handled), waits for the running
// handlers and returns nil. Receive errors are logged and retried with
// backoff; Run returns an error only for one wrapping ErrClosed.
func (r *Runner) Run(ctx context.Context, h Handler) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)

	free := NewSlots(r.cfg.Concurrency, r.cfg.Limit)
	var handlers sync.WaitGroup
	defer handlers.Wait()
	retry := r.newBackOff()
	for {
		n := free.Acquire(ctx)
		if n == 0 {
			return nil
		}
		started := 0
		err := r.recv.Receive(ctx, n, func(m Leased) {
			// ctx is looked at per message: one received in the instant
			// the drain starts is either started here or handed back,
			// never left.
			if (ctx.Err() != nil && !m.Last()) || started == n {
				r.handBackNow(m)
				return
			}
			started++
			handlers.Go(func() {
				defer free.Release()
				r.handle(m, h)
			})
		})
		for range n - started {
			free.Release()
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			retry.Reset()
			continue
		case errors.Is(err, ErrClosed):
			return err
		}
		wait := retry.NextBackOff()
		r.cfg.Log.Warn("receive failed; retrying", "err", err, "retry_in", wait)
		if !Sleep(ctx, wait) {
			return nil
		}
	}
}

// newBackOff is the wait between failed receives: a broker outage is
// waited out, however long.
func (r *Runner) newBackOff() backoff.BackOff {
	return retry.Policy{Initial: r.cfg.RetryMin, Max: r.cfg.RetryMax}.Backoff()
}

// handBackNow returns a message received but not started, so that another
// replica may take it (after NotStartedDelay).
func (r *Runner) handBackNow(m Leased) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if err := m.HandBack(ctx, r.cfg.NotStartedDelay); err != nil {
		r.cfg.Log.Warn("cannot hand back a message at shutdown; its lock will expire", "id", m.ID(), "err", err)
	}
}

// handle runs h on m while keeping m's lock alive.
func (r *Runner) handle(m Leased, h Handler) {
	k := keep(m, r.cfg.Log)
	defer m.Done()
	defer k.stop()
	h(k)
}
