package servicebus_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/consumertest"
	"github.com/graphops/worker/internal/consumer/servicebus"
)

func TestRunKeepsAtMostConcurrencyHandlersAndAsksOnlyForFreeSlots(t *testing.T) {
	b := newBroker()
	for i := range 10 {
		b.add(msg(int64(i+1), "{}", nil))
	}
	cfg := queueCfg
	cfg.Concurrency = 3
	src := newSource(t, cfg, b)

	var running, most atomic.Int64
	started := make(chan string, 10)
	release := make(chan struct{})
	handled := make(chan string, 10)
	run(t, src, func(m consumer.Message) {
		consumertest.RaiseTo(&most, running.Add(1))
		started <- m.ID()
		<-release
		running.Add(-1)
		if err := m.Ack(context.Background()); err != nil {
			t.Error(err)
		}
		handled <- m.ID()
	})
	for range 3 {
		recv(t, started, "one of the first three handlers")
	}
	if asks := b.asksSoFar(); !slices.Equal(asks, []int{3}) {
		t.Errorf("asks %v while three handlers run, want one ask for 3", asks)
	}

	release <- struct{}{} // one handler finishes
	recv(t, handled, "the first handled message")
	recv(t, started, "a fourth handler")
	if asks := b.asksSoFar(); len(asks) < 2 || asks[1] != 1 {
		t.Errorf("asks %v, want the second ask for the one free slot", asks)
	}

	close(release)
	for range 9 {
		recv(t, handled, "the other messages")
	}
	if most.Load() != 3 {
		t.Errorf("at most %d handlers ran at once, want 3", most.Load())
	}
	for _, n := range b.asksSoFar() {
		if n < 1 || n > 3 {
			t.Errorf("asks %v: each must be between 1 and the 3 slots", b.asksSoFar())
		}
	}
	if left := b.seqs(); len(left) != 0 {
		t.Errorf("messages left %v", left)
	}
}

func TestRunAbandonsWhatItReceivedAfterStopAndWaitsForItsHandlers(t *testing.T) {
	b := newBroker()
	last := msg(3, "{}", nil)
	last.DeliveryCount = 10 // MaxDeliveryCount: abandoning it would dead-letter it
	b.add(msg(1, "{}", nil), msg(2, "{}", nil), last)
	receiving := make(chan struct{})
	calls := 0
	b.onReceive = func(ctx context.Context, n int) ([]*azservicebus.ReceivedMessage, error) {
		calls++
		if calls == 1 {
			return b.take(1), nil
		}
		if calls == 2 {
			close(receiving)
			<-ctx.Done()
			// As the SDK does: what had arrived when ctx ended.
			return b.take(n), nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	src := newSource(t, queueCfg, b)

	release := make(chan struct{})
	firstStarted := make(chan struct{})
	lastHandled := make(chan struct{})
	var mu sync.Mutex
	var handled []string
	stop, done := run(t, src, func(m consumer.Message) {
		mu.Lock()
		handled = append(handled, m.ID())
		mu.Unlock()
		switch m.ID() {
		case "1":
			close(firstStarted)
			<-release
		case "3":
			if !m.Last() {
				t.Error("message 3 is not the last delivery")
			}
			defer close(lastHandled)
		}
		if err := m.Ack(context.Background()); err != nil {
			t.Error(err)
		}
	})
	recv(t, firstStarted, "the first handler")
	recv(t, receiving, "the second receive")

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	recv(t, lastHandled, "the handler of the last delivery")
	waitFor(t, "message 2 abandoned", func() bool { return slices.Contains(b.opsSoFar(), "abandon 2") })
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a handler was running", err)
	default:
	}

	close(release)
	if err := recv(t, stopped, "Run's return after its handlers"); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(handled)
	if !slices.Equal(handled, []string{"1", "3"}) {
		t.Errorf("handled %v, want 1 and the last delivery 3, not 2", handled)
	}
	if left := b.seqs(); !slices.Equal(left, []int64{2}) {
		t.Errorf("left %v, want message 2 back on the entity", left)
	}
}

func TestRunRetriesAfterReceiveErrorsAndReportsReadiness(t *testing.T) {
	b := newBroker()
	b.add(msg(1, "{}", nil))
	var src *servicebus.Source
	failures := 0
	readyDuringOutage := true
	b.fail = func(op string, _ int64) error {
		if op != "receive" || failures == 3 {
			return nil
		}
		failures++
		if failures == 3 {
			readyDuringOutage = src.Ready()
		}
		return &azservicebus.Error{Code: azservicebus.CodeConnectionLost}
	}
	src = newSource(t, queueCfg, b)
	handled := make(chan string, 1)
	stop, _ := run(t, src, func(m consumer.Message) {
		_ = m.Ack(context.Background())
		handled <- m.ID()
	})
	if id := recv(t, handled, "the message after the outage"); id != "1" {
		t.Errorf("handled %s", id)
	}
	if readyDuringOutage {
		t.Error("Ready() was true after failed receives")
	}
	waitFor(t, "Ready() after a receive worked", src.Ready)
	if err := stop(); err != nil {
		t.Errorf("Run = %v, want nil after transient errors", err)
	}
}

// TestAnUnreachableNamespaceIsNotReadyThoughReceivesOnlyTimeOut: the SDK
// retries a lost connection inside ReceiveMessages until its context ends,
// which looks like a quiet entity; the peek after it fails, and Ready says
// so until the namespace answers again.
func TestAnUnreachableNamespaceIsNotReadyThoughReceivesOnlyTimeOut(t *testing.T) {
	b := newBroker()
	b.onReceive = func(ctx context.Context, _ int) ([]*azservicebus.ReceivedMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var down atomic.Bool
	down.Store(true)
	b.fail = func(op string, _ int64) error {
		if op == "peek" && down.Load() {
			return &azservicebus.Error{Code: azservicebus.CodeConnectionLost}
		}
		return nil
	}
	src := newSource(t, queueCfg, b)
	stop, _ := run(t, src, func(consumer.Message) {})
	waitFor(t, "Ready() false while the namespace does not answer", func() bool { return !src.Ready() })
	down.Store(false)
	waitFor(t, "Ready() once it answers again", src.Ready)
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestRunKeepsAskingWhenNothingArrives(t *testing.T) {
	b := newBroker()
	src := newSource(t, queueCfg, b)
	stop, _ := run(t, src, func(consumer.Message) {})
	waitFor(t, "a second receive after an idle one", func() bool { return len(b.asksSoFar()) >= 2 })
	if !src.Ready() {
		t.Error("an idle receive made Ready() false")
	}
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestRunReturnsWhenTheReceiverIsClosed(t *testing.T) {
	b := newBroker()
	closed := &azservicebus.Error{Code: azservicebus.CodeClosed}
	b.fail = func(string, int64) error { return closed }
	_, done := run(t, newSource(t, queueCfg, b), func(consumer.Message) {})
	if err := recv(t, done, "Run's return"); !errors.Is(err, closed) {
		t.Errorf("Run = %v, want the closed error", err)
	}
}

func TestRunRefusesASecondRun(t *testing.T) {
	b := newBroker()
	b.add(msg(1, "{}", nil))
	src := newSource(t, queueCfg, b)
	busy, release := make(chan struct{}), make(chan struct{})
	run(t, src, func(m consumer.Message) {
		close(busy)
		<-release
	})
	defer close(release)
	recv(t, busy, "the first Run's handler")
	if err := src.Run(context.Background(), func(consumer.Message) {}); !errors.Is(err, servicebus.ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}

func TestPeekingRunHandlesEachActiveMessageOnceAndSettlesNothing(t *testing.T) {
	b := newBroker()
	scheduled := msg(2, "{}", nil)
	scheduled.State = azservicebus.MessageStateScheduled
	b.add(msg(1, "{}", nil), scheduled, msg(3, "{}", nil))
	cfg := queueCfg
	cfg.Peek, cfg.Concurrency = true, 2
	src := newSource(t, cfg, b)
	handled := make(chan string, 10)
	stop, _ := run(t, src, func(m consumer.Message) {
		if err := m.Ack(context.Background()); err != nil {
			t.Error(err)
		}
		handled <- m.ID()
	})
	got := []string{recv(t, handled, "a peeked message"), recv(t, handled, "a peeked message")}
	b.add(msg(4, "{}", nil))
	got = append(got, recv(t, handled, "a message added later"))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(handled)
	for id := range handled {
		got = append(got, id)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"1", "3", "4"}) {
		t.Errorf("handled %v, want 1, 3 and 4 once each (2 is scheduled)", got)
	}
	if ops := b.opsSoFar(); len(ops) != 0 || len(b.asksSoFar()) != 0 {
		t.Errorf("ops %v receives %v, want none", ops, b.asksSoFar())
	}
}
