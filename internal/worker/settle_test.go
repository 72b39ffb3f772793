package worker_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/outcome"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
)

// fakeOutcomes records outcome events; check, when set, runs at each
// publication (to look at the ledger and the message at that instant).
type fakeOutcomes struct {
	mu     sync.Mutex
	events []outcome.Event
	fail   error
	check  func()
}

func (f *fakeOutcomes) Publish(_ context.Context, e outcome.Event) error {
	if f.check != nil {
		f.check()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.events = append(f.events, e)
	return nil
}

func (f *fakeOutcomes) data(t *testing.T, i int) map[string]any {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.events) {
		t.Fatalf("%d events, want at least %d", len(f.events), i+1)
	}
	return decodeEvent(t, f.events[i].Body)["data"].(map[string]any)
}

func newEventRig(t *testing.T, cfg worker.Config) (*rig, *fakeOutcomes, *ledger.Ledger) {
	t.Helper()
	r := &rig{store: newMemStore(), graph: &fakeGraph{}, dead: &fakeDLQ{}}
	led, err := ledger.New(r.store, ledger.Config{Owner: "test", Lease: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	out := &fakeOutcomes{}
	if cfg.KeepAliveEvery == 0 {
		cfg.KeepAliveEvery = time.Second
	}
	var mu sync.Mutex
	r.proc = mustNew(t, cfg, worker.Deps{Graph: r.graph, Ledger: led, Outcomes: out, Metrics: metrics.New(),
		OnSettled: func(s worker.Settled) { mu.Lock(); r.settled = append(r.settled, s); mu.Unlock() }},
		context.Background(), context.Background())
	return r, out, led
}

func identity(t *testing.T, data []byte) ledger.Identity {
	t.Helper()
	cmd, err := command.Parse(data, command.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ledger.Identity{Source: cmd.Source, ID: cmd.ID, BodyHash: cmd.BodyHash,
		Request: "resume:0e60f18c-b2a0-4887-9da8-da2e30a39d99",
		Key:     ledger.KeyOf("callout", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", "957d0c50-466b-4840-bb5b-c92cea7141ff")}
}

func TestTheOutcomeEventIsPublishedAfterTheLedgerWriteAndBeforeTheAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, out, led := newEventRig(t, worker.Config{})
		m := &fakeMsg{data: seed(t), delivery: 1}
		out.check = func() {
			rec, ok, err := led.Lookup(context.Background(), identity(t, m.data))
			if err != nil || !ok || rec.State != ledger.StateApplied {
				t.Errorf("at publication the ledger holds %+v (found %v, %v): want applied", rec, ok, err)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.acked != 0 {
				t.Error("the message was acknowledged before its event was published")
			}
		}
		r.handle(m)
		if m.acked != 1 || len(out.events) != 1 {
			t.Fatalf("acked %d, %d events", m.acked, len(out.events))
		}
		d := out.data(t, 0)
		want := map[string]any{"outcome": "applied", "type": "resume", "attempts": 1.0, "graph_status": 204.0,
			"graph_request_id": "g-1", "client_request_id": "c-1", "reconciled": false,
			"request_id": "0e60f18c-b2a0-4887-9da8-da2e30a39d99"}
		for k, v := range want {
			if d[k] != v {
				t.Errorf("data.%s = %v, want %v", k, d[k], v)
			}
		}
	})
}

func TestARedeliveryOfASettledCommandPublishesTheSameEventAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, out, _ := newEventRig(t, worker.Config{})
		r.handle(&fakeMsg{data: seed(t), delivery: 1, ackErr: errors.New("connection lost")})
		again := &fakeMsg{data: seed(t), delivery: 2}
		r.handle(again)
		if r.graph.writes != 1 || again.acked != 1 || len(out.events) != 2 {
			t.Fatalf("writes %d, redelivery acked %d, %d events", r.graph.writes, again.acked, len(out.events))
		}
		if out.events[0].ID != out.events[1].ID {
			t.Fatalf("event ids %s and %s: a redelivery must publish the same event", out.events[0].ID, out.events[1].ID)
		}
		if d := out.data(t, 1); d["outcome"] != "applied" || d["graph_request_id"] != "g-1" {
			t.Fatalf("the repeated event says %v", d)
		}
		if r.settled[1].Outcome != metrics.OutcomeDuplicate {
			t.Fatalf("the redelivery counted as %s", r.settled[1].Outcome)
		}
	})
}

func TestAnEventThatCannotBePublishedKeepsTheMessageUntilItIs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, out, _ := newEventRig(t, worker.Config{HandbackAfter: time.Millisecond, BackoffMax: 10 * time.Millisecond})
		out.fail = errors.New("stream GRAPHOPS_OUTCOMES: no responders")
		first := &fakeMsg{data: seed(t), delivery: 1}
		r.handle(first)
		if first.acked != 0 || len(first.handedBack) != 1 {
			t.Fatalf("acked %d, handed back %v: without its event the command must go back", first.acked, first.handedBack)
		}
		if err := r.proc.OutcomesReady(); err == nil {
			t.Fatal("OutcomesReady reports nothing while events cannot be published")
		}
		out.fail = nil
		again := &fakeMsg{data: seed(t), delivery: 2}
		r.handle(again)
		if again.acked != 1 || len(out.events) != 1 || r.graph.writes != 1 {
			t.Fatalf("redelivery acked %d, %d events, %d writes: want the event once and no second call",
				again.acked, len(out.events), r.graph.writes)
		}
		if err := r.proc.OutcomesReady(); err != nil {
			t.Fatalf("OutcomesReady still reports %v after a publication", err)
		}
	})
}

func TestADeadLetterIsRecordedThenAnnouncedThenStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, out, _ := newEventRig(t, worker.Config{})
		out.check = func() {
			r.dead.mu.Lock()
			defer r.dead.mu.Unlock()
			if len(r.dead.entries) != 0 {
				t.Error("the dead letter was stored before its event was published")
			}
		}
		r.graph.script = []error{rejected404()}
		r.handle(&fakeMsg{data: seed(t), delivery: 1})
		out.check = nil
		if len(r.dead.entries) != 1 || len(out.events) != 1 {
			t.Fatalf("%d dead letters, %d events", len(r.dead.entries), len(out.events))
		}
		d := out.data(t, 0)
		if d["outcome"] != "dead_lettered" || d["reason"] != "graph_rejected" || d["graph_status"] != 404.0 ||
			d["attempts"] != 1.0 || d["description"] == "" {
			t.Fatalf("event data %v", d)
		}
		// The redelivery (say the ack was lost) publishes the same event and
		// stores the dead letter again, for the store to deduplicate.
		r.handle(&fakeMsg{data: seed(t), delivery: 2})
		if len(out.events) != 2 || out.events[1].ID != out.events[0].ID || len(r.dead.entries) != 2 {
			t.Fatalf("redelivery: %d events (ids %v), %d dead letters", len(out.events), out.events, len(r.dead.entries))
		}
	})
}

// TestTheSameIDForAnotherCalloutIsADuplicateAndNotSent: a producer that
// reuses a command's source+id for another callout instance sends nothing
// to Graph: the same source+id again is a duplicate (docs/SPEC.md §3).
func TestTheSameIDForAnotherCalloutIsADuplicateAndNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _, _ := newEventRig(t, worker.Config{})
		r.graph.status = graphops.StatusWaitingForCallback
		r.handle(&fakeMsg{data: seed(t), delivery: 1})
		other := bytes.Replace(seed(t), []byte("957d0c50-466b-4840-bb5b-c92cea7141ff"), []byte("11111111-466b-4840-bb5b-c92cea7141ff"), 1)
		if bytes.Equal(other, seed(t)) {
			t.Fatal("the example's callout instance id was not found")
		}
		r.handle(&fakeMsg{data: other, delivery: 1})
		if r.graph.writes != 1 || len(r.settled) != 2 || r.settled[1].Outcome != metrics.OutcomeDuplicate {
			t.Fatalf("writes %d, settled %+v: want the second sent nowhere, a duplicate", r.graph.writes, r.settled)
		}
	})
}

func TestAnotherCommandRepeatingAnAppliedResumeIsADuplicateOfIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, out, _ := newEventRig(t, worker.Config{})
		r.handle(&fakeMsg{data: seed(t), delivery: 1})
		other := withField(t, seed(t), "id", "another-id")
		r.handle(&fakeMsg{data: other, delivery: 1})
		if r.graph.writes != 1 || len(out.events) != 2 {
			t.Fatalf("writes %d, %d events", r.graph.writes, len(out.events))
		}
		d := out.data(t, 1)
		if d["outcome"] != "duplicate" || d["command_id"] != "another-id" || d["duplicate_of"] != identity(t, seed(t)).ID {
			t.Fatalf("event data %v", d)
		}
	})
}

func TestCommandsOfOneRequestQueueInMemoryInsteadOfPollingTheLedger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _, _ := newEventRig(t, worker.Config{})
		r.graph.delay = 100 * time.Millisecond
		spec := roleUpdate(t)
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() {
				r.handle(&fakeMsg{data: withField(t, spec, "id", "update-"+string(rune('a'+i))), delivery: 1})
			})
		}
		wg.Wait()
		if r.graph.writes != 3 || r.graph.maxInFlight != 1 {
			t.Fatalf("writes %d, at most %d in flight for one request: want 3 one at a time", r.graph.writes, r.graph.maxInFlight)
		}
		// Each command after the first reads the request record once to claim
		// it; polling a busy request would read it again and again.
		if gets := r.store.gets.Load(); gets > 2 {
			t.Fatalf("%d ledger reads for 3 commands of one request, want at most 2", gets)
		}
	})
}

// The issue 11 bug: a command that waited in short slices renewed nothing.
// One timer from receipt to settlement renews the claim whatever the job
// waits for — here a throttle gate twenty renewal periods long.
func TestTheClaimIsRenewedAcrossAThrottleWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _, _ := newEventRig(t, worker.Config{KeepAliveEvery: 20 * time.Millisecond, HandbackAfter: time.Minute})
		r.graph.script = []error{throttle(400 * time.Millisecond)}
		m := &fakeMsg{data: seed(t), delivery: 2}
		r.handle(m)
		if m.acked != 1 || r.graph.writes != 2 {
			t.Fatalf("acked %d, writes %d", m.acked, r.graph.writes)
		}
		// Claim (a create), outcome: the other writes are renewals.
		if renewals := r.store.updates.Load() - 1; renewals < 15 {
			t.Fatalf("%d claim renewals over a 400 ms wait with a 20 ms period, want about 20", renewals)
		}
	})
}

// A last delivery whose dead letter cannot be recorded (the ledger is down)
// is left to the broker, not dead-lettered again and again.
func TestALastDeliveryThatCannotBeRecordedIsLeftAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, out, _ := newEventRig(t, worker.Config{})
		r.graph.script = []error{rejected404()}
		m := &fakeMsg{data: seed(t), delivery: 10, last: true}
		// The claim is taken; the store goes down before the outcome.
		r.graph.onCall = func() { r.store.Fail(errors.New("connection refused")) }
		r.handle(m)
		if m.acked != 0 || len(m.handedBack) != 0 || len(r.dead.entries) != 0 || len(out.events) != 0 {
			t.Fatalf("acked %d, handed back %v, %d dead letters, %d events: want the message left to its lease",
				m.acked, m.handedBack, len(r.dead.entries), len(out.events))
		}
	})
}

// TestADeadLetterStoredAgainForARedeliveryDescribesTheSameCall: a
// redelivery of a dead-lettered command stores its dead letter again (the
// first delivery may have stopped before the store); it says what the first
// said of Graph's answer, from the ledger's history of the command.
func TestADeadLetterStoredAgainForARedeliveryDescribesTheSameCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{})
		r.graph.script = []error{rejected404()}
		r.handle(&fakeMsg{data: seed(t), delivery: 1})
		r.handle(&fakeMsg{data: seed(t), delivery: 2})
		if r.graph.writes != 1 || len(r.dead.entries) != 2 {
			t.Fatalf("writes %d, dead letters %d: want one call and the dead letter stored twice", r.graph.writes, len(r.dead.entries))
		}
		first, again := r.dead.entries[0], r.dead.entries[1]
		if first.GraphStatus != 404 || first.GraphCode != "ResourceNotFound" || first.GraphRequestID != "g-404" || first.ClientRequestID != "c-404" {
			t.Fatalf("first dead letter %+v: want Graph's 404 described", first)
		}
		if again.GraphStatus != first.GraphStatus || again.GraphCode != first.GraphCode ||
			again.GraphRequestID != first.GraphRequestID || again.ClientRequestID != first.ClientRequestID ||
			again.Reason != first.Reason || again.Attempts != first.Attempts {
			t.Errorf("dead letter stored again %+v\nwant what the first said %+v", again, first)
		}
	})
}

// TestADeadLetterAfterAHandBackDescribesTheEarlierDeliverysCall: a command
// throttled, handed back, and dead-lettered on its next delivery without a
// call of its own still names Graph's last answer (docs/SPEC.md §4), from
// the ledger's history.
func TestADeadLetterAfterAHandBackDescribesTheEarlierDeliverysCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{HandbackAfter: time.Second, RetryMaxElapsed: 2 * time.Second})
		r.graph.script = []error{&graphops.Error{Operation: graphops.OpResume, Status: 429, Code: "TooManyRequests",
			RetryAfter: 5 * time.Second, HasRetryAfter: true, GraphRequestID: "g-429", ClientRequestID: "c-429"}}
		first := &fakeMsg{data: seed(t), delivery: 1}
		r.handle(first)
		if len(first.handedBack) != 1 {
			t.Fatalf("handed back %v: want the throttled command handed back", first.handedBack)
		}
		time.Sleep(first.handedBack[0])
		r.handle(&fakeMsg{data: seed(t), delivery: 2})
		if r.graph.writes != 1 || len(r.dead.entries) != 1 {
			t.Fatalf("writes %d, dead letters %d: want one call, then the budget spent", r.graph.writes, len(r.dead.entries))
		}
		e := r.dead.entries[0]
		if e.Reason != dlq.ReasonRetriesExhausted || e.GraphStatus != 429 || e.GraphCode != "TooManyRequests" ||
			e.GraphRequestID != "g-429" || e.ClientRequestID != "c-429" || !strings.Contains(e.Description, "Graph answered 429") {
			t.Errorf("dead letter %+v: want retries_exhausted describing the 429 of the first delivery", e)
		}
	})
}

// TestACommandRefusedByValidationIsInTheLedger: a command that fails
// validation but whose id and request id could be read is recorded as
// dead-lettered, once, for `worker history` (docs/SPEC.md §8); a replay of
// its dead letter counts.
func TestACommandRefusedByValidationIsInTheLedger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _, _ := newEventRig(t, worker.Config{})
		bad := bytes.Replace(seed(t), []byte(`"stage":"assignmentRequestCreated"`), []byte(`"stage":"assignmentRequestApproved"`), 1)
		var ce *command.Error
		if _, err := command.Parse(bad, command.Options{}); !errors.As(err, &ce) || ce.Reason != command.ReasonValidationFailed || ce.RequestID == "" {
			t.Fatalf("Parse = %v: want a validation failure with the request id read", err)
		}
		r.handle(&fakeMsg{data: bad, delivery: 1})
		r.handle(&fakeMsg{data: bad, delivery: 2})
		found, err := ledger.ByCommandID(t.Context(), r.store, ce.ID)
		if err != nil || len(found) != 1 {
			t.Fatalf("ledger has %+v (%v), want the refused command once", found, err)
		}
		if rec := found[0].Record; rec.State != ledger.StateDeadLettered || rec.Reason != string(dlq.ReasonValidationFailed) || rec.Replays != 0 {
			t.Fatalf("record %+v, want dead-lettered for validation_failed", rec)
		}
		r.handle(&fakeMsg{data: bad, delivery: 1, headers: map[string]string{dlq.HeaderReplay: "7"}})
		found, _ = ledger.ByCommandID(t.Context(), r.store, ce.ID)
		if len(found) != 1 || found[0].Record.Replays != 1 {
			t.Fatalf("after a replay: %+v, want one record with one replay", found)
		}
		if r.graph.writes != 0 || len(r.dead.entries) != 3 {
			t.Fatalf("writes %d, dead letters %d: want no call and every delivery dead-lettered", r.graph.writes, len(r.dead.entries))
		}
	})
}
