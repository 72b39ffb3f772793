package servicebus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/dlq"
)

// TestLive runs the adapter against a real Service Bus queue, given by
// SERVICEBUS_CONNECTION_STRING and SERVICEBUS_QUEUE. Use a queue of its
// own: other messages found on it are abandoned, and the purge at the end
// empties its dead-letter sub-queue.
func TestLive(t *testing.T) {
	cs, queue := os.Getenv("SERVICEBUS_CONNECTION_STRING"), os.Getenv("SERVICEBUS_QUEUE")
	if cs == "" || queue == "" {
		t.Skip("live test: set SERVICEBUS_CONNECTION_STRING and SERVICEBUS_QUEUE to run it")
	}
	if testing.Short() {
		t.Skip("live test: needs a Service Bus namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := servicebus.Config{ConnectionString: cs, Queue: queue, Concurrency: 4}

	client, err := azservicebus.NewClientFromConnectionString(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.Background())
	producer, err := client.NewSender(queue, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(context.Background())

	// 1. A structured command, received through Source and dead-lettered.
	id := uuid.NewString()
	event := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"urn:graphops:live-test","type":"graphops.accessPackageAssignmentRequest.resume","data":{}}`, id)
	if err := producer.SendMessage(ctx, &azservicebus.Message{Body: []byte(event), MessageID: &id}, nil); err != nil {
		t.Fatal(err)
	}
	m := receiveLive(ctx, t, cfg, func(m consumer.Message) bool { return string(m.Data()) == event })
	if m.Delivery() < 1 || m.Subject() != queue {
		t.Errorf("Delivery %d Subject %q", m.Delivery(), m.Subject())
	}
	dl, ok := m.(interface {
		DeadLetter(context.Context, dlq.Entry) error
	})
	if !ok {
		t.Fatal("message has no DeadLetter method")
	}
	if err := dl.DeadLetter(ctx, dlq.Entry{Reason: dlq.ReasonValidationFailed, Description: "live test", Type: "resume", CommandID: id}); err != nil {
		t.Fatal(err)
	}

	// 2. Listed in the dead-letter sub-queue, then replayed.
	d, err := servicebus.NewDeadLetters(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	seq := findLive(ctx, t, d, id)
	e, err := d.Get(ctx, seq)
	if err != nil || e.Reason != dlq.ReasonValidationFailed || e.Description != "live test" || e.OriginalSubject != queue {
		t.Fatalf("Get(%d) = %+v, %v", seq, e, err)
	}
	if replayed, err := d.Replay(ctx, []uint64{seq}); err != nil || len(replayed) != 1 {
		t.Fatalf("Replay = %v, %v", replayed, err)
	}
	m = receiveLive(ctx, t, cfg, func(m consumer.Message) bool { return string(m.Data()) == event })
	if got := m.Header(dlq.HeaderReplay); got != strconv.FormatUint(seq, 10) {
		t.Errorf("replayed copy: Graphops-Replay %q, want %d", got, seq)
	}
	if err := m.Ack(ctx); err != nil {
		t.Error(err)
	}

	// 3. A binary-mode command arrives as a structured event; it is
	// dead-lettered and purged.
	id2 := uuid.NewString()
	ct := "application/json"
	err = producer.SendMessage(ctx, &azservicebus.Message{Body: []byte(`{"x":1}`), ContentType: &ct, MessageID: &id2,
		ApplicationProperties: map[string]any{"cloudEvents:specversion": "1.0", "cloudEvents:id": id2, "cloudEvents:source": "urn:graphops:live-test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m2 := receiveLive(ctx, t, cfg, func(m consumer.Message) bool { return m.Header("cloudEvents:id") == id2 })
	var got map[string]any
	if err := json.Unmarshal(m2.Data(), &got); err != nil || got["id"] != id2 || got["data"] == nil {
		t.Errorf("binary mode Data %s (%v)", m2.Data(), err)
	}
	if err := m2.(interface {
		DeadLetter(context.Context, dlq.Entry) error
	}).DeadLetter(ctx, dlq.Entry{Reason: dlq.ReasonInvalidMessage, CommandID: id2}); err != nil {
		t.Fatal(err)
	}
	findLive(ctx, t, d, id2)
	if n, err := d.Purge(ctx); err != nil || n < 1 {
		t.Errorf("Purge = %d, %v", n, err)
	}
}

// receiveLive runs a Source until it receives a message for which want is
// true, which it returns locked; it abandons the others.
func receiveLive(ctx context.Context, t *testing.T, cfg servicebus.Config, want func(consumer.Message) bool) consumer.Message {
	t.Helper()
	src, err := servicebus.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close(context.Background()) })
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	found := make(chan consumer.Message, 1)
	done := make(chan error, 1)
	go func() {
		done <- src.Run(rctx, func(m consumer.Message) {
			if !want(m) {
				_ = m.HandBack(context.Background(), 0)
				return
			}
			select {
			case found <- m:
				cancel()
			default:
				_ = m.HandBack(context.Background(), 0)
			}
		})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-found:
		return m
	default:
		t.Fatal("the message did not arrive within a minute")
		return nil
	}
}

// findLive returns the sequence number of the dead letter of command id.
func findLive(ctx context.Context, t *testing.T, d *servicebus.DeadLetters, id string) uint64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var seq uint64
		err := d.List(ctx, func(e dlq.Entry) error {
			if e.CommandID == id {
				seq = e.Seq
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if seq != 0 {
			return seq
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("dead letter of %s not listed within 30s", id)
	return 0
}
