package outcome_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/natsembed/natstest"
	"github.com/graphops/worker/internal/outcome"
)

func TestJetStreamPublishesOnceByEventIdOnTheTypesSubject(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := outcome.NewJetStream(ctx, js, outcome.JetStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := outcome.New(outcome.Data{CommandID: "c1", CommandSource: "urn:s", Type: "resume", Outcome: "applied"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a redelivery publishes the same event again
		if err := p.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, "GRAPHOPS_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("%d events stored, want 1 (deduplicated by Nats-Msg-Id)", info.State.Msgs)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "graphops.outcomes.resume" || m.Header.Get(nats.MsgIdHdr) != e.ID || string(m.Data) != string(e.Body) {
		t.Fatalf("stored %s %v %s", m.Subject, m.Header, m.Data)
	}
}

func TestJetStreamFailsWhenTheStreamIsGoneOrFull(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// An operator's stream that holds one message and refuses more.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FULL", Subjects: []string{"out.>"},
		MaxMsgs: 1, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	p, err := outcome.NewJetStream(ctx, js, outcome.JetStreamConfig{Stream: "FULL", SubjectPrefix: "out"})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(id string) outcome.Event {
		e, _ := outcome.New(outcome.Data{CommandID: id, Outcome: "applied", Type: "resume"}, time.Now())
		return e
	}
	if err := p.Publish(ctx, ev("1")); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, ev("2")); err == nil {
		t.Fatal("a full stream accepted an event")
	}
	if err := js.DeleteStream(ctx, "FULL"); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, ev("3")); !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("publish to a deleted stream: %v", err)
	}
}
