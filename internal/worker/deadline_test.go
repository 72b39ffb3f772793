package worker_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
)

// unansweredWrite is a resume that was sent and got no answer.
func unansweredWrite() error {
	return &graphops.TransportError{Operation: graphops.OpResume, Method: "POST", ClientRequestID: "c-lost", Sent: true,
		Err: errors.New("connection reset")}
}

// TestTheDeadlineComesAfterTheReadOfAnUnansweredWrite: a resume whose write
// got no answer is read after the settle time even when its deadline passed
// meanwhile (docs/SPEC.md §3, "before anything else"): if the write took
// effect the command is applied, otherwise it expires without a second
// write.
func TestTheDeadlineComesAfterTheReadOfAnUnansweredWrite(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tookEffect bool
		want       string
		reason     string
	}{
		{"the write took effect", true, metrics.OutcomeApplied, ""},
		{"the write was lost", false, metrics.OutcomeDeadLettered, string(dlq.ReasonExpired)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, worker.Config{SettleAfterNoAnswer: 5 * time.Second})
				r.graph.script = []error{unansweredWrite()}
				if tc.tookEffect {
					r.graph.onCall = func() { r.graph.mu.Lock(); r.graph.status = graphops.StatusCallbackReceived; r.graph.mu.Unlock() }
				}
				deadline := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
				r.handle(&fakeMsg{data: withField(t, seed(t), "deadline", deadline), delivery: 1})
				if r.graph.writes != 1 || r.graph.reads != 1 {
					t.Fatalf("writes %d reads %d: want the one write, then one read", r.graph.writes, r.graph.reads)
				}
				if len(r.settled) != 1 || r.settled[0].Outcome != tc.want || r.settled[0].Reason != tc.reason {
					t.Fatalf("settled %+v, want %s %s", r.settled, tc.want, tc.reason)
				}
			})
		})
	}
}

// TestAnExpiredCommandIsRecordedAndAnExpiredRedeliveryOfAnAppliedOneIsADuplicate:
// the deadline is checked after the claim, so the ledger knows an expired
// command (worker history), and a redelivery of an applied command after
// its deadline is the duplicate it is, not a dead letter.
func TestAnExpiredCommandIsRecordedAndAnExpiredRedeliveryOfAnAppliedOneIsADuplicate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _, led := newEventRig(t, worker.Config{})
		r.graph.status = graphops.StatusWaitingForCallback
		data := withField(t, seed(t), "deadline", time.Now().Add(time.Minute).UTC().Format(time.RFC3339))
		r.handle(&fakeMsg{data: data, delivery: 1})
		time.Sleep(2 * time.Minute)
		r.handle(&fakeMsg{data: data, delivery: 2})
		if r.graph.writes != 1 || len(r.settled) != 2 || r.settled[0].Outcome != metrics.OutcomeApplied ||
			r.settled[1].Outcome != metrics.OutcomeDuplicate {
			t.Fatalf("writes %d, settled %+v: want applied, then a duplicate", r.graph.writes, r.settled)
		}

		late := withField(t, withField(t, seed(t), "id", "late-1"), "deadline", time.Now().Add(-time.Second).UTC().Format(time.RFC3339))
		late = withField(t, late, "data", map[string]any{"accessPackageAssignmentRequestId": "0e60f18c-b2a0-4887-9da8-da2e30a39d99",
			"body": map[string]any{"source": "Contoso.SodCheckProcess",
				"type": "microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated",
				"data": map[string]any{"@odata.type": "microsoft.graph.accessPackageAssignmentRequestCallbackData",
					"stage": "assignmentRequestCreated", "customExtensionStageInstanceId": "another-instance"}}})
		r.handle(&fakeMsg{data: late, delivery: 1})
		if r.graph.writes != 1 || len(r.settled) != 3 || r.settled[2].Reason != string(dlq.ReasonExpired) {
			t.Fatalf("writes %d, settled %+v: want the late command expired without a call", r.graph.writes, r.settled)
		}
		id := identity(t, late)
		id.Key = ledger.KeyOf("callout", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", "another-instance")
		rec, ok, err := led.Lookup(t.Context(), id)
		if err != nil || !ok || rec.State != ledger.StateDeadLettered || rec.Reason != string(dlq.ReasonExpired) {
			t.Fatalf("ledger record %+v found %v err %v: want dead-lettered, expired", rec, ok, err)
		}
	})
}

// TestAFailingReconcilingReadBacksOff: the read after an unanswered write
// is retried with growing waits (one retry loop, exponential backoff,
// docs/SPEC.md §3), not at a fixed interval.
func TestAFailingReconcilingReadBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{SettleAfterNoAnswer: time.Second, BackoffInitial: 100 * time.Millisecond,
			BackoffMax: 20 * time.Second})
		r.graph.script = []error{unansweredWrite()}
		for range 6 {
			r.graph.readErrs = append(r.graph.readErrs, &graphops.Error{Operation: graphops.OpResume, Method: "GET", Status: 500, Code: "InternalServerError"})
		}
		r.handle(&fakeMsg{data: seed(t), delivery: 1})
		if r.graph.reads != 7 || len(r.settled) != 1 || r.settled[0].Outcome != metrics.OutcomeApplied {
			t.Fatalf("reads %d, settled %+v: want six failed reads, one that answered, then applied", r.graph.reads, r.settled)
		}
		at := r.graph.readAt
		first, last := at[1].Sub(at[0]), at[6].Sub(at[5])
		if last < 4*first {
			t.Errorf("waits between reads %v … %v: want them to grow (exponential backoff)", first, last)
		}
	})
}
