// Package consumertest is the conformance suite every broker adapter of
// package consumer must pass, in the spirit of ledger/storetest and
// Watermill's pubsub/tests: the behaviours the worker relies on (issue 11,
// docs/SPEC.md §3) written once and run against each broker through its real
// client. An adapter's test opens a fresh entity per test and calls Run.
package consumertest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/dlq"
)

// Options of an entity a test opens.
type Options struct {
	// LockDuration is the entity's ack wait / lock duration.
	LockDuration time.Duration
	// MaxDeliveries is how often a message is delivered at most.
	MaxDeliveries int
	// Sessions opens a session-enabled entity (Features.Sessions only).
	Sessions bool
}

// Outgoing is a message a test publishes.
type Outgoing struct {
	Body    []byte
	Headers map[string]string // NATS headers / Service Bus application properties
	// SessionID is the Service Bus session; ignored without sessions.
	SessionID string
}

// Broker is one entity of the adapter under test, opened by Open for a
// single test and removed with it.
type Broker interface {
	// Source opens a reader of the entity (a replica) that runs at most
	// concurrency handlers; several may read the same entity.
	Source(t *testing.T, concurrency int) consumer.Source
	// Publish sends a message to the entity and waits until the broker
	// has stored it.
	Publish(t *testing.T, m Outgoing)
	// DeadLetters reads back every dead letter of the entity, oldest
	// first.
	DeadLetters(t *testing.T) []dlq.Entry
	// Restart stops the broker and starts it again with what it stored
	// (Features.Restart only).
	Restart(t *testing.T)
}

// Open opens a fresh entity for one test.
type Open func(t *testing.T, o Options) Broker

// Features says what a broker under test can do beyond the common core.
type Features struct {
	// Restart: the test can stop and restart the broker.
	Restart bool
	// Sessions: the broker has Service Bus sessions (InOrder messages).
	Sessions bool
}

// Run runs the suite. Every test runs in parallel with the others.
func Run(t *testing.T, open Open, f Features) {
	if testing.Short() {
		t.Skip("broker conformance suite: needs a broker")
	}
	tests := []struct {
		name string
		run  func(t *testing.T, open Open)
		when bool
	}{
		{"each message is received once per delivery", testOncePerDelivery, true},
		{"an acknowledged message is gone", testAckRemoves, true},
		{"a hand-back reappears after its delay and not before", testHandBackDelay, true},
		{"a held message is kept past the lock duration", testKeptPastLock, true},
		{"an unsettled message comes back after the lock with its count raised", testUnsettledComesBack, true},
		{"the last delivery is reported as the last and is not lost", testLastDelivery, true},
		{"a dead letter keeps the body byte for byte and every property", testDeadLetterKeepsAll, true},
		{"a drain hands back everything it holds", testDrainHandsBack, true},
		{"the concurrency bound holds", testConcurrencyBound, true},
		{"a broker that goes away and comes back is reconnected to", testReconnect, f.Restart},
		{"a session is read in order, one message at a time", testSessionsInOrder, f.Sessions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.when {
				t.Skip("not a feature of this broker")
			}
			t.Parallel()
			tt.run(t, open)
		})
	}
}

// run starts src.Run; the returned stop cancels it and returns its result
// (also called at the end of the test).
func run(t *testing.T, src consumer.Source, h consumer.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, h) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30s after its context ended")
			}
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func settle(t *testing.T, what string, f func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// WaitFor polls cond every 20ms until it holds, failing t after timeout.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Recv waits for a value on ch, failing t after timeout.
func Recv[T any](t testing.TB, ch <-chan T, what string, timeout time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
	var zero T
	return zero
}

// none fails if ch yields anything within d.
func none[T any](t *testing.T, ch <-chan T, what string, d time.Duration) {
	t.Helper()
	select {
	case v := <-ch:
		t.Errorf("%s: got %v", what, v)
	case <-time.After(d):
	}
}

// RaiseTo sets m to v when v is larger: the high-water mark of a count
// that handlers running at once raise and lower (how many ran together).
func RaiseTo(m *atomic.Int64, v int64) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}
