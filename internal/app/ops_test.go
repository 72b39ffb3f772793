package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/app"
	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/consumer/servicebus/sbemu"
	"github.com/graphops/worker/internal/graphsim"
)

func (h *harness) config(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(nil, func(k string) string { return h.env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSubmittedCommandsAreProcessedAndADeadLetterReplaysToAFreshOutcome(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	addSeeds(h)
	// Graph refuses the first try of the denied example; an operator
	// replays it once the cause is fixed.
	h.sim.Inject(graphsim.Match{Operation: "resume", RequestID: "9e60f18c-b2a0-4887-9da8-da2e30a39d99"},
		graphsim.Fault{Status: 403, Code: "Authorization_RequestDenied"}, 1)

	var lines bytes.Buffer
	for _, name := range []string{"resume-seed-verified", "resume-seed-denied"} {
		lines.Write(example(t, name))
		lines.WriteString("\n\n") // blank lines are skipped
	}
	var out bytes.Buffer
	if err := app.Submit(context.Background(), h.config(t), &lines, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "published 2 commands") || !strings.Contains(out.String(), "graphops.commands.resume") {
		t.Fatalf("submit said %q", out.String())
	}
	got := outcomes(h.waitSettled(2, 20*time.Second))
	if got["applied"] != 1 || got["dead_lettered/graph_rejected"] != 1 {
		t.Fatalf("outcomes %v", got)
	}

	log := slog.New(slog.DiscardHandler)
	var listed bytes.Buffer
	if err := app.DLQ(context.Background(), h.config(t), []string{"list", "--json"}, nil, &listed, log); err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Seq    uint64 `json:"seq"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(listed.Bytes()), &entry); err != nil || entry.Reason != "graph_rejected" {
		t.Fatalf("dlq list --json: %q (%v)", listed.String(), err)
	}
	var replayed bytes.Buffer
	if err := app.DLQ(context.Background(), h.config(t), []string{"replay", strconv.FormatUint(entry.Seq, 10)}, nil, &replayed, log); err != nil {
		t.Fatalf("replay: %v (%s)", err, replayed.String())
	}
	got = outcomes(h.waitSettled(3, 20*time.Second))
	if got["applied"] != 2 {
		t.Fatalf("after the replay: %v, want the denied example applied afresh", got)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters left after the replay", len(dl))
	}
	if st := h.sim.Stats(); st.DoubleApplies != 0 {
		t.Fatalf("double applies: %d", st.DoubleApplies)
	}
}

// TestSubmitPublishesOnTheConfiguredSubjects: with NATS_STREAM and
// NATS_SUBJECTS overridden, submit publishes where the worker reads (the
// default graphops.commands.> is captured by no stream here).
func TestSubmitPublishesOnTheConfiguredSubjects(t *testing.T) {
	h := newHarness(t, seededSim(), map[string]string{"NATS_STREAM": "ORDERS", "NATS_SUBJECTS": "acme.approvals.>"})
	addSeeds(h)
	var out bytes.Buffer
	if err := app.Submit(context.Background(), h.config(t), bytes.NewReader(example(t, "resume-seed-verified")), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "acme.approvals.resume, stream ORDERS") {
		t.Fatalf("submit said %q, want acme.approvals.resume on stream ORDERS", out.String())
	}
	if got := outcomes(h.waitSettled(1, 20*time.Second)); got["applied"] != 1 {
		t.Fatalf("outcomes %v", got)
	}
}

func TestPurgeAsksUnlessYes(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	h.publish([]byte("not a command"))
	h.waitSettled(1, 20*time.Second)
	log := slog.New(slog.DiscardHandler)
	var out bytes.Buffer
	err := app.DLQ(context.Background(), h.config(t), []string{"purge"}, strings.NewReader("n\n"), &out, log)
	if err == nil || len(h.deadLetters()) != 1 {
		t.Fatalf("answering n: err %v, %d dead letters left; want an error and the dead letter kept", err, len(h.deadLetters()))
	}
	if err := app.DLQ(context.Background(), h.config(t), []string{"purge", "--yes"}, nil, &out, log); err != nil {
		t.Fatal(err)
	}
	if n := len(h.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters after purge --yes", n)
	}
}

func TestSubmitPublishesToServiceBusWithTheRequestIDAsSessionID(t *testing.T) {
	emu := sbemu.Start(t)
	emu.CreateQueue("plain", sbemu.Entity{})
	emu.CreateQueue("ordered", sbemu.Entity{RequiresSession: true})
	cases := []struct {
		name, queue, sessions string
		wantSession           string
	}{
		{"a queue without sessions", "plain", "false", ""},
		{"a session-enabled queue", "ordered", "true", "0e60f18c-b2a0-4887-9da8-da2e30a39d99"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"WORKER_SOURCE": "servicebus", "SERVICEBUS_CONNECTION_STRING": emu.ConnectionString(),
				"SERVICEBUS_QUEUE": c.queue, "SERVICEBUS_SESSIONS": c.sessions}
			cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			line := example(t, "resume-seed-verified")
			var out bytes.Buffer
			if err := app.Submit(context.Background(), cfg, bytes.NewReader(append(line, '\n')), &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "published to "+c.queue) || !strings.Contains(out.String(), "published 1 commands") {
				t.Errorf("submit said %q", out.String())
			}
			msgs := emu.State(c.queue).Messages
			if len(msgs) != 1 || !bytes.Equal(msgs[0].Body, line) || msgs[0].SessionID != c.wantSession ||
				msgs[0].ContentType != "application/cloudevents+json" {
				t.Fatalf("queue holds %+v, want the command with SessionId %q", msgs, c.wantSession)
			}
		})
	}
}
