package graphops_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/graphops/worker/internal/graphops"
)

const testToken = "tok-3f9a1c7e-never-log-me"

// fakeCred is a TokenCredential that hands out testToken (or fails with err).
type fakeCred struct {
	mu    sync.Mutex
	token string
	err   error
	opts  []policy.TokenRequestOptions
}

func (f *fakeCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opts = append(f.opts, o)
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	tok := f.token
	if tok == "" {
		tok = testToken
	}
	return azcore.AccessToken{Token: tok, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (f *fakeCred) requests() []policy.TokenRequestOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]policy.TokenRequestOptions(nil), f.opts...)
}

// seen is one request as the fake Graph received it.
type seen struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       []byte
}

// recorder is a fake Graph on loopback that records every request and
// answers with respond (default: 204).
type recorder struct {
	mu      sync.Mutex
	reqs    []seen
	respond func(w http.ResponseWriter, r *http.Request)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, seen{Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: body})
	respond := rec.respond
	rec.mu.Unlock()
	if respond == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	respond(w, r)
}

func (rec *recorder) all() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

// observed is one Observer call.
type observed struct {
	Op   graphops.Operation
	Code string
}

type observations struct {
	mu  sync.Mutex
	all []observed
}

func (o *observations) observe(op graphops.Operation, code string, d time.Duration) {
	if d < 0 {
		panic("negative duration")
	}
	o.mu.Lock()
	o.all = append(o.all, observed{op, code})
	o.mu.Unlock()
}

func (o *observations) list() []observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observed(nil), o.all...)
}

// env bundles a fake Graph and a client pointed at it.
type env struct {
	srv    *httptest.Server
	rec    *recorder
	client *graphops.Client
	cred   *fakeCred
	obs    *observations
}

// newEnv starts a fake Graph answering with respond and a client using it;
// tweak may adjust the client's Config.
func newEnv(t *testing.T, respond func(http.ResponseWriter, *http.Request), tweak ...func(*graphops.Config)) *env {
	t.Helper()
	rec := &recorder{respond: respond}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	e := &env{srv: srv, rec: rec, cred: &fakeCred{}, obs: &observations{}}
	tr := graphops.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	cfg := graphops.Config{
		BaseURL:    srv.URL,
		Timeout:    5 * time.Second,
		Credential: e.cred,
		Transport:  tr,
		Observe:    e.obs.observe,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	c, err := graphops.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	e.client = c
	return e
}

// answer writes status, headers (pairs) and body.
func answer(status int, body string, headerPairs ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headerPairs); i += 2 {
			w.Header().Set(headerPairs[i], headerPairs[i+1])
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

const (
	resumeID = "0e60f18c-b2a0-4887-9da8-da2e30a39d99"
	pimID    = "azureResources"
	roleReq  = "e13ef8a0-c1cb-4d03-aaae-9cd1c8ede2d1"
)

const (
	resumePath = "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/" + resumeID + "/resume"
	rolePath   = "/beta/privilegedAccess/" + pimID + "/roleAssignmentRequests/" + roleReq
	readPath   = "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/" + resumeID +
		"?$select=id,state,status,customExtensionCalloutInstances"
)
