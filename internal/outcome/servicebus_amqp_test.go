package outcome_test

import (
	"context"
	"testing"
	"time"

	"github.com/graphops/worker/internal/consumer/servicebus/sbemu"
	"github.com/graphops/worker/internal/outcome"
)

// Over AMQP through the real SDK, against the project's Service Bus
// stand-in: a plain queue and a session-enabled one both take the event,
// with the docs/SPEC.md §9 MessageId, content type and SessionId.
func TestServiceBusPublishesTheEventOnAQueueWithOrWithoutSessions(t *testing.T) {
	emu := sbemu.Start(t)
	emu.CreateQueue("outcomes", sbemu.Entity{})
	emu.CreateQueue("outcomes-sessions", sbemu.Entity{RequiresSession: true})
	cl := emu.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := outcome.New(outcome.Data{CommandID: "c1", CommandSource: "urn:s", Type: "role_request_update",
		RequestID: "azureResources/e13e", Outcome: "applied"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// An invalid message's event: no request id to group it by.
	invalid, err := outcome.New(outcome.Data{CommandSource: "urn:graphops:message:q:7", Type: "unknown",
		Outcome: "dead_lettered", Reason: "invalid_message"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	snd, err := cl.NewSender("outcomes-sessions", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := outcome.NewServiceBus(snd, "outcomes-sessions").Publish(ctx, invalid); err != nil {
		t.Fatalf("an event without a request id on a session entity: %v", err)
	}
	_ = snd.Close(ctx)
	if st := emu.State("outcomes-sessions"); len(st.Messages) != 1 || st.Messages[0].SessionID != invalid.ID {
		t.Fatalf("outcomes-sessions holds %+v, want the event with its id as SessionId", st.Messages)
	}
	emu.CreateQueue("outcomes-sessions-2", sbemu.Entity{RequiresSession: true})

	for _, q := range []string{"outcomes", "outcomes-sessions-2"} {
		snd, err := cl.NewSender(q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := outcome.NewServiceBus(snd, q).Publish(ctx, e); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		_ = snd.Close(ctx)
		st := emu.State(q)
		if len(st.Messages) != 1 {
			t.Fatalf("%s holds %d messages", q, len(st.Messages))
		}
		m := st.Messages[0]
		if m.MessageID != e.ID || m.SessionID != "azureResources/e13e" ||
			m.ContentType != "application/cloudevents+json; charset=utf-8" || string(m.Body) != string(e.Body) {
			t.Fatalf("%s holds %+v", q, m)
		}
	}
}
