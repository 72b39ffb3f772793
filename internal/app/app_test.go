package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphsim"
)

// The two resume examples of Microsoft's REST documentation
// (accessPackageAssignmentRequest: resume), verbatim.
const (
	seedVerifiedPath = "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/0e60f18c-b2a0-4887-9da8-da2e30a39d99/resume"
	seedVerifiedBody = `{"source":"Contoso.SodCheckProcess","type":"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated","data":{"@odata.type":"microsoft.graph.accessPackageAssignmentRequestCallbackData","stage":"assignmentRequestCreated","customExtensionStageInstanceId":"957d0c50-466b-4840-bb5b-c92cea7141ff","customExtensionStageInstanceDetail":"This user is all verified"}}`
	seedDeniedPath   = "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/9e60f18c-b2a0-4887-9da8-da2e30a39d99/resume"
	seedDeniedBody   = `{"source":"Contoso.SodCheckProcess","type":"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated","data":{"@odata.type":"microsoft.graph.accessPackageAssignmentRequestCallbackData","stage":"AssignmentRequestCreated","customExtensionStageInstanceId":"857d0c50-466b-4840-bb5b-c92cea7141ff","state":"denied","customExtensionStageInstanceDetail":"Potential risk user based on the SOD check"}}`
	rolePath         = "/beta/privilegedAccess/azureResources/roleAssignmentRequests/e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1"
	roleBody         = `{"reason":"Extended after review","schedule":{"type":"Once","endDateTime":"2026-12-31T00:00:00Z"}}`
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func seededSim() graphsim.Config { return graphsim.Config{} }

func addSeeds(h *harness) {
	h.sim.AddAssignmentRequest("0e60f18c-b2a0-4887-9da8-da2e30a39d99", "957d0c50-466b-4840-bb5b-c92cea7141ff")
	h.sim.AddAssignmentRequest("9e60f18c-b2a0-4887-9da8-da2e30a39d99", "857d0c50-466b-4840-bb5b-c92cea7141ff")
	h.sim.AddRoleRequest("azureResources", "e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1")
}

func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("body is not JSON: %q", got)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return bytes.Equal(ab, bb)
}

func TestTheDocumentedExamplesBecomeExactlyTheDocumentedCalls(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	addSeeds(h)
	for _, name := range []string{"resume-seed-verified", "resume-seed-denied", "role-request-update-spec"} {
		h.publish(example(t, name))
	}
	got := outcomes(h.waitSettled(3, 20*time.Second))
	if got["applied"] != 3 {
		t.Fatalf("outcomes %v, want 3 applied", got)
	}
	want := map[string]struct{ method, body string }{
		seedVerifiedPath: {http.MethodPost, seedVerifiedBody},
		seedDeniedPath:   {http.MethodPost, seedDeniedBody},
		rolePath:         {http.MethodPatch, roleBody},
	}
	ids := map[string]bool{}
	for _, c := range h.writes() {
		w, ok := want[c.Path]
		if !ok {
			t.Errorf("unexpected call %s %s", c.Method, c.Path)
			continue
		}
		delete(want, c.Path)
		if c.Method != w.method || c.Status/100 != 2 {
			t.Errorf("%s: %s answered %d, want %s and 2xx", c.Path, c.Method, c.Status, w.method)
		}
		if !jsonEqual(t, c.Body, w.body) {
			t.Errorf("%s: body %s, want %s", c.Path, c.Body, w.body)
		}
		if c.Authorization != "Bearer "+testToken {
			t.Errorf("%s: Authorization %q", c.Path, c.Authorization)
		}
		if !uuidRE.MatchString(c.ClientRequestID) || ids[c.ClientRequestID] {
			t.Errorf("%s: client-request-id %q not a fresh uuid", c.Path, c.ClientRequestID)
		}
		ids[c.ClientRequestID] = true
	}
	if len(want) != 0 {
		t.Errorf("calls never made: %v", want)
	}
	if st, _ := h.sim.Instance("0e60f18c-b2a0-4887-9da8-da2e30a39d99", "957d0c50-466b-4840-bb5b-c92cea7141ff"); st != "callbackReceived" {
		t.Errorf("instance status %q after the resume", st)
	}
	m := h.metrics()
	for _, series := range []string{
		`graphops_commands_total{outcome="applied",type="resume"} 2`,
		`graphops_commands_total{outcome="applied",type="role_request_update"} 1`,
		`graphops_graph_requests_total{code="204",operation="resume"} 2`,
		`graphops_in_flight{type="resume"} 0`,
		`graphops_dead_letters_total{reason="conflict",type="resume"} 0`,
	} {
		if !strings.Contains(m, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

func TestRedeliveriesAndEqualDecisionsAreDuplicatesAndADifferentDecisionIsAConflict(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	addSeeds(h)
	verified := example(t, "resume-seed-verified")
	h.publish(verified)
	h.waitSettled(1, 20*time.Second)
	h.publish(verified) // a redelivery: same source and id
	h.publish(withJSON(t, verified, map[string]any{"id": "another-command-same-decision"}))
	var cmd map[string]any
	_ = json.Unmarshal(verified, &cmd)
	data := cmd["data"].(map[string]any)
	body := data["body"].(map[string]any)
	body["data"].(map[string]any)["state"] = "Denied"
	h.publish(withJSON(t, verified, map[string]any{"id": "deny-after-approve", "data": data}))

	got := outcomes(h.waitSettled(4, 20*time.Second))
	if got["applied"] != 1 || got["duplicate"] != 2 || got["dead_lettered/conflict"] != 1 {
		t.Fatalf("outcomes %v, want 1 applied, 2 duplicate, 1 conflict", got)
	}
	if n := len(h.writes()); n != 1 {
		t.Fatalf("%d write calls, want 1", n)
	}
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Reason != dlq.ReasonConflict || !strings.Contains(dl[0].Description, "3d5a7c1e-0b6f-4e2a-8c9d-1a2b3c4d5e01") {
		t.Fatalf("dead letters %+v: want one conflict naming the earlier command", dl)
	}
	if dl[0].CommandID != "deny-after-approve" || dl[0].GraphStatus != 0 {
		t.Errorf("conflict dead letter %+v", dl[0])
	}
}

func TestBadInputIsDeadLetteredWithItsBytesIntactAndNeverReachesGraph(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	big := append([]byte(`{"specversion":"1.0","pad":"`), bytes.Repeat([]byte("x"), 300<<10)...)
	big = append(big, `"}`...)
	inputs := []struct {
		data   []byte
		reason dlq.Reason
		field  string
	}{
		{example(t, "bad-id-path-traversal"), dlq.ReasonValidationFailed, "data.accessPackageAssignmentRequestId"},
		{[]byte("not json \xff\x00"), dlq.ReasonInvalidMessage, ""},
		{big, dlq.ReasonInvalidMessage, ""},
		{withJSON(t, example(t, "resume-seed-verified"), map[string]any{"type": "graphops.somethingElse"}), dlq.ReasonInvalidMessage, "type"},
	}
	for _, in := range inputs {
		h.publish(in.data)
	}
	h.waitSettled(len(inputs), 20*time.Second)
	if n := len(h.sim.Calls()); n != 0 {
		t.Fatalf("Graph saw %d calls for bad input", n)
	}
	dl := h.deadLetters()
	if len(dl) != len(inputs) {
		t.Fatalf("%d dead letters, want %d", len(dl), len(inputs))
	}
	byPayload := map[string]dlq.Entry{}
	for _, e := range dl {
		byPayload[string(e.Payload)] = e
	}
	for i, in := range inputs {
		e, ok := byPayload[string(in.data)]
		if !ok {
			t.Errorf("input %d: no dead letter with its bytes intact", i)
			continue
		}
		if e.Reason != in.reason || !strings.Contains(e.Description, in.field) {
			t.Errorf("input %d: %s %q, want %s naming %q", i, e.Reason, e.Description, in.reason, in.field)
		}
		if !strings.HasPrefix(e.OriginalSubject, "graphops.commands.") {
			t.Errorf("input %d: original subject %q", i, e.OriginalSubject)
		}
	}
	if byPayload[string(inputs[0].data)].Type != "resume" || byPayload[string(inputs[1].data)].Type != "unknown" {
		t.Error("want type resume for the bad id and unknown for the non-JSON message")
	}
}

func TestA429IsWaitedOutForItsRetryAfterThenApplied(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	addSeeds(h)
	h.sim.Inject(graphsim.Match{Operation: "resume"}, graphsim.Fault{Status: 429, RetryAfter: "1"}, 1)
	h.publish(example(t, "resume-seed-verified"))
	got := outcomes(h.waitSettled(1, 20*time.Second))
	if got["applied"] != 1 {
		t.Fatalf("outcomes %v", got)
	}
	w := h.writes()
	if len(w) != 2 || w[0].Status != 429 || w[1].Status != 204 {
		t.Fatalf("writes %+v: want a 429 then a 204", w)
	}
	if gap := w[1].Time.Sub(w[0].Time); gap < time.Second {
		t.Fatalf("retried %s after a Retry-After of 1s", gap)
	}
	if w[0].ClientRequestID == w[1].ClientRequestID {
		t.Error("the retry reused the client-request-id")
	}
	m := h.metrics()
	for _, s := range []string{`graphops_graph_throttled_total{operation="resume"} 1`, `graphops_retries_total{operation="resume"} 1`,
		`graphops_graph_requests_total{code="429",operation="resume"} 1`} {
		if !strings.Contains(m, s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
}

func TestAResumeWhoseOutcomeIsUnknownIsReconciledBeforeAnyResend(t *testing.T) {
	cases := []struct {
		name        string
		fault       graphsim.Fault
		wantWrites  int
		wantApplied int
	}{
		{"a 500 after Graph applied it is not resent", graphsim.Fault{Status: 500, ApplyFirst: true}, 1, 1},
		{"a dropped connection after Graph applied it is not resent", graphsim.Fault{ApplyFirst: true, Drop: true}, 1, 1},
		{"a 503 without Retry-After that did not apply is resent", graphsim.Fault{Status: 503}, 2, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, seededSim(), nil)
			addSeeds(h)
			h.sim.Inject(graphsim.Match{Operation: "resume"}, tc.fault, 1)
			h.publish(example(t, "resume-seed-verified"))
			got := outcomes(h.waitSettled(1, 20*time.Second))
			if got["applied"] != 1 {
				t.Fatalf("outcomes %v", got)
			}
			st := h.sim.Stats()
			if n := len(h.writes()); n != tc.wantWrites {
				t.Fatalf("%d write calls, want %d", n, tc.wantWrites)
			}
			if st.Calls["read"] < 1 {
				t.Fatal("no read before deciding")
			}
			if st.DoubleApplies != 0 || h.sim.AppliedCount("0e60f18c-b2a0-4887-9da8-da2e30a39d99") != tc.wantApplied {
				t.Fatalf("applied %d times, %d double applies", h.sim.AppliedCount("0e60f18c-b2a0-4887-9da8-da2e30a39d99"), st.DoubleApplies)
			}
		})
	}
}

func TestGraphRejectionsAreDeadLetteredWithGraphsWords(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	addSeeds(h)
	h.sim.Inject(graphsim.Match{Operation: "role_request_update"}, graphsim.Fault{Status: 403, Code: "Authorization_RequestDenied", Message: "Insufficient privileges"}, 1)
	h.publish(example(t, "role-request-update-spec"))
	got := outcomes(h.waitSettled(1, 20*time.Second))
	if got["dead_lettered/graph_rejected"] != 1 {
		t.Fatalf("outcomes %v", got)
	}
	dl := h.deadLetters()
	if len(dl) != 1 {
		t.Fatalf("%d dead letters", len(dl))
	}
	e := dl[0]
	w := h.writes()
	if e.GraphStatus != 403 || e.GraphCode != "Authorization_RequestDenied" || e.Attempts != 1 ||
		!uuidRE.MatchString(e.GraphRequestID) || e.ClientRequestID != w[0].ClientRequestID ||
		!strings.Contains(e.Description, "Insufficient privileges") || e.RequestID != "azureResources/e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1" {
		t.Fatalf("dead letter %+v", e)
	}
	if e.FirstAttempt.IsZero() || e.LastAttempt.Before(e.FirstAttempt) {
		t.Errorf("attempt times %v %v", e.FirstAttempt, e.LastAttempt)
	}
}

func TestA401IsRetriedOnceWithAFreshToken(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	addSeeds(h)
	h.sim.Inject(graphsim.Match{Operation: "resume", RequestID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99"}, graphsim.Fault{Status: 401, Code: "InvalidAuthenticationToken"}, 1)
	h.sim.Inject(graphsim.Match{Operation: "resume", RequestID: "9e60f18c-b2a0-4887-9da8-da2e30a39d99"}, graphsim.Fault{Status: 401, Code: "InvalidAuthenticationToken"}, 2)
	h.publish(example(t, "resume-seed-verified"))
	h.publish(example(t, "resume-seed-denied"))
	got := outcomes(h.waitSettled(2, 20*time.Second))
	if got["applied"] != 1 || got["dead_lettered/graph_rejected"] != 1 {
		t.Fatalf("outcomes %v: want the single 401 applied and the double 401 rejected", got)
	}
}

func TestRetriesStopWhenTheBudgetIsSpent(t *testing.T) {
	h := newHarness(t, seededSim(), map[string]string{"RETRY_MAX_ELAPSED": "1s"})
	addSeeds(h)
	h.sim.Inject(graphsim.Match{Operation: "role_request_update"}, graphsim.Fault{Status: 502}, 1000)
	h.publish(example(t, "role-request-update-spec"))
	got := outcomes(h.waitSettled(1, 20*time.Second))
	if got["dead_lettered/retries_exhausted"] != 1 {
		t.Fatalf("outcomes %v", got)
	}
	e := h.deadLetters()[0]
	if e.Attempts < 2 || e.Attempts != len(h.writes()) || e.GraphStatus != 502 {
		t.Fatalf("dead letter attempts %d (writes %d), status %d", e.Attempts, len(h.writes()), e.GraphStatus)
	}
}

func TestACommandPastItsDeadlineIsExpiredWithoutACall(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	addSeeds(h)
	h.publish(withJSON(t, example(t, "resume-seed-verified"), map[string]any{"deadline": "2020-01-01T00:00:00Z"}))
	// A deadline that falls inside a throttle wait expires too.
	h.sim.Inject(graphsim.Match{Operation: "resume"}, graphsim.Fault{Status: 429, RetryAfter: "10"}, 1)
	h.publish(withJSON(t, example(t, "resume-seed-denied"), map[string]any{"deadline": time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339)}))
	got := outcomes(h.waitSettled(2, 20*time.Second))
	if got["dead_lettered/expired"] != 2 {
		t.Fatalf("outcomes %v, want 2 expired", got)
	}
	if n := len(h.writes()); n != 1 {
		t.Fatalf("%d write calls, want only the throttled one", n)
	}
}

func TestALongThrottleHandsTheMessageBackInsteadOfHoldingASlot(t *testing.T) {
	h := newHarness(t, seededSim(), map[string]string{"RETRY_HANDBACK_AFTER": "500ms"})
	addSeeds(h)
	h.sim.Inject(graphsim.Match{Operation: "resume"}, graphsim.Fault{Status: 429, RetryAfter: "2"}, 1)
	h.publish(example(t, "resume-seed-verified"))
	got := outcomes(h.waitSettled(1, 20*time.Second))
	if got["applied"] != 1 {
		t.Fatalf("outcomes %v", got)
	}
	w := h.writes()
	if len(w) != 2 || w[1].Time.Sub(w[0].Time) < 2*time.Second {
		t.Fatalf("writes %+v: want the retry at least 2s after the 429", w)
	}
	dl := h.deadLetters()
	if len(dl) != 0 {
		t.Fatalf("dead letters %+v", dl)
	}
}

func TestRoleRequestUpdatesCanBeSwitchedOff(t *testing.T) {
	h := newHarness(t, seededSim(), map[string]string{"GRAPH_ROLE_REQUEST_UPDATE": "off"})
	addSeeds(h)
	h.publish(example(t, "role-request-update-spec"))
	got := outcomes(h.waitSettled(1, 20*time.Second))
	if got["dead_lettered/validation_failed"] != 1 || len(h.sim.Calls()) != 0 {
		t.Fatalf("outcomes %v, calls %d", got, len(h.sim.Calls()))
	}
}

func TestADryRunPredictsTheLedgerCallsAndRecordsNothingAndLeavesTheCommandsForTheRealWorker(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	addSeeds(h)
	applied := example(t, "resume-seed-verified")
	h.publish(applied)
	if got := outcomes(h.waitSettled(1, 20*time.Second)); got["applied"] != 1 {
		t.Fatalf("the real worker first: %v", got)
	}
	h.stop()
	calls := len(h.sim.Calls())

	h.env["WORKER_DRY_RUN"] = "true"
	h.start()
	h.publish(applied)                                // applied before: a duplicate
	h.publish(example(t, "role-request-update-spec")) // never seen: a first try
	h.publish(example(t, "bad-id-path-traversal"))    // would be dead-lettered
	// The dry run reads through a consumer of its own: it has consumed
	// every message of the stream when its ack floor reaches the last.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := h.js.Consumer(context.Background(), "GRAPHOPS", "graphops-worker-dryrun")
		if err == nil {
			info, err := c.Info(context.Background())
			if err == nil && info.AckFloor.Stream == 4 && info.NumAckPending == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the dry run did not consume the four messages")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(h.sim.Calls()); n != calls {
		t.Fatalf("dry run made %d Graph calls", n-calls)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dry run stored %d dead letters", len(dl))
	}
	would := h.logLines("dry run: would call Graph")
	byID := map[string]map[string]any{}
	for _, l := range would {
		byID[l["command_id"].(string)] = l
	}
	ids := func(raw []byte) string {
		var c struct{ ID string }
		_ = json.Unmarshal(raw, &c)
		return c.ID
	}
	if l := byID[ids(applied)]; l == nil || l["ledger"] != "duplicate" || l["earlier_command"] != ids(applied) {
		t.Errorf("the applied command's prediction: %v", l)
	}
	if l := byID[ids(example(t, "role-request-update-spec"))]; l == nil || l["ledger"] != "first try" || l["method"] != "PATCH" {
		t.Errorf("the new command's prediction: %v", l)
	}
	if n := len(h.logLines("dry run: would dead-letter")); n != 1 {
		t.Errorf("%d would-dead-letter lines, want 1", n)
	}
	h.stop()

	h.env["WORKER_DRY_RUN"] = "false"
	h.start()
	got := outcomes(h.waitSettled(4, 20*time.Second))
	if got["applied"] != 2 || got["duplicate"] != 1 || got["dead_lettered/validation_failed"] != 1 {
		t.Fatalf("the real worker after the dry run: %v", got)
	}
}

func TestADrainHandsWaitingCommandsBackAndAnotherWorkerFinishesThem(t *testing.T) {
	h := newHarness(t, seededSim(), map[string]string{"RETRY_HANDBACK_AFTER": "30s"})
	addSeeds(h)
	h.sim.Inject(graphsim.Match{Operation: "resume"}, graphsim.Fault{Status: 429, RetryAfter: "6"}, 1)
	h.publish(example(t, "resume-seed-verified"))
	deadline := time.Now().Add(10 * time.Second)
	for len(h.writes()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	h.stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("drain took %s, more than SHUTDOWN_GRACE", d)
	}
	h.start() // another worker: the message is back in the broker at once, not after the ack wait
	got := outcomes(h.waitSettled(1, 30*time.Second))
	if got["applied"] != 1 {
		t.Fatalf("outcomes %v", got)
	}
	if st := h.sim.Stats(); st.DoubleApplies != 0 || h.sim.AppliedCount("0e60f18c-b2a0-4887-9da8-da2e30a39d99") != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReadinessFollowsTheBroker(t *testing.T) {
	h := newHarness(t, seededSim(), nil)
	status := func(path string) int {
		resp, err := http.Get("http://" + h.adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := status("/healthz"), status("/readyz"); a != 200 || b != 200 {
		t.Fatalf("healthz %d, readyz %d while connected; want 200 and 200", a, b)
	}
	h.nats.Shutdown() // the broker goes away
	deadline := time.Now().Add(10 * time.Second)
	for status("/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 200 10s after the broker went away")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := status("/healthz"); got != 200 {
		t.Fatalf("healthz %d while the broker is away; the process is alive", got)
	}
}
