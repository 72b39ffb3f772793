package graphsim_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/graphops/worker/internal/graphsim"
)

const (
	token        = "test-token"
	assignPath   = "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/"
	rolePath     = "/beta/privilegedAccess/"
	exampleReqID = "0e60f18c-b2a0-4887-9da8-da2e30a39d99"
	exampleInst  = "957d0c50-466b-4840-bb5b-c92cea7141ff"
	denyReqID    = "9e60f18c-b2a0-4887-9da8-da2e30a39d99"
	denyInst     = "857d0c50-466b-4840-bb5b-c92cea7141ff"
	roleReqID    = "e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1"
)

// exampleResume is Example 1 of Microsoft's resume documentation (seed 001).
const exampleResume = `{
  "source": "Contoso.SodCheckProcess",
  "type": "microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated",
  "data": {
    "@odata.type": "microsoft.graph.accessPackageAssignmentRequestCallbackData",
    "stage": "assignmentRequestCreated",
    "customExtensionStageInstanceId": "957d0c50-466b-4840-bb5b-c92cea7141ff",
    "customExtensionStageInstanceDetail": "This user is all verified"
  }
}`

// exampleDeny is Example 2 of the same page: note its PascalCase stage.
const exampleDeny = `{
  "source": "Contoso.SodCheckProcess",
  "type": "microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated",
  "data": {
    "@odata.type": "microsoft.graph.accessPackageAssignmentRequestCallbackData",
    "stage": "AssignmentRequestCreated",
    "customExtensionStageInstanceId": "857d0c50-466b-4840-bb5b-c92cea7141ff",
    "state": "denied",
    "customExtensionStageInstanceDetail": "Potential risk user based on the SOD check"
  }
}`

// resumeBody is a minimal valid resume body for instance.
func resumeBody(instance string) string {
	return `{"source":"test","type":"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestApproved",` +
		`"data":{"@odata.type":"microsoft.graph.accessPackageAssignmentRequestCallbackData",` +
		`"stage":"assignmentRequestApproved","customExtensionStageInstanceId":"` + instance + `"}}`
}

func resumeURL(requestID string) string { return assignPath + requestID + "/resume" }
func readURL(requestID string) string   { return assignPath + requestID }
func roleURL(pid, id string) string     { return rolePath + pid + "/roleAssignmentRequests/" + id }

// fixture serves a Sim over loopback HTTP.
type fixture struct {
	sim    *graphsim.Sim
	url    string
	client *http.Client
}

func newFixture(t *testing.T, cfg graphsim.Config) *fixture {
	t.Helper()
	return serve(t, graphsim.New(cfg))
}

// serve serves sim on an httptest server; set test hooks before, so that the
// server's goroutines start after them.
func serve(t *testing.T, sim *graphsim.Sim) *fixture {
	t.Helper()
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = sim.Close() }) // runs first: releases waiting calls so srv.Close does not block
	return &fixture{sim: sim, url: srv.URL, client: srv.Client()}
}

// call is one request of a test. Header values override the defaults
// (bearer token, JSON content type, a fresh client-request-id); an empty
// value removes the header.
type call struct {
	method, path, body string
	header             map[string]string
	rawBody            []byte
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(t *testing.T, c call) answer {
	t.Helper()
	a, err := f.try(c)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	return a
}

func (f *fixture) try(c call) (answer, error) {
	body := io.Reader(strings.NewReader(c.body))
	if c.rawBody != nil {
		body = bytes.NewReader(c.rawBody)
	}
	req, err := http.NewRequest(c.method, f.url+c.path, body)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("client-request-id", uuid.NewString())
	if c.method == http.MethodPost || c.method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	// Keep the request's client-request-id where checks can compare it.
	resp.Header.Set("X-Test-Sent-Client-Request-Id", req.Header.Get("client-request-id"))
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

type graphError struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError struct {
			Date            string `json:"date"`
			RequestID       string `json:"request-id"`
			ClientRequestID string `json:"client-request-id"`
		} `json:"innerError"`
	} `json:"error"`
}

var graphDate = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$`)

// checkAnswer asserts the status and, for an error, Graph's error shape and
// the code; every answer must carry a uuid request-id and echo the
// client-request-id.
func checkAnswer(t *testing.T, a answer, wantStatus int, wantCode string) {
	t.Helper()
	if a.status != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", a.status, wantStatus, a.body)
	}
	if _, err := uuid.Parse(a.header.Get("request-id")); err != nil {
		t.Errorf("request-id header %q is not a uuid", a.header.Get("request-id"))
	}
	if got, want := a.header.Get("client-request-id"), a.header.Get("X-Test-Sent-Client-Request-Id"); got != want {
		t.Errorf("client-request-id echoed as %q, want %q", got, want)
	}
	if wantStatus < 400 {
		return
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var ge graphError
	if err := json.Unmarshal(a.body, &ge); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, a.body)
	}
	if ge.Error.Code != wantCode {
		t.Errorf("error code = %q, want %q (message %q)", ge.Error.Code, wantCode, ge.Error.Message)
	}
	if ge.Error.Message == "" {
		t.Error("error message is empty")
	}
	in := ge.Error.InnerError
	if !graphDate.MatchString(in.Date) {
		t.Errorf("innerError.date = %q, want Graph's offset-less form like 2026-11-23T10:00:00", in.Date)
	}
	if in.RequestID != a.header.Get("request-id") {
		t.Errorf("innerError.request-id = %q, header request-id = %q", in.RequestID, a.header.Get("request-id"))
	}
	if in.ClientRequestID != a.header.Get("X-Test-Sent-Client-Request-Id") {
		t.Errorf("innerError.client-request-id = %q, want %q", in.ClientRequestID, a.header.Get("X-Test-Sent-Client-Request-Id"))
	}
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readRequest GETs an assignment request and decodes it.
func readRequest(t *testing.T, f *fixture, requestID string) map[string]any {
	t.Helper()
	a := f.do(t, call{method: http.MethodGet, path: readURL(requestID) + "?$select=id,state,status,customExtensionCalloutInstances"})
	checkAnswer(t, a, http.StatusOK, "")
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return m
}

func TestResume(t *testing.T) {
	tests := []struct {
		name        string
		autoCreate  bool
		setup       func(s *graphsim.Sim)
		requestID   string
		body        string
		rawBody     []byte
		header      map[string]string
		wantStatus  int
		wantCode    string
		wantApplied int
		instance    string // checked for wantInstance when set
		wantInst    string
		wantState   string // request state after the call, when set
		wantDouble  int
	}{
		{
			name:      "Microsoft's example body gets 204 when its instance waits",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: exampleResume,
			wantStatus: 204, wantApplied: 1, instance: exampleInst, wantInst: "callbackReceived", wantState: "delivering",
		},
		{
			name:      "Microsoft's deny example gets 204 and denies the request",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(denyReqID, denyInst) },
			requestID: denyReqID, body: exampleDeny,
			wantStatus: 204, wantApplied: 1, instance: denyInst, wantInst: "callbackReceived", wantState: "denied",
		},
		{
			name:      "a Canceled state cancels the request",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(denyReqID, denyInst) },
			requestID: denyReqID, body: strings.Replace(exampleDeny, `"denied"`, `"Canceled"`, 1),
			wantStatus: 204, wantApplied: 1, wantState: "canceled",
		},
		{
			name:      "the request keeps waiting while another of its instances waits",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst, "other-instance") },
			requestID: exampleReqID, body: exampleResume,
			wantStatus: 204, wantApplied: 1, wantState: "submitted",
		},
		{
			name:      "ids are matched case-insensitively",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: strings.ToUpper(exampleReqID), body: strings.Replace(exampleResume, exampleInst, strings.ToUpper(exampleInst), 1),
			wantStatus: 204, wantApplied: 1, instance: exampleInst, wantInst: "callbackReceived",
		},
		{
			name: "a second resume of an answered instance is refused and counted as a double apply",
			setup: func(s *graphsim.Sim) {
				s.AddAssignmentRequest(exampleReqID, exampleInst)
				s.SetInstanceStatus(exampleReqID, exampleInst, graphsim.StatusCallbackReceived)
			},
			requestID: exampleReqID, body: exampleResume,
			wantStatus: 400, wantCode: "InvalidRequestState", instance: exampleInst, wantInst: "callbackReceived", wantDouble: 1,
		},
		{
			name: "a resume of a timed-out instance is refused but is no double apply",
			setup: func(s *graphsim.Sim) {
				s.AddAssignmentRequest(exampleReqID, exampleInst)
				s.SetInstanceStatus(exampleReqID, exampleInst, graphsim.StatusCallbackTimedOut)
			},
			requestID: exampleReqID, body: exampleResume,
			wantStatus: 400, wantCode: "InvalidRequestState", instance: exampleInst, wantInst: "callbackTimedOut",
		},
		{
			name:      "an instance the request does not have is a 400",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, "another-instance") },
			requestID: exampleReqID, body: exampleResume,
			wantStatus: 400, wantCode: "BadRequest",
		},
		{
			name:      "an unknown request is a 404 ResourceNotFound",
			requestID: exampleReqID, body: exampleResume,
			wantStatus: 404, wantCode: "ResourceNotFound",
		},
		{
			name:       "AutoCreate creates an unknown request waiting on the instance the resume names",
			autoCreate: true,
			requestID:  exampleReqID, body: exampleResume,
			wantStatus: 204, wantApplied: 1, instance: exampleInst, wantInst: "callbackReceived", wantState: "delivering",
		},
		{
			name:       "AutoCreate adds an unknown instance to a known request",
			autoCreate: true,
			setup:      func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, "first-instance") },
			requestID:  exampleReqID, body: exampleResume,
			wantStatus: 204, wantApplied: 1, instance: exampleInst, wantInst: "callbackReceived", wantState: "submitted",
		},
		{
			name:      "a body without data.@odata.type is a 400",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: strings.Replace(exampleResume, `"@odata.type": "microsoft.graph.accessPackageAssignmentRequestCallbackData",`, "", 1),
			wantStatus: 400, wantCode: "BadRequest", instance: exampleInst, wantInst: "waitingForCallback",
		},
		{
			name:      "a body without customExtensionStageInstanceId is a 400",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: strings.Replace(exampleResume, `"customExtensionStageInstanceId"`, `"otherId"`, 1),
			wantStatus: 400, wantCode: "BadRequest",
		},
		{
			name:      "a body without data is a 400",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: `{"source":"x","type":"y"}`,
			wantStatus: 400, wantCode: "BadRequest",
		},
		{
			name:      "a body that is not JSON is a 400 BadRequest",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: `{"data":`,
			wantStatus: 400, wantCode: "BadRequest",
		},
		{
			name:      "a state other than Denied or Canceled is a 400",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(denyReqID, denyInst) },
			requestID: denyReqID, body: strings.Replace(exampleDeny, `"denied"`, `"approved"`, 1),
			wantStatus: 400, wantCode: "BadRequest", instance: denyInst, wantInst: "waitingForCallback",
		},
		{
			name:      "a missing Content-Type is a 415",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: exampleResume, header: map[string]string{"Content-Type": ""},
			wantStatus: 415, wantCode: "UnsupportedMediaType", instance: exampleInst, wantInst: "waitingForCallback",
		},
		{
			name:      "a text/plain body is a 415",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: exampleResume, header: map[string]string{"Content-Type": "text/plain"},
			wantStatus: 415, wantCode: "UnsupportedMediaType",
		},
		{
			name:      "a JSON content type with parameters is accepted",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: exampleResume, header: map[string]string{"Content-Type": "application/json; charset=utf-8"},
			wantStatus: 204, wantApplied: 1,
		},
		{
			name:      "a gzip body is decoded and applied",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, rawBody: gzipped(t, exampleResume), header: map[string]string{"Content-Encoding": "gzip"},
			wantStatus: 204, wantApplied: 1, instance: exampleInst, wantInst: "callbackReceived",
		},
		{
			name:      "a corrupt gzip body is a 400",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: exampleResume, header: map[string]string{"Content-Encoding": "gzip"},
			wantStatus: 400, wantCode: "BadRequest",
		},
		{
			name:      "an unsupported Content-Encoding is a 415",
			setup:     func(s *graphsim.Sim) { s.AddAssignmentRequest(exampleReqID, exampleInst) },
			requestID: exampleReqID, body: exampleResume, header: map[string]string{"Content-Encoding": "br"},
			wantStatus: 415, wantCode: "UnsupportedMediaType",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, graphsim.Config{Token: token, AutoCreate: tt.autoCreate})
			if tt.setup != nil {
				tt.setup(f.sim)
			}
			a := f.do(t, call{method: http.MethodPost, path: resumeURL(tt.requestID), body: tt.body, rawBody: tt.rawBody, header: tt.header})
			checkAnswer(t, a, tt.wantStatus, tt.wantCode)
			if tt.wantStatus == 204 && len(a.body) != 0 {
				t.Errorf("204 with a body: %q", a.body)
			}
			st := f.sim.Stats()
			if st.Applied[graphsim.OpResume] != tt.wantApplied || f.sim.AppliedCount(tt.requestID) != tt.wantApplied {
				t.Errorf("applied = %d (AppliedCount %d), want %d", st.Applied[graphsim.OpResume], f.sim.AppliedCount(tt.requestID), tt.wantApplied)
			}
			if st.DoubleApplies != tt.wantDouble {
				t.Errorf("DoubleApplies = %d, want %d", st.DoubleApplies, tt.wantDouble)
			}
			if st.Status[tt.wantStatus] != 1 || st.Calls[graphsim.OpResume] != 1 {
				t.Errorf("Stats.Status = %v, Stats.Calls = %v; want one resume answered %d", st.Status, st.Calls, tt.wantStatus)
			}
			if tt.instance != "" {
				if got, ok := f.sim.Instance(tt.requestID, tt.instance); !ok || got != tt.wantInst {
					t.Errorf("instance status = %q (known %v), want %q", got, ok, tt.wantInst)
				}
			}
			if tt.wantState != "" {
				if got := readRequest(t, f, tt.requestID)["state"]; got != tt.wantState {
					t.Errorf("request state = %v, want %s", got, tt.wantState)
				}
			}
		})
	}
}

func TestSecondResumeOfTheSameCommandIsRefusedAndCounted(t *testing.T) {
	f := newFixture(t, graphsim.Config{})
	f.sim.AddAssignmentRequest(exampleReqID, exampleInst)
	checkAnswer(t, f.do(t, call{method: http.MethodPost, path: resumeURL(exampleReqID), body: exampleResume}), 204, "")
	checkAnswer(t, f.do(t, call{method: http.MethodPost, path: resumeURL(exampleReqID), body: exampleResume}), 400, "InvalidRequestState")
	st := f.sim.Stats()
	if st.DoubleApplies != 1 || st.Applied[graphsim.OpResume] != 1 || f.sim.AppliedCount(exampleReqID) != 1 {
		t.Fatalf("DoubleApplies %d, Applied %v, AppliedCount %d; want 1, resume:1, 1",
			st.DoubleApplies, st.Applied, f.sim.AppliedCount(exampleReqID))
	}
}

func TestRead(t *testing.T) {
	tests := []struct {
		name       string
		autoCreate bool
		query      string
		requestID  string
		wantStatus int
		wantCode   string
		wantKeys   []string // the properties the answer must have exactly (with @odata.context)
	}{
		{
			name: "the worker's $select returns exactly those properties", requestID: exampleReqID,
			query:      "?$select=id,state,status,customExtensionCalloutInstances",
			wantStatus: 200, wantKeys: []string{"@odata.context", "id", "state", "status", "customExtensionCalloutInstances"},
		},
		{
			name: "a $select names properties case-insensitively and always gets id", requestID: exampleReqID,
			query: "?%24select=STATE", wantStatus: 200, wantKeys: []string{"@odata.context", "id", "state"},
		},
		{
			name: "no $select returns the whole request", requestID: exampleReqID,
			wantStatus: 200, wantKeys: []string{"@odata.context", "id", "requestType", "state", "status", "createdDateTime",
				"completedDateTime", "justification", "schedule", "answers", "customExtensionCalloutInstances"},
		},
		{
			name: "a $select of an unknown property is a 400", requestID: exampleReqID,
			query: "?$select=id,stat", wantStatus: 400, wantCode: "BadRequest",
		},
		{
			name: "an unknown request is a 404", requestID: "11111111-0000-0000-0000-000000000000",
			wantStatus: 404, wantCode: "ResourceNotFound",
		},
		{
			name: "AutoCreate shows a never-seen request without callout instances", autoCreate: true,
			requestID: "11111111-0000-0000-0000-000000000000", query: "?$select=customExtensionCalloutInstances",
			wantStatus: 200, wantKeys: []string{"@odata.context", "id", "customExtensionCalloutInstances"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, graphsim.Config{AutoCreate: tt.autoCreate})
			f.sim.AddAssignmentRequest(exampleReqID, exampleInst)
			a := f.do(t, call{method: http.MethodGet, path: readURL(tt.requestID) + tt.query})
			checkAnswer(t, a, tt.wantStatus, tt.wantCode)
			if tt.wantStatus != 200 {
				return
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var m map[string]any
			if err := json.Unmarshal(a.body, &m); err != nil {
				t.Fatal(err)
			}
			if len(m) != len(tt.wantKeys) {
				t.Errorf("answer has %d properties, want %v: %s", len(m), tt.wantKeys, a.body)
			}
			for _, k := range tt.wantKeys {
				if _, ok := m[k]; !ok {
					t.Errorf("answer lacks %q: %s", k, a.body)
				}
			}
			if m["id"] != tt.requestID {
				t.Errorf("id = %v, want %s", m["id"], tt.requestID)
			}
		})
	}
}

func TestReadReflectsTheCalloutInstances(t *testing.T) {
	f := newFixture(t, graphsim.Config{})
	f.sim.AddAssignmentRequest(exampleReqID, exampleInst, "second-instance")
	before := readRequest(t, f, exampleReqID)
	if before["state"] != "submitted" || before["status"] != "WaitingForCallback" {
		t.Fatalf("before resume: state %v, status %v", before["state"], before["status"])
	}
	checkAnswer(t, f.do(t, call{method: http.MethodPost, path: resumeURL(exampleReqID), body: exampleResume}), 204, "")
	f.sim.SetInstanceStatus(exampleReqID, "second-instance", graphsim.StatusCallbackTimedOut)

	after := readRequest(t, f, exampleReqID)
	insts, _ := after["customExtensionCalloutInstances"].([]any)
	if len(insts) != 2 {
		t.Fatalf("instances = %v", after["customExtensionCalloutInstances"])
	}
	first, _ := insts[0].(map[string]any)
	second, _ := insts[1].(map[string]any)
	for _, k := range []string{"id", "status", "detail", "customExtensionId", "externalCorrelationId"} {
		if _, ok := first[k]; !ok {
			t.Errorf("instance lacks %q: %v", k, first)
		}
	}
	if first["id"] != exampleInst || first["status"] != "callbackReceived" || first["detail"] != "This user is all verified" {
		t.Errorf("first instance = %v, want callbackReceived with the resume's detail", first)
	}
	if second["id"] != "second-instance" || second["status"] != "callbackTimedOut" {
		t.Errorf("second instance = %v, want callbackTimedOut", second)
	}
	if after["state"] != "delivering" || after["status"] != "Delivering" {
		t.Errorf("after resume: state %v, status %v; want delivering, Delivering", after["state"], after["status"])
	}
}

func TestRoleRequestUpdate(t *testing.T) {
	const body = `{"reason":"Extended after review","schedule":{"type":"Once","endDateTime":"2026-12-31T00:00:00Z"},"id":"ignored"}`
	tests := []struct {
		name       string
		cfg        graphsim.Config
		known      bool
		body       string
		wantStatus int
		wantCode   string
		wantApply  int
	}{
		{name: "a PATCH answers 200 with the merged object", known: true, body: body, wantStatus: 200, wantApply: 1},
		{name: "a PATCH answers 204 when configured so", cfg: graphsim.Config{RoleUpdateNoContent: true}, known: true, body: body, wantStatus: 204, wantApply: 1},
		{name: "an unknown role request is a 404", body: body, wantStatus: 404, wantCode: "ResourceNotFound"},
		{name: "AutoCreate creates an unknown role request", cfg: graphsim.Config{AutoCreate: true}, body: body, wantStatus: 200, wantApply: 1},
		{name: "a body that is not an object is a 400", known: true, body: `["reason"]`, wantStatus: 400, wantCode: "BadRequest"},
		{name: "a null body is a 400", known: true, body: `null`, wantStatus: 400, wantCode: "BadRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			if tt.known {
				f.sim.AddRoleRequest("azureResources", roleReqID)
			}
			a := f.do(t, call{method: http.MethodPatch, path: roleURL("azureResources", roleReqID), body: tt.body})
			checkAnswer(t, a, tt.wantStatus, tt.wantCode)
			if got := f.sim.AppliedCount("azureResources/" + roleReqID); got != tt.wantApply {
				t.Errorf("AppliedCount = %d, want %d", got, tt.wantApply)
			}
			if tt.wantStatus == 204 && len(a.body) != 0 {
				t.Errorf("204 with a body %q", a.body)
			}
			if tt.wantStatus != 200 {
				return
			}
			var m map[string]any
			if err := json.Unmarshal(a.body, &m); err != nil {
				t.Fatal(err)
			}
			sched, _ := m["schedule"].(map[string]any)
			if m["id"] != roleReqID || m["reason"] != "Extended after review" || sched["endDateTime"] != "2026-12-31T00:00:00Z" {
				t.Errorf("answer = %s; want the path's id and the body's properties", a.body)
			}
			if m["assignmentState"] != "Eligible" {
				t.Errorf("a property the PATCH did not name was lost: %s", a.body)
			}
		})
	}
}

func TestEveryRoleRequestUpdateIsApplied(t *testing.T) {
	f := newFixture(t, graphsim.Config{})
	f.sim.AddRoleRequest("azureResources", roleReqID)
	for _, reason := range []string{"one", "two", "three"} {
		a := f.do(t, call{method: http.MethodPatch, path: roleURL("AzureResources", strings.ToUpper(roleReqID)), body: `{"reason":"` + reason + `"}`})
		checkAnswer(t, a, 200, "")
		if !strings.Contains(string(a.body), `"reason":"`+reason+`"`) {
			t.Errorf("answer %s does not carry reason %s", a.body, reason)
		}
	}
	if got := f.sim.AppliedCount("azureResources/" + roleReqID); got != 3 {
		t.Errorf("AppliedCount = %d, want 3", got)
	}
	if st := f.sim.Stats(); st.Applied[graphsim.OpRoleRequestUpdate] != 3 || st.DoubleApplies != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestAuthentication(t *testing.T) {
	tests := []struct {
		name       string
		token      string
		header     string
		wantStatus int
	}{
		{"a missing Authorization header is a 401", token, "", 401},
		{"a Basic Authorization header is a 401", token, "Basic dXNlcjpwYXNz", 401},
		{"a wrong bearer token is a 401", token, "Bearer not-the-token", 401},
		{"the configured bearer token is accepted", token, "Bearer " + token, 204},
		{"the Bearer scheme is case-insensitive", token, "bearer " + token, 204},
		{"without a configured token any bearer token is accepted", "", "Bearer whatever", 204},
		{"without a configured token an empty bearer token is a 401", "", "Bearer ", 401},
		{"without a configured token a missing header is a 401", "", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, graphsim.Config{Token: tt.token})
			f.sim.AddAssignmentRequest(exampleReqID, exampleInst)
			f.sim.Inject(graphsim.Match{}, graphsim.Fault{Status: 503}, 1)
			a := f.do(t, call{method: http.MethodPost, path: resumeURL(exampleReqID), body: exampleResume, header: map[string]string{"Authorization": tt.header}})
			if tt.wantStatus == 401 {
				checkAnswer(t, a, 401, "InvalidAuthenticationToken")
				if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("WWW-Authenticate = %q", a.header.Get("WWW-Authenticate"))
				}
				if got, _ := f.sim.Instance(exampleReqID, exampleInst); got != graphsim.StatusWaitingForCallback {
					t.Errorf("a refused call changed the instance to %s", got)
				}
				// The refused call took no fault: it is left for a call Graph accepts.
				a = f.do(t, call{method: http.MethodGet, path: readURL(exampleReqID), header: map[string]string{"Authorization": "Bearer " + token}})
				checkAnswer(t, a, 503, "ServiceUnavailable")
				return
			}
			checkAnswer(t, a, 503, "ServiceUnavailable") // an accepted call takes the fault
			a = f.do(t, call{method: http.MethodPost, path: resumeURL(exampleReqID), body: exampleResume, header: map[string]string{"Authorization": tt.header}})
			checkAnswer(t, a, 204, "")
		})
	}
}

func TestUnknownCallsAreRefusedAndRecorded(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantAllow  string
	}{
		{"another Graph path is a 404", http.MethodGet, "/v1.0/me", 404, ""},
		{"the beta resume is not a path the worker may use", http.MethodPost, "/beta/identityGovernance/entitlementManagement/assignmentRequests/x/resume", 404, ""},
		{"another action on an assignment request is a 404", http.MethodPost, assignPath + "x/reprocess", 404, ""},
		{"a trailing slash is a 404", http.MethodGet, assignPath + "x/", 404, ""},
		{"deleting an assignment request is a 405", http.MethodDelete, assignPath + "x", 405, "GET"},
		{"reading the resume action is a 405", http.MethodGet, resumeURL("x"), 405, "POST"},
		{"replacing a role request is a 405", http.MethodPut, roleURL("azureResources", "x"), 405, "PATCH"},
		{"the root is a 404", http.MethodGet, "/", 404, ""},
		// An id the worker would never send names no resource (graphpath).
		{"an id with an apostrophe is a 404", http.MethodGet, assignPath + "x'y", 404, ""},
		{"an OData key predicate is a 404", http.MethodPost, assignPath + "x('y')/resume", 404, ""},
		{"an id with a dollar sign is a 404", http.MethodGet, assignPath + "$count", 404, ""},
		{"an id with a non-ASCII letter is a 404", http.MethodPatch, roleURL("azureResources", "caf%C3%A9"), 404, ""},
		{"an id with an escaped slash is a 404", http.MethodPost, assignPath + "x%2Fy/resume", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, graphsim.Config{AutoCreate: true})
			f.sim.Inject(graphsim.Match{}, graphsim.Fault{Status: 500}, 1)
			a := f.do(t, call{method: tt.method, path: tt.path, body: `{}`})
			checkAnswer(t, a, tt.wantStatus, map[int]string{404: "ResourceNotFound", 405: "MethodNotAllowed"}[tt.wantStatus])
			if got := a.header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			calls := f.sim.Calls()
			if len(calls) != 1 || calls[0].Operation != graphsim.OpOther || calls[0].Method != tt.method || calls[0].Status != tt.wantStatus {
				t.Fatalf("Calls = %+v; want one %s call recorded as other", calls, tt.method)
			}
			st := f.sim.Stats()
			if st.Calls[graphsim.OpOther] != 1 || len(st.Status) != 0 || len(st.Applied) != 0 {
				t.Errorf("Stats = %+v; want one other call, no write status, nothing applied", st)
			}
			// The fault is left for a real Graph call.
			f.sim.AddAssignmentRequest("y", "i")
			checkAnswer(t, f.do(t, call{method: http.MethodGet, path: readURL("y")}), 500, "InternalServerError")
		})
	}
}

func TestStartServesOnLoopbackUntilClose(t *testing.T) {
	sim := graphsim.New(graphsim.Config{})
	url, err := sim.Start()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("base URL %q is not on 127.0.0.1", url)
	}
	if _, err := sim.Start(); err == nil {
		t.Error("a second Start succeeded")
	}
	sim.AddAssignmentRequest(exampleReqID, exampleInst)
	f := &fixture{sim: sim, url: url, client: &http.Client{Timeout: 10 * time.Second}}
	checkAnswer(t, f.do(t, call{method: http.MethodPost, path: resumeURL(exampleReqID), body: exampleResume}), 204, "")
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sim.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.try(call{method: http.MethodGet, path: readURL(exampleReqID)}); err == nil {
		t.Error("the simulator still answers after Close")
	}
	if _, err := sim.Start(); !errors.Is(err, graphsim.ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if got, _ := sim.Instance(exampleReqID, exampleInst); got != graphsim.StatusCallbackReceived {
		t.Errorf("state not readable after Close: %q", got)
	}
}

func TestLatencyDelaysEveryAnswer(t *testing.T) {
	const latency = 60 * time.Millisecond
	f := newFixture(t, graphsim.Config{Latency: latency})
	f.sim.AddAssignmentRequest(exampleReqID, exampleInst)
	for _, c := range []call{
		{method: http.MethodGet, path: readURL(exampleReqID)},
		{method: http.MethodPost, path: resumeURL(exampleReqID), body: exampleResume},
		{method: http.MethodGet, path: "/v1.0/me"},
	} {
		began := time.Now()
		f.do(t, c)
		if took := time.Since(began); took < latency {
			t.Errorf("%s %s answered after %v, before the latency %v", c.method, c.path, took, latency)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name      string
		cfg       graphsim.Config
		wantField string
	}{
		{"the zero config is valid", graphsim.Config{}, ""},
		{"a negative latency names Latency", graphsim.Config{Latency: -1}, "Latency"},
		{"a negative jitter names Jitter", graphsim.Config{Jitter: -1}, "Jitter"},
		{"a negative rate names WriteRate", graphsim.Config{WriteRate: -1}, "WriteRate"},
		{"a negative burst names Burst", graphsim.Config{Burst: -1}, "Burst"},
		{"another application spending the whole rate names OtherShare", graphsim.Config{WriteRate: 10, OtherShare: 1}, "OtherShare"},
		{"a negative call log bound names MaxCalls", graphsim.Config{MaxCalls: -1}, "MaxCalls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, graphsim.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("Validate = %v; want ErrInvalidConfig naming %s", err, tt.wantField)
			}
			defer func() {
				if recover() == nil {
					t.Error("New accepted an invalid config")
				}
			}()
			graphsim.New(tt.cfg)
		})
	}
}

// TestConcurrentResumesApplyExactlyOnce checks the simulator's own
// bookkeeping under concurrency: every waiting instance is applied once, and
// racing resumes of one instance leave exactly one winner.
func TestConcurrentResumesApplyExactlyOnce(t *testing.T) {
	f := newFixture(t, graphsim.Config{AutoCreate: true})
	f.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	const workers, perWorker, racers = 8, 20, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker+racers)
	statuses := make(chan int, racers)
	for range workers {
		wg.Go(func() {
			for i := range perWorker {
				id := []string{"req-a", "req-b", "req-c"}[i%3]
				a, err := f.try(call{method: http.MethodPost, path: resumeURL(id), body: resumeBody(uuid.NewString())})
				if err == nil && a.status != 204 {
					err = errors.New(string(a.body))
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	f.sim.AddAssignmentRequest("contested", "only")
	for range racers {
		wg.Go(func() {
			a, err := f.try(call{method: http.MethodPost, path: resumeURL("contested"), body: resumeBody("only")})
			if err != nil {
				errs <- err
				return
			}
			statuses <- a.status
		})
	}
	wg.Wait()
	close(errs)
	close(statuses)
	for err := range errs {
		t.Error(err)
	}
	won := 0
	for s := range statuses {
		if s == 204 {
			won++
		}
	}
	st := f.sim.Stats()
	if won != 1 || st.DoubleApplies != racers-1 {
		t.Errorf("racing resumes of one instance: %d won, %d double applies; want 1 and %d", won, st.DoubleApplies, racers-1)
	}
	if st.Applied[graphsim.OpResume] != workers*perWorker+1 {
		t.Errorf("Applied = %d, want %d", st.Applied[graphsim.OpResume], workers*perWorker+1)
	}
	if st.MaxInFlight < 1 || st.InFlight != 0 {
		t.Errorf("MaxInFlight %d, InFlight %d", st.MaxInFlight, st.InFlight)
	}
}
