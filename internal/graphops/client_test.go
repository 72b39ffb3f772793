package graphops_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/graphops/worker/internal/graphops"
)

// An unusual but valid body: an unknown property, odd whitespace, escapes
// that a re-encoder would normalise.
const oddBody = "{ \"source\" :\"Contoso.SodCheck\",\n\t\"type\":\"microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated\"," +
	"  \"data\":{\"@odata.type\":\"microsoft.graph.accessPackageAssignmentRequestCallbackData\",\"x-unknown\":[1 , 2.50,\"\\u00e9\"]} }\r\n"

func TestWritesHitTheContractPathWithTheBodyUnchanged(t *testing.T) {
	callerHeaders := map[string]string{
		"Prefer":                 "return=minimal",
		"x-ms-throttle-priority": "high",
		"ConsistencyLevel":       "eventual",
		// Reserved: must be ignored whatever their case.
		"authorization":     "Bearer stolen",
		"CONTENT-TYPE":      "text/plain",
		"Client-Request-Id": "11111111-1111-4111-8111-111111111111",
	}
	tests := []struct {
		name       string
		call       func(*graphops.Client) (graphops.Result, error)
		wantMethod string
		wantURI    string
		wantOp     graphops.Operation
	}{
		{
			name: "resume posts to the v1.0 assignment request's resume action",
			call: func(c *graphops.Client) (graphops.Result, error) {
				return c.Resume(context.Background(), resumeID, []byte(oddBody), callerHeaders)
			},
			wantMethod: http.MethodPost, wantURI: resumePath, wantOp: graphops.OpResume,
		},
		{
			name: "role request update patches the beta PIM role assignment request",
			call: func(c *graphops.Client) (graphops.Result, error) {
				return c.UpdateRoleRequest(context.Background(), pimID, roleReq, []byte(oddBody), callerHeaders)
			},
			wantMethod: http.MethodPatch, wantURI: rolePath, wantOp: graphops.OpRoleRequestUpdate,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, answer(http.StatusNoContent, "", "request-id", "graph-req-1"))
			res, err := tt.call(e.client)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			reqs := e.rec.all()
			if len(reqs) != 1 {
				t.Fatalf("Graph saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tt.wantMethod || r.RequestURI != tt.wantURI {
				t.Errorf("request = %s %s, want %s %s", r.Method, r.RequestURI, tt.wantMethod, tt.wantURI)
			}
			if !bytes.Equal(r.Body, []byte(oddBody)) {
				t.Errorf("body = %q, want it byte for byte %q", r.Body, oddBody)
			}
			wantHeaders := map[string]string{
				"Authorization":          "Bearer " + testToken,
				"Content-Type":           "application/json",
				"Accept":                 "application/json",
				"User-Agent":             "graphops-worker",
				"Prefer":                 "return=minimal",
				"X-Ms-Throttle-Priority": "high",
				"Consistencylevel":       "eventual",
				"Content-Encoding":       "",
			}
			for name, want := range wantHeaders {
				if got := strings.Join(r.Header.Values(name), ","); got != want {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}
			crid := r.Header.Values("client-request-id")
			if len(crid) != 1 {
				t.Fatalf("client-request-id values = %q, want exactly one", crid)
			}
			if u, err := uuid.Parse(crid[0]); err != nil || u.Version() != 4 {
				t.Errorf("client-request-id %q is not a v4 uuid (err %v)", crid[0], err)
			}
			if crid[0] == callerHeaders["Client-Request-Id"] {
				t.Errorf("caller overrode client-request-id")
			}
			want := graphops.Result{Status: 204, GraphRequestID: "graph-req-1", ClientRequestID: crid[0]}
			if res.Status != want.Status || res.GraphRequestID != want.GraphRequestID || res.ClientRequestID != want.ClientRequestID || len(res.Body) != 0 {
				t.Errorf("result = %+v, want %+v", res, want)
			}
			if got := e.obs.list(); len(got) != 1 || got[0] != (observed{tt.wantOp, "204"}) {
				t.Errorf("observer saw %v, want one %s 204", got, tt.wantOp)
			}
		})
	}
}

func TestEveryAttemptSendsAFreshClientRequestID(t *testing.T) {
	e := newEnv(t, nil)
	var sent []string
	for range 2 {
		res, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, res.ClientRequestID)
	}
	reqs := e.rec.all()
	if len(reqs) != 2 {
		t.Fatalf("Graph saw %d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if got := r.Header.Get("client-request-id"); got != sent[i] {
			t.Errorf("request %d carried client-request-id %q, Result says %q", i, got, sent[i])
		}
	}
	if sent[0] == sent[1] {
		t.Errorf("two attempts shared client-request-id %q", sent[0])
	}
}

func TestRoleRequestUpdateSucceedsWithAnObjectOrNoContent(t *testing.T) {
	const object = `{"id":"e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1","status":{"status":"Closed"}}`
	tests := []struct {
		name     string
		respond  func(http.ResponseWriter, *http.Request)
		wantCode int
		wantBody string
	}{
		{"a 200 with the updated object succeeds and returns the object", answer(200, object, "Content-Type", "application/json"), 200, object},
		{"a 204 without a body succeeds", answer(204, ""), 204, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.respond)
			res, err := e.client.UpdateRoleRequest(context.Background(), pimID, roleReq, []byte(`{"reason":"x"}`), nil)
			if err != nil {
				t.Fatalf("UpdateRoleRequest: %v", err)
			}
			if res.Status != tt.wantCode || string(res.Body) != tt.wantBody {
				t.Errorf("result = %d %q, want %d %q", res.Status, res.Body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestURLsKeepTheBasePathAndEscapeIDsAsOneSegment(t *testing.T) {
	resume := func(c *graphops.Client) error {
		_, err := c.Resume(context.Background(), resumeID, []byte(`{}`), nil)
		return err
	}
	tests := []struct {
		name    string
		base    string // appended to the server URL
		call    func(*graphops.Client) error
		wantURI string
	}{
		{
			name:    "a reverse-proxy prefix on the base URL is kept, a trailing slash dropped",
			base:    "/proxy/graph/",
			call:    resume,
			wantURI: "/proxy/graph" + resumePath,
		},
		{
			name:    "an escaped slash in the base path stays escaped",
			base:    "/tenant%2Fa/graph",
			call:    resume,
			wantURI: "/tenant%2Fa/graph" + resumePath,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, func(c *graphops.Config) { c.BaseURL += tt.base })
			if err := tt.call(e.client); err != nil {
				t.Fatal(err)
			}
			if got := e.rec.all()[0].RequestURI; got != tt.wantURI {
				t.Errorf("request-target = %q, want %q", got, tt.wantURI)
			}
		})
	}
}

func TestBadIDsNeverReachGraph(t *testing.T) {
	bad := []struct{ name, id string }{
		{"an empty id", ""},
		{"a slash", "a/b"},
		{"a backslash", `a\b`},
		{"a dot-dot", ".."},
		{"a dot-dot inside", "a..b"},
		{"a single dot", "."},
		{"a percent sign", "a%2Fb"},
		{"a question mark", "a?b"},
		{"a hash", "a#b"},
		{"a space", "a b"},
		{"a tab", "a\tb"},
		// The deny-list that came before graphpath let these through.
		{"an apostrophe", "a'b"},
		{"an OData key predicate", "a('b')"},
		{"a dollar sign", "$ref"},
		{"a semicolon and a comma", "a;b,c"},
		{"an equals sign", "a=1"},
		{"a letter outside ASCII", "caf\u00e9"},
		{"a newline", "a\nb"},
		{"a NUL", "a\x00b"},
		{"a DEL", "a\x7fb"},
		{"a no-break space", "a\u00a0b"},
		{"129 bytes", strings.Repeat("a", 129)},
	}
	for _, b := range bad {
		t.Run("an id with "+b.name+" is refused before any network I/O", func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := context.Background()
			errs := map[string]error{}
			_, errs["resume"] = e.client.Resume(ctx, b.id, []byte(`{}`), nil)
			_, _, errs["read"] = e.client.GetAssignmentRequest(ctx, b.id)
			_, errs["role pid"] = e.client.UpdateRoleRequest(ctx, b.id, roleReq, []byte(`{}`), nil)
			_, errs["role id"] = e.client.UpdateRoleRequest(ctx, pimID, b.id, []byte(`{}`), nil)
			for call, err := range errs {
				if !errors.Is(err, graphops.ErrInvalidID) {
					t.Errorf("%s: err = %v, want ErrInvalidID", call, err)
				}
				if v := graphops.Classify(err); v.Class != graphops.ClassPermanent || v.MaybeApplied {
					t.Errorf("%s: verdict = %+v, want permanent, not applied", call, v)
				}
			}
			if n := len(e.rec.all()); n != 0 {
				t.Errorf("Graph was hit %d times", n)
			}
			if n := len(e.cred.requests()); n != 0 {
				t.Errorf("a token was requested %d times", n)
			}
			if o := e.obs.list(); len(o) != 0 {
				t.Errorf("observer saw %v", o)
			}
		})
	}
	t.Run("an id of exactly 128 bytes is accepted", func(t *testing.T) {
		e := newEnv(t, nil)
		if _, err := e.client.Resume(context.Background(), strings.Repeat("a", 128), []byte(`{}`), nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBadCallerHeadersAreRefusedBeforeSending(t *testing.T) {
	for name, h := range map[string]map[string]string{
		"a value with CRLF":   {"Prefer": "a\r\nAuthorization: Bearer x"},
		"a value with DEL":    {"Prefer": "a\x7fb"},
		"a value with a NUL":  {"Prefer": "a\x00b"},
		"a name with space":   {"Bad Name": "v"},
		"a name with a colon": {"Prefer:": "v"},
		"an empty name":       {"": "v"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			_, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), h)
			if !errors.Is(err, graphops.ErrInvalidHeader) || graphops.Classify(err).Class != graphops.ClassPermanent {
				t.Errorf("err = %v (%v), want a permanent ErrInvalidHeader", err, graphops.Classify(err))
			}
			if n := len(e.rec.all()); n != 0 {
				t.Errorf("Graph was hit %d times", n)
			}
		})
	}
}

// RFC 9110 allows tabs and obs-text (bytes above 0x7f) in a field value;
// they must reach Graph as given, not be refused as control characters.
func TestHeaderValuesWithTabsAndObsTextAreSent(t *testing.T) {
	e := newEnv(t, nil)
	v := "return=minimal;\tnote=caf\xc3\xa9"
	if _, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), map[string]string{"Prefer": v}); err != nil {
		t.Fatal(err)
	}
	reqs := e.rec.all()
	if len(reqs) != 1 {
		t.Fatalf("Graph saw %d requests, want 1", len(reqs))
	}
	if got := reqs[0].Header.Get("Prefer"); got != v {
		t.Errorf("Prefer = %q, want %q", got, v)
	}
}

func TestRedirectsAreNotFollowedAndTheTokenStaysHome(t *testing.T) {
	other := newEnv(t, nil) // the redirect target: a second loopback server
	for _, status := range []int{301, 302, 307, 308} {
		t.Run(http.StatusText(status)+" is returned as a permanent error", func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.srv.URL+resumePath, status)
			})
			_, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil)
			var ge *graphops.Error
			if !errors.As(err, &ge) || ge.Status != status {
				t.Fatalf("err = %v, want *Error with status %d", err, status)
			}
			if v := graphops.Classify(err); v.Class != graphops.ClassPermanent {
				t.Errorf("verdict = %+v, want permanent", v)
			}
		})
	}
	if n := len(other.rec.all()); n != 0 {
		t.Errorf("the redirect target was called %d times", n)
	}
}

func TestGetAssignmentRequestReadsTheCalloutInstances(t *testing.T) {
	const answerBody = `{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#x","id":"0E60F18C-B2A0-4887-9DA8-DA2E30A39D99",
	  "state":"pendingApproval","status":"Pending Approval","customExtensionCalloutInstances":[
	  {"id":"957d0c50-466b-4840-bb5b-c92cea7141ff","status":"callbackReceived","detail":"ok","customExtensionId":"ce-1","externalCorrelationId":"corr-1"},
	  {"id":"aaaaaaaa-0000-4000-8000-000000000000","status":"waitingForCallback","detail":null}]}`
	e := newEnv(t, answer(200, answerBody, "request-id", "rid-9"))
	ar, res, err := e.client.GetAssignmentRequest(context.Background(), resumeID)
	if err != nil {
		t.Fatalf("GetAssignmentRequest: %v", err)
	}
	r := e.rec.all()[0]
	if r.Method != http.MethodGet || r.RequestURI != readPath {
		t.Errorf("request = %s %s, want GET %s", r.Method, r.RequestURI, readPath)
	}
	if len(r.Body) != 0 || r.Header.Get("Content-Type") != "" {
		t.Errorf("a read sent a body %q or Content-Type %q", r.Body, r.Header.Get("Content-Type"))
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken || r.Header.Get("client-request-id") != res.ClientRequestID {
		t.Errorf("read headers = %v", r.Header)
	}
	if ar.ID != "0E60F18C-B2A0-4887-9DA8-DA2E30A39D99" || ar.State != "pendingApproval" || ar.Status != "Pending Approval" || len(ar.CalloutInstances) != 2 {
		t.Fatalf("parsed %+v", ar)
	}
	in, ok := ar.Instance("957D0C50-466B-4840-BB5B-C92CEA7141FF")
	want := graphops.CalloutInstance{ID: "957d0c50-466b-4840-bb5b-c92cea7141ff", Status: graphops.StatusCallbackReceived,
		Detail: "ok", CustomExtensionID: "ce-1", ExternalCorrelationID: "corr-1"}
	if !ok || in != want {
		t.Errorf("Instance (upper case) = %+v, %v; want %+v", in, ok, want)
	}
	if in, _ := ar.Instance("aaaaaaaa-0000-4000-8000-000000000000"); in.Status != graphops.StatusWaitingForCallback {
		t.Errorf("second instance status = %q", in.Status)
	}
	if _, ok := ar.Instance("957d0c50"); ok {
		t.Errorf("a prefix matched an instance")
	}
	if res.Status != 200 || res.GraphRequestID != "rid-9" {
		t.Errorf("result = %+v", res)
	}
	if got := e.obs.list(); len(got) != 1 || got[0] != (observed{graphops.OpResume, "200"}) {
		t.Errorf("observer saw %v, want the read under operation resume", got)
	}
}

func TestGetAssignmentRequestRefusesAnUnreadableAnswer(t *testing.T) {
	for name, body := range map[string]string{
		"an HTML page":        "<html>proxy</html>",
		"JSON without an id":  `{"state":"delivered"}`,
		"a truncated JSON":    `{"id":"x","customExtensionCalloutInstances":[`,
		"an empty 200 answer": "",
	} {
		t.Run(name+" is a retryable bad response", func(t *testing.T) {
			e := newEnv(t, answer(200, body))
			_, _, err := e.client.GetAssignmentRequest(context.Background(), resumeID)
			if !errors.Is(err, graphops.ErrBadResponse) {
				t.Fatalf("err = %v, want ErrBadResponse", err)
			}
			if v := graphops.Classify(err); v.Class != graphops.ClassRetryable || v.MaybeApplied {
				t.Errorf("verdict = %+v", v)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cred := &fakeCred{}
	tests := []struct {
		name    string
		cfg     graphops.Config
		wantErr string // substring; "" means valid
	}{
		{"defaults are valid once a credential is given", graphops.Config{Credential: cred}, ""},
		{"http to 127.0.0.1 is allowed for tests", graphops.Config{BaseURL: "http://127.0.0.1:8080", Credential: cred}, ""},
		{"http to another loopback address is allowed", graphops.Config{BaseURL: "http://127.3.4.5", Credential: cred}, ""},
		{"http to ::1 is allowed", graphops.Config{BaseURL: "http://[::1]:9", Credential: cred}, ""},
		{"http to localhost is allowed", graphops.Config{BaseURL: "http://localhost:9/prefix", Credential: cred}, ""},
		{"http to a remote host is refused", graphops.Config{BaseURL: "http://graph.microsoft.com", Credential: cred}, "GRAPH_BASE_URL"},
		{"http to a look-alike of localhost is refused", graphops.Config{BaseURL: "http://localhost.evil.example", Credential: cred}, "GRAPH_BASE_URL"},
		{"another scheme is refused", graphops.Config{BaseURL: "ftp://graph.microsoft.com", Credential: cred}, "GRAPH_BASE_URL"},
		{"a relative URL is refused", graphops.Config{BaseURL: "graph.microsoft.com", Credential: cred}, "GRAPH_BASE_URL"},
		{"a query is refused", graphops.Config{BaseURL: "https://graph.microsoft.com/?x=1", Credential: cred}, "GRAPH_BASE_URL"},
		{"user info is refused without echoing the password", graphops.Config{BaseURL: "https://u:hunter2@graph.microsoft.com", Credential: cred}, "GRAPH_BASE_URL"},
		{"a negative timeout is refused", graphops.Config{Timeout: -time.Second, Credential: cred}, "GRAPH_TIMEOUT"},
		{"a missing credential is refused", graphops.Config{}, "Credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("error leaks the password: %v", err)
			}
			if _, nerr := graphops.NewClient(tt.cfg); (nerr == nil) != (err == nil) {
				t.Errorf("NewClient disagrees with Validate: %v vs %v", nerr, err)
			}
		})
	}
	t.Run("Validate fills in the documented defaults", func(t *testing.T) {
		cfg := graphops.Config{Credential: cred}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.BaseURL != "https://graph.microsoft.com" || cfg.Timeout != 30*time.Second || cfg.UserAgent != "graphops-worker" {
			t.Errorf("defaults = %q %s %q", cfg.BaseURL, cfg.Timeout, cfg.UserAgent)
		}
	})
}

func TestNewTransportIsTuned(t *testing.T) {
	tr := graphops.NewTransport()
	if !tr.ForceAttemptHTTP2 || tr.MaxIdleConns != 512 || tr.MaxIdleConnsPerHost != 256 ||
		tr.IdleConnTimeout != 90*time.Second || tr.TLSHandshakeTimeout != 10*time.Second ||
		tr.ResponseHeaderTimeout != 0 || tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != 0x0303 {
		t.Errorf("transport not tuned: %+v", tr)
	}
	if tr == http.DefaultTransport {
		t.Errorf("NewTransport returned the shared default transport")
	}
}

func TestGraphsThrottlingHeadersAreRead(t *testing.T) {
	const scope = "Tenant_Application/Write/9a3d526c-b3c1-4479-ba74-197b5c5751ae/0785ef7c-2d7a-4542-b048-95bcab406e0b"
	for _, tc := range []struct {
		name      string
		status    int
		headers   []string
		wantUsage float64
	}{
		{"no header: nothing", 204, nil, 0},
		{"a usage as Graph documents it", 204, []string{"x-ms-throttle-limit-percentage", "0.85"}, 0.85},
		{"a usage past the limit", 204, []string{"x-ms-throttle-limit-percentage", "1.8"}, 1.8},
		{"a usage written as a percentage", 204, []string{"x-ms-throttle-limit-percentage", "85%"}, 0.85},
		{"an unreadable usage is none", 204, []string{"x-ms-throttle-limit-percentage", "high"}, 0},
		{"a negative usage is none", 204, []string{"x-ms-throttle-limit-percentage", "-1"}, 0},
		{"a 429 with its scope and reason", 429, []string{"Retry-After", "1", "x-ms-throttle-limit-percentage", "1.2",
			"x-ms-throttle-scope", scope, "x-ms-throttle-information", "WriteLimitExceeded"}, 1.2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.status == 429 {
				body = `{"error":{"code":"TooManyRequests","message":"Too many requests."}}`
			}
			e := newEnv(t, answer(tc.status, body, tc.headers...))
			res, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil)
			got := res.Throttling
			if tc.status == 429 {
				var ge *graphops.Error
				if !errors.As(err, &ge) {
					t.Fatalf("Resume() error = %v, want *graphops.Error", err)
				}
				got = ge.Throttling
				if got.Scope != scope || got.Information != "WriteLimitExceeded" {
					t.Errorf("Throttling = %+v, want the scope and the reason", got)
				}
				if msg := ge.Error(); !strings.Contains(msg, "throttle-scope "+scope) || !strings.Contains(msg, "throttle-information WriteLimitExceeded") {
					t.Errorf("Error() = %q, want the scope and the reason named", msg)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got.LimitUsage != tc.wantUsage {
				t.Errorf("LimitUsage = %v, want %v", got.LimitUsage, tc.wantUsage)
			}
		})
	}
}
