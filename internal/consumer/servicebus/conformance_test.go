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
