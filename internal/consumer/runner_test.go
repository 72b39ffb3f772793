package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/consumertest"
	"github.com/graphops/worker/internal/dlq"
)

// fakeMsg is a delivery with a lock of its own: KeepAlive moves the lock
// lockFor on from now, and records whether it came before the lock ended.
type fakeMsg struct {
	id      string
	last    bool
	lockFor time.Duration
	renewFn func() error // nil: renewals succeed

	mu         sync.Mutex
	lockedTill time.Time
	renewals   int
	lapsed     bool // a renewal came after the lock had ended
	acked      int
	handedBack []time.Duration
}

func newMsg(id string, lockFor time.Duration) *fakeMsg {
	return &fakeMsg{id: id, lockFor: lockFor, lockedTill: time.Now().Add(lockFor)}
}

func (m *fakeMsg) Data() []byte           { return []byte(m.id) }
func (m *fakeMsg) Subject() string        { return "s" }
func (m *fakeMsg) Header(string) string   { return "" }
func (m *fakeMsg) Delivery() int          { return 1 }
func (m *fakeMsg) Last() bool             { return m.last }
func (m *fakeMsg) ID() string             { return m.id }
func (m *fakeMsg) LockedUntil() time.Time { m.mu.Lock(); defer m.mu.Unlock(); return m.lockedTill }

func (m *fakeMsg) KeepAlive(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renewals++
	if m.renewFn != nil {
		if err := m.renewFn(); err != nil {
			return err
		}
	}
	now := time.Now()
	if now.After(m.lockedTill) {
		m.lapsed = true
	}
	m.lockedTill = now.Add(m.lockFor)
	return nil
}

func (m *fakeMsg) InOrder() bool { return false }
func (m *fakeMsg) Done()         {}

func (m *fakeMsg) DeadLetter(context.Context, dlq.Entry) error { return m.Ack(context.Background()) }

func (m *fakeMsg) Ack(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked++
	return nil
}

func (m *fakeMsg) HandBack(_ context.Context, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handedBack = append(m.handedBack, d)
	return nil
}

func (m *fakeMsg) state() (renewals, acked, handedBack int, lapsed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.renewals, m.acked, len(m.handedBack), m.lapsed
}

// fakeReceiver hands out queued messages, at most n per Receive, and
// records what it was asked for.
type fakeReceiver struct {
	mu      sync.Mutex
	queue   []*fakeMsg
	asks    []int
	errs    []error                              // returned by the next Receives, in order
	onEmpty func(ctx context.Context) []*fakeMsg // called when the queue is empty
}

func (r *fakeReceiver) Receive(ctx context.Context, n int, deliver func(consumer.Leased)) error {
	r.mu.Lock()
	r.asks = append(r.asks, n)
	if len(r.errs) > 0 {
		err := r.errs[0]
		r.errs = r.errs[1:]
		r.mu.Unlock()
		return err
	}
	take := r.queue[:min(n, len(r.queue))]
	r.queue = r.queue[len(take):]
	onEmpty := r.onEmpty
	r.mu.Unlock()
	if len(take) == 0 {
		if onEmpty != nil {
			take = onEmpty(ctx)
		} else {
			consumer.Sleep(ctx, 5*time.Millisecond)
		}
	}
	for _, m := range take {
		deliver(m)
	}
	return nil
}

func runner(t *testing.T, r consumer.Receiver, cfg consumer.Config) *consumer.Runner {
	t.Helper()
	run, err := consumer.NewRunner(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func TestRunnerKeepsAtMostConcurrencyHandlersAndAsksOnlyForFreeSlots(t *testing.T) {
	recv := &fakeReceiver{}
	for i := range 40 {
		recv.queue = append(recv.queue, newMsg(fmt.Sprint(i), time.Minute))
	}
	var inFlight, most, handled atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runner(t, recv, consumer.Config{Concurrency: 4}).Run(ctx, func(m consumer.Message) {
			consumertest.RaiseTo(&most, inFlight.Add(1))
			time.Sleep(2 * time.Millisecond)
			inFlight.Add(-1)
			_ = m.Ack(context.Background())
			if handled.Add(1) == 40 {
				cancel()
			}
		})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if handled.Load() != 40 || most.Load() > 4 {
		t.Fatalf("handled %d of 40, at most %d at once (cap 4)", handled.Load(), most.Load())
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, n := range recv.asks {
		if n < 1 || n > 4 {
			t.Fatalf("asked for %d messages with a cap of 4: %v", n, recv.asks)
		}
	}
}

func TestRunnerRenewsEveryHeldLockFromItsOwnExpiryUntilTheHandlerSettles(t *testing.T) {
	// A 300 ms lock held for 1.5 s: five lock durations.
	m := newMsg("1", 300*time.Millisecond)
	recv := &fakeReceiver{queue: []*fakeMsg{m}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	settled := make(chan struct{})
	go func() {
		_ = runner(t, recv, consumer.Config{Concurrency: 1}).Run(ctx, func(h consumer.Message) {
			time.Sleep(1500 * time.Millisecond)
			_ = h.Ack(context.Background())
			close(settled)
		})
	}()
	<-settled
	renewals, acked, _, lapsed := m.state()
	if lapsed || renewals < 5 || acked != 1 {
		t.Fatalf("renewals %d (want ≥ 5, one per half lock), lapsed %v, acked %d", renewals, lapsed, acked)
	}
	time.Sleep(400 * time.Millisecond)
	if after, _, _, _ := m.state(); after != renewals {
		t.Fatalf("renewed %d times after the ack", after-renewals)
	}
}

func TestRunnerStopsRenewingALostLock(t *testing.T) {
	m := newMsg("1", 100*time.Millisecond)
	m.renewFn = func() error { return fmt.Errorf("renew: %w", consumer.ErrLockLost) }
	recv := &fakeReceiver{queue: []*fakeMsg{m}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		_ = runner(t, recv, consumer.Config{Concurrency: 1}).Run(ctx, func(consumer.Message) {
			time.Sleep(600 * time.Millisecond)
			close(done)
		})
	}()
	<-done
	if renewals, _, _, _ := m.state(); renewals != 1 {
		t.Fatalf("renewals = %d after the lock was reported lost, want 1", renewals)
	}
}

func TestRunnerRetriesAFailedRenewalUntilTheLockEnds(t *testing.T) {
	m := newMsg("1", 400*time.Millisecond)
	var fails atomic.Int64
	m.renewFn = func() error {
		if fails.Add(1) == 1 {
			return errors.New("broker busy")
		}
		return nil
	}
	recv := &fakeReceiver{queue: []*fakeMsg{m}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		_ = runner(t, recv, consumer.Config{Concurrency: 1}).Run(ctx, func(h consumer.Message) {
			time.Sleep(time.Second)
			_ = h.Ack(context.Background())
			close(done)
		})
	}()
	<-done
	if renewals, _, _, lapsed := m.state(); lapsed || renewals < 3 {
		t.Fatalf("renewals %d, lapsed %v: a failed renewal must be retried within the lock", renewals, lapsed)
	}
}

func TestRunnerHandsBackWhatArrivesAsTheDrainStartsButHandlesALastDelivery(t *testing.T) {
	for _, delay := range []time.Duration{0, 3 * time.Second} { // NotStartedDelay: default, and JetStream's
		ordinary, last := newMsg("ordinary", time.Minute), newMsg("last", time.Minute)
		last.last = true
		recv := &fakeReceiver{}
		ctx, cancel := context.WithCancel(context.Background())
		// The broker's answer arrives after the drain started.
		recv.onEmpty = func(rctx context.Context) []*fakeMsg {
			recv.mu.Lock()
			recv.onEmpty = nil
			recv.mu.Unlock()
			cancel()
			<-rctx.Done()
			return []*fakeMsg{ordinary, last}
		}
		var handled []string
		var mu sync.Mutex
		err := runner(t, recv, consumer.Config{Concurrency: 4, NotStartedDelay: delay}).Run(ctx, func(m consumer.Message) {
			mu.Lock()
			handled = append(handled, m.ID())
			mu.Unlock()
			_ = m.Ack(context.Background())
		})
		if err != nil {
			t.Fatal(err)
		}
		_, oAcked, oBack, _ := ordinary.state()
		_, lAcked, lBack, _ := last.state()
		if oAcked != 0 || oBack != 1 || ordinary.handedBack[0] != delay {
			t.Fatalf("ordinary message: acked %d, handed back %v; want handed back after %s", oAcked, ordinary.handedBack, delay)
		}
		if lAcked != 1 || lBack != 0 || len(handled) != 1 || handled[0] != "last" {
			t.Fatalf("last delivery: acked %d, handed back %d, handled %v; want it handled", lAcked, lBack, handled)
		}
	}
}

func TestRunnerWaitsForRunningHandlersAtShutdown(t *testing.T) {
	m := newMsg("1", time.Minute)
	recv := &fakeReceiver{queue: []*fakeMsg{m}}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var finished atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- runner(t, recv, consumer.Config{Concurrency: 2}).Run(ctx, func(h consumer.Message) {
			close(started)
			time.Sleep(200 * time.Millisecond)
			finished.Store(true)
		})
	}()
	<-started
	cancel()
	if err := <-done; err != nil || !finished.Load() {
		t.Fatalf("Run returned %v before its handler finished (%v)", err, finished.Load())
	}
}

func TestRunnerBacksOffOnErrorsAndStopsOnlyWhenClosed(t *testing.T) {
	recv := &fakeReceiver{errs: []error{errors.New("a"), errors.New("b"), errors.New("c"),
		fmt.Errorf("gone: %w", consumer.ErrClosed)}}
	start := time.Now()
	err := runner(t, recv, consumer.Config{Concurrency: 1, RetryMin: 20 * time.Millisecond, RetryMax: time.Second}).
		Run(context.Background(), func(consumer.Message) {})
	if !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Run = %v, want ErrClosed", err)
	}
	// Three waits of about 20, 40 and 80 ms (±50% jitter): at least 70 ms.
	if d := time.Since(start); d < 70*time.Millisecond {
		t.Fatalf("three retries took %s: no backoff", d)
	}
}

func TestRunnerRefusesASecondRun(t *testing.T) {
	recv := &fakeReceiver{}
	r := runner(t, recv, consumer.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, func(consumer.Message) {}) }()
	time.Sleep(20 * time.Millisecond)
	if err := r.Run(ctx, func(consumer.Message) {}); !errors.Is(err, consumer.ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
	cancel()
	<-done
}

func TestConfigValidateNamesTheBadSetting(t *testing.T) {
	cases := []struct {
		name string
		cfg  consumer.Config
		want string
	}{
		{"a negative concurrency", consumer.Config{Concurrency: -1}, "WORKER_CONCURRENCY"},
		{"a retry max below the min", consumer.Config{RetryMin: time.Second, RetryMax: time.Millisecond}, "RetryMax"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ce *consumer.ConfigError
			if err := c.cfg.Validate(); !errors.As(err, &ce) || ce.Setting != c.want {
				t.Fatalf("Validate() = %v, want a ConfigError naming %s", err, c.want)
			}
		})
	}
}
