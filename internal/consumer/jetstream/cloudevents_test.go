package jetstream_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/consumertest"
	"github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/natsembed/natstest"
	js "github.com/nats-io/nats.go/jetstream"
)

// TestBinaryModeCloudEventsFromTheGoSDK publishes with the CloudEvents SDK
// for Go's JetStream binding, as a producer team would, in each of its
// modes: the worker reads the same structured event from all of them, a
// dead letter keeps the ce- headers, and its replay is read the same again.
func TestBinaryModeCloudEventsFromTheGoSDK(t *testing.T) {
	integration(t)
	t.Parallel()
	_, nc, jsc := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := dlq.New(ctx, jsc, dlq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource(t, jsc, jetstream.Config{DeadLetters: store})

	sender, err := cenats.NewSenderFromConn(nc, "GRAPHOPS", "graphops.commands.resume", nil)
	if err != nil {
		t.Fatal(err)
	}
	client, err := cloudevents.NewClient(sender)
	if err != nil {
		t.Fatal(err)
	}
	modes := []struct {
		id  string
		ctx context.Context
	}{
		{"default", ctx},
		{"binary", cloudevents.WithEncodingBinary(ctx)},
		{"structured", cloudevents.WithEncodingStructured(ctx)},
	}
	for _, m := range modes {
		e := cloudevents.NewEvent()
		e.SetID(m.id)
		e.SetSource("urn:approvals:sod-check")
		e.SetType("graphops.accessPackageAssignmentRequest.resume")
		e.SetTime(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
		if err := e.SetData(cloudevents.ApplicationJSON, map[string]any{"accessPackageAssignmentRequestId": "0e60f18c"}); err != nil {
			t.Fatal(err)
		}
		if res := client.Send(m.ctx, e); !cloudevents.IsACK(res) {
			t.Fatalf("send %s: %v", m.id, res)
		}
	}

	type read struct {
		event  map[string]any
		replay string
	}
	got := make(chan read, 10)
	run(t, src, func(m consumer.Message) {
		var ev map[string]any
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Errorf("message %s: Data() %q is not a JSON event: %v", m.ID(), m.Data(), err)
		}
		got <- read{ev, m.Header(dlq.HeaderReplay)}
		settle := func(ctx context.Context) error { return m.Ack(ctx) }
		if ev["id"] == "default" && m.Header(dlq.HeaderReplay) == "" {
			settle = func(ctx context.Context) error {
				return m.DeadLetter(ctx, dlq.Entry{Reason: dlq.ReasonGraphRejected, Type: "resume"})
			}
		}
		if err := settle(context.Background()); err != nil {
			t.Error(err)
		}
	})
	check := func(r read) {
		t.Helper()
		ev := r.event
		data, _ := ev["data"].(map[string]any)
		if ev["specversion"] != "1.0" || ev["source"] != "urn:approvals:sod-check" ||
			ev["type"] != "graphops.accessPackageAssignmentRequest.resume" || data["accessPackageAssignmentRequestId"] != "0e60f18c" {
			t.Errorf("event %v: want the attributes and the data the SDK sent", ev)
		}
	}
	seen := map[any]bool{}
	for range modes {
		r := consumertest.Recv(t, got, "an event", 10*time.Second)
		check(r)
		seen[r.event["id"]] = true
	}
	if len(seen) != len(modes) {
		t.Fatalf("read events %v, want one per mode", seen)
	}

	var dead []dlq.Entry
	consumertest.WaitFor(t, "the dead letter", 5*time.Second, func() bool {
		dead = nil
		_ = store.List(ctx, func(e dlq.Entry) error { dead = append(dead, e); return nil })
		return len(dead) == 1
	})
	for _, h := range []string{"ce-specversion", "ce-id", "ce-source", "ce-type"} {
		if len(dead[0].Headers[h]) != 1 {
			t.Errorf("dead letter keeps headers %v, want %s", dead[0].Headers, h)
		}
	}
	if _, err := store.Replay(ctx, []uint64{dead[0].Seq}, dlq.JetStreamPublisher(jsc, js.WithExpectStream("GRAPHOPS"))); err != nil {
		t.Fatal(err)
	}
	r := consumertest.Recv(t, got, "the replayed event", 10*time.Second)
	check(r)
	if r.event["id"] != "default" || r.replay == "" {
		t.Errorf("replayed %v (Graphops-Replay %q), want the binary-mode event read as before", r.event, r.replay)
	}
}
