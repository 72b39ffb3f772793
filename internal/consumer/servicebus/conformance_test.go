package servicebus_test

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/consumertest"
	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/consumer/servicebus/sbemu"
	"github.com/graphops/worker/internal/dlq"
)

// TestConformance runs the broker suite through the real SDK over AMQP
// against sbemu, our model of Service Bus (not Azure).
func TestConformance(t *testing.T) {
	consumertest.Run(t, openServiceBus, consumertest.Features{Restart: true, Sessions: true})
}

// sbBroker is a stand-in of its own per test with one queue.
type sbBroker struct {
	emu *sbemu.Emulator
	cfg servicebus.Config
}

const conformanceQueue = "commands"

func openServiceBus(t *testing.T, o consumertest.Options) consumertest.Broker {
	emu := sbemu.Start(t)
	emu.CreateQueue(conformanceQueue, sbemu.Entity{LockDuration: o.LockDuration, MaxDeliveryCount: o.MaxDeliveries,
		RequiresSession: o.Sessions})
	return &sbBroker{emu: emu, cfg: servicebus.Config{ConnectionString: emu.ConnectionString(), Queue: conformanceQueue,
		MaxDeliveryCount: o.MaxDeliveries, Sessions: o.Sessions}}
}

func (b *sbBroker) Source(t *testing.T, concurrency int) consumer.Source {
	cfg := b.cfg
	cfg.Concurrency = concurrency
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := servicebus.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Closed after Run has returned: cleanups run last-registered first,
	// and Run's stop was registered after this.
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func (b *sbBroker) Publish(t *testing.T, m consumertest.Outgoing) {
	cl, err := azservicebus.NewClientFromConnectionString(b.emu.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer func() { _ = cl.Close(ctx) }()
	snd, err := cl.NewSender(conformanceQueue, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := &azservicebus.Message{Body: m.Body, ApplicationProperties: map[string]any{}}
	for k, v := range m.Headers {
		msg.ApplicationProperties[k] = v
	}
	if m.SessionID != "" {
		msg.SessionID = &m.SessionID
	}
	if err := snd.SendMessage(ctx, msg, nil); err != nil {
		t.Fatal(err)
	}
}

func (b *sbBroker) DeadLetters(t *testing.T) []dlq.Entry {
	d, err := servicebus.NewDeadLetters(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer func() { _ = d.Close(ctx) }()
	var out []dlq.Entry
	if err := d.List(ctx, func(e dlq.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func (b *sbBroker) Restart(*testing.T) { b.emu.Restart() }

// TestAReplayedDeadLetterKeepsItsSessionID: on a session-enabled queue the
// replayed copy goes back into its session (docs/SPEC.md §4).
func TestAReplayedDeadLetterKeepsItsSessionID(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Service Bus stand-in")
	}
	b := openServiceBus(t, consumertest.Options{LockDuration: 5 * time.Second, MaxDeliveries: 5, Sessions: true}).(*sbBroker)
	b.Publish(t, consumertest.Outgoing{Body: []byte(`{"n":1}`), SessionID: "req-1"})
	src := b.Source(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 2)
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(m consumer.Message) {
			if m.Header(dlq.HeaderReplay) != "" {
				got <- "replayed"
				_ = m.Ack(context.Background())
				return
			}
			if err := m.DeadLetter(context.Background(), dlq.Entry{Reason: dlq.ReasonGraphRejected, Type: "resume"}); err != nil {
				t.Error(err)
			}
			got <- "dead-lettered"
		})
	}()
	if r := <-got; r != "dead-lettered" {
		t.Fatalf("first handling %s", r)
	}
	dead := b.emu.DeadLetters(conformanceQueue)
	if len(dead) != 1 || dead[0].SessionID != "req-1" {
		t.Fatalf("dead letters %+v, want one of session req-1", dead)
	}
	d, err := servicebus.NewDeadLetters(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close(context.Background()) }()
	cancel() // stop receiving, so that the copy stays on the queue to be looked at
	<-done
	if _, err := d.Replay(context.Background(), []uint64{uint64(dead[0].SequenceNumber)}); err != nil {
		t.Fatal(err)
	}
	msgs := b.emu.State(conformanceQueue).Messages
	if len(msgs) != 1 || msgs[0].SessionID != "req-1" || msgs[0].Prop(dlq.HeaderReplay) == "" {
		t.Fatalf("queue holds %+v, want the replayed copy in session req-1", msgs)
	}
}
