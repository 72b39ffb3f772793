package servicebus_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/servicebus"
)

// broker is an in-memory model of one Service Bus entity (or its
// dead-letter sub-queue) as this package uses it through the receiver and
// sender interfaces: PeekLock receives in sequence order, settlement by
// sequence number, peek, send and schedule. It has no lock expiry.
type broker struct {
	mu      sync.Mutex
	msgs    []*stored // in sequence order
	arrived chan struct{}
	cursor  int64 // last peeked sequence number, as the SDK keeps it

	// fail, when set, is asked before each operation; a non-nil error is
	// returned instead of doing it. seq is the message's sequence number
	// (for "send", the Graphops-Replay value; 0 when there is none).
	fail func(op string, seq int64) error
	// onReceive, when set, answers ReceiveMessages instead.
	onReceive func(ctx context.Context, n int) ([]*azservicebus.ReceivedMessage, error)

	ops          []string // "complete 3", "abandon 3", "schedule", "send 3", …
	asks         []int    // maxMessages of each ReceiveMessages
	sent         []*azservicebus.Message
	scheduled    []*azservicebus.Message
	scheduledAt  []time.Time
	deadLettered map[int64]*azservicebus.DeadLetterOptions
	closed       bool
}

type stored struct {
	rm         *azservicebus.ReceivedMessage
	locked     bool
	deliveries uint32
}

func newBroker() *broker {
	return &broker{arrived: make(chan struct{}, 1), deadLettered: map[int64]*azservicebus.DeadLetterOptions{}}
}

// add stores messages; a message's DeliveryCount is what its next receive
// reports (each receive after that reports one more).
func (b *broker) add(rms ...*azservicebus.ReceivedMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rm := range rms {
		b.msgs = append(b.msgs, &stored{rm: rm, deliveries: max(rm.DeliveryCount, 1) - 1})
	}
	b.signal()
}

func (b *broker) signal() {
	select {
	case b.arrived <- struct{}{}:
	default:
	}
}

func (b *broker) seqs() []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []int64
	for _, s := range b.msgs {
		out = append(out, *s.rm.SequenceNumber)
	}
	return out
}

func (b *broker) opsSoFar() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.ops...)
}

func (b *broker) check(op string, seq int64) error {
	if b.fail == nil {
		return nil
	}
	return b.fail(op, seq)
}

func (b *broker) find(rm *azservicebus.ReceivedMessage) (int, *stored) {
	for i, s := range b.msgs {
		if *s.rm.SequenceNumber == *rm.SequenceNumber {
			return i, s
		}
	}
	return -1, nil
}

// take locks and returns up to n available messages without waiting.
func (b *broker) take(n int) []*azservicebus.ReceivedMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*azservicebus.ReceivedMessage
	for _, s := range b.msgs {
		if !s.locked && len(out) < n {
			s.locked = true
			s.deliveries++
			c := *s.rm
			c.DeliveryCount = s.deliveries
			out = append(out, &c)
		}
	}
	return out
}

func (b *broker) ReceiveMessages(ctx context.Context, n int, _ *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	b.mu.Lock()
	b.asks = append(b.asks, n)
	hook := b.onReceive
	b.mu.Unlock()
	if hook != nil {
		return hook(ctx, n)
	}
	for {
		b.mu.Lock()
		err := b.check("receive", 0)
		b.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if out := b.take(n); len(out) > 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.arrived:
		}
	}
}

func (b *broker) PeekMessages(_ context.Context, n int, o *azservicebus.PeekMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check("peek", 0); err != nil {
		return nil, err
	}
	from := b.cursor + 1
	if o != nil && o.FromSequenceNumber != nil {
		from = *o.FromSequenceNumber
	}
	var out []*azservicebus.ReceivedMessage
	for _, s := range b.msgs {
		if *s.rm.SequenceNumber >= from && len(out) < n {
			c := *s.rm
			c.DeliveryCount = s.deliveries
			out = append(out, &c)
		}
	}
	if (o == nil || o.FromSequenceNumber == nil) && len(out) > 0 {
		b.cursor = *out[len(out)-1].SequenceNumber
	}
	return out, nil
}

// settle applies a settlement to a locked message; settling one that is
// not locked is a lost lock, as on Service Bus.
func (b *broker) settle(op string, rm *azservicebus.ReceivedMessage, remove bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	seq := *rm.SequenceNumber
	if err := b.check(op, seq); err != nil {
		return err
	}
	i, s := b.find(rm)
	if s == nil || !s.locked {
		return &azservicebus.Error{Code: azservicebus.CodeLockLost}
	}
	b.ops = append(b.ops, op+" "+strconv.FormatInt(seq, 10))
	if remove {
		b.msgs = append(b.msgs[:i], b.msgs[i+1:]...)
	} else if op == "abandon" {
		s.locked = false
		b.signal()
	}
	return nil
}

func (b *broker) CompleteMessage(_ context.Context, rm *azservicebus.ReceivedMessage, _ *azservicebus.CompleteMessageOptions) error {
	return b.settle("complete", rm, true)
}

func (b *broker) AbandonMessage(_ context.Context, rm *azservicebus.ReceivedMessage, _ *azservicebus.AbandonMessageOptions) error {
	return b.settle("abandon", rm, false)
}

func (b *broker) RenewMessageLock(_ context.Context, rm *azservicebus.ReceivedMessage, _ *azservicebus.RenewMessageLockOptions) error {
	return b.settle("renew", rm, false)
}

func (b *broker) DeadLetterMessage(_ context.Context, rm *azservicebus.ReceivedMessage, o *azservicebus.DeadLetterOptions) error {
	if err := b.settle("deadletter", rm, true); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deadLettered[*rm.SequenceNumber] = o
	return nil
}

func (b *broker) SendMessage(_ context.Context, m *azservicebus.Message, _ *azservicebus.SendMessageOptions) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	seq, _ := strconv.ParseInt(fmt.Sprint(m.ApplicationProperties["Graphops-Replay"]), 10, 64)
	if err := b.check("send", seq); err != nil {
		return err
	}
	b.ops = append(b.ops, "send "+strconv.FormatInt(seq, 10))
	b.sent = append(b.sent, m)
	return nil
}

func (b *broker) ScheduleMessages(_ context.Context, ms []*azservicebus.Message, at time.Time, _ *azservicebus.ScheduleMessagesOptions) ([]int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check("schedule", 0); err != nil {
		return nil, err
	}
	b.ops = append(b.ops, "schedule")
	var seqs []int64
	for _, m := range ms {
		b.scheduled = append(b.scheduled, m)
		b.scheduledAt = append(b.scheduledAt, at)
		seqs = append(seqs, int64(1000+len(b.scheduled)))
	}
	return seqs, nil
}

func (b *broker) Close(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// msg is a received message with sequence number seq, body and
// application properties.
func msg(seq int64, body string, props map[string]any) *azservicebus.ReceivedMessage {
	return &azservicebus.ReceivedMessage{
		SequenceNumber:        &seq,
		MessageID:             "m-" + strconv.FormatInt(seq, 10),
		Body:                  []byte(body),
		ApplicationProperties: props,
		DeliveryCount:         1,
	}
}

var queueCfg = servicebus.Config{ConnectionString: "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v", Queue: "commands"}

var topicCfg = servicebus.Config{Namespace: "ns", Topic: "commands", Subscription: "graphops-worker"}

// fixedNow is the clock of the tests' sources.
var fixedNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func newSource(t *testing.T, cfg servicebus.Config, b *broker) *servicebus.Source {
	t.Helper()
	s, err := servicebus.NewTestSource(cfg, b, b, func() time.Time { return fixedNow })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		panic("unreachable")
	}
}

func (b *broker) asksSoFar() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.asks...)
}

// run starts s.Run in a goroutine. stop cancels it and returns Run's
// result; done delivers that result too. The test's cleanup stops it.
func run(t *testing.T, s *servicebus.Source, h func(consumer.Message)) (stop func() error, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	finished := make(chan struct{})
	var result error
	go func() {
		result = s.Run(ctx, h)
		close(finished)
		ch <- result
	}()
	stop = func() error {
		cancel()
		select {
		case <-finished:
			return result
		case <-time.After(5 * time.Second):
			return fmt.Errorf("Run did not return 5s after cancel")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop, ch
}

// waitFor polls cond, for state that only shows in the fakes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// lock locks message seq as another receiver would.
func (b *broker) lock(seq int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.msgs {
		if *s.rm.SequenceNumber == seq {
			s.locked = true
		}
	}
}

func (b *broker) lockedSeqs() []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []int64
	for _, s := range b.msgs {
		if s.locked {
			out = append(out, *s.rm.SequenceNumber)
		}
	}
	return out
}
