// Package graphops is the worker's Microsoft Graph client. Each method makes
// exactly one HTTP call (one attempt): it builds the contract URL, attaches a
// bearer token and a fresh client-request-id, sends the body byte for byte and
// turns the answer into a Result or a typed error (*Error, *TransportError,
// *AuthError). Classify maps those errors to what a retry loop should do, and
// ParseRetryAfter reads Graph's Retry-After header.
//
// It owns the Graph URLs, request headers, token acquisition per attempt,
// error parsing and classification. It does not own retries, backoff,
// throttle gates, reconciliation decisions, logging or metric registration:
// the worker's single retry loop does those, and metrics are reported through
// the Observer hook. There is deliberately no retry of any kind in here, so
// that no second, hidden loop can resend a non-idempotent resume.
package graphops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/google/uuid"
)

// Operation names a Graph write operation; it is the metrics label
// "operation" and equals the command's short type.
type Operation string

// The two operations of docs/SPEC.md §1. The reconciliation read is counted under
// OpResume (docs/SPEC.md §3).
const (
	OpResume            Operation = "resume"
	OpRoleRequestUpdate Operation = "role_request_update"
)

// Scope is the OAuth scope requested for every Graph token.
const Scope = "https://graph.microsoft.com/.default"

// Defaults of Config.
const (
	DefaultBaseURL   = "https://graph.microsoft.com"
	DefaultTimeout   = 30 * time.Second
	DefaultUserAgent = "graphops-worker"
)

// maxResponseBody caps how much of a response body is read. Graph's answers
// here are small; the cap only protects against a misbehaving proxy.
const maxResponseBody = 4 << 20

// Observer sees every HTTP call the client makes (for metrics): code is the
// HTTP status as a decimal string, or "error" when no response arrived; d is
// the time from sending the request to having read the whole response. It is
// not called for calls refused before any network I/O (bad id, no token).
type Observer func(op Operation, code string, d time.Duration)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// BaseURL is Graph's root, default "https://graph.microsoft.com"
	// (GRAPH_BASE_URL). It must be https; http is allowed only for loopback
	// hosts (127.0.0.0/8, ::1, localhost), for tests and the simulator. A path
	// prefix (a reverse proxy) is kept; query, fragment and user info are
	// refused.
	BaseURL string
	// Timeout bounds each HTTP call, default 30s (GRAPH_TIMEOUT). Token
	// acquisition gets its own budget of the same length.
	Timeout time.Duration
	// Credential provides bearer tokens for Scope. Required; see NewCredential.
	Credential azcore.TokenCredential
	// Transport carries the calls; default NewTransport().
	Transport http.RoundTripper
	// Observe, if set, sees every HTTP call.
	Observe Observer
	// UserAgent is sent on every call, default "graphops-worker".
	UserAgent string
}

// Validate fills in defaults and reports the first bad field, naming its
// environment variable where it has one.
func (c *Config) Validate() error {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if _, err := parseBaseURL(c.BaseURL); err != nil {
		return err
	}
	if c.Timeout < 0 {
		return fmt.Errorf("graphops: GRAPH_TIMEOUT must be positive, got %s", c.Timeout)
	}
	if c.Credential == nil {
		return errors.New("graphops: Credential is required (set GRAPH_TOKEN or the AZURE_* variables)")
	}
	if !validHeaderValue(c.UserAgent) {
		return errors.New("graphops: UserAgent contains control characters")
	}
	return nil
}

// CheckBaseURL says what is wrong with a GRAPH_BASE_URL (nil when
// nothing): an absolute https URL (http only for a loopback host) without
// user info, query or fragment. Its message never quotes user info or a
// query, which may be credentials.
func CheckBaseURL(raw string) error {
	_, err := baseURL(raw)
	return err
}

// parseBaseURL validates a base URL and returns it without a trailing slash.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := baseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("graphops: GRAPH_BASE_URL %w", err)
	}
	return u, nil
}

func baseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the input, which may carry credentials.
		return nil, errors.New("is not a valid URL")
	}
	shown := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	switch {
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("must be an absolute URL with a host, got %q", shown)
	case u.User != nil:
		return nil, fmt.Errorf("must not contain user info, got %q (user info left out)", shown)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("must not have a query or fragment, got %q (query left out)", shown)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("must use https (http only for loopback hosts), got %q", shown)
	}
	trimmed := strings.TrimRight(u.EscapedPath(), "/")
	path, err := url.PathUnescape(trimmed)
	if err != nil {
		return nil, fmt.Errorf("has a badly escaped path, got %q", shown)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: path, RawPath: trimmed}, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Client calls Microsoft Graph, one attempt per method call. It is safe for
// concurrent use.
type Client struct {
	base      *url.URL
	pl        runtime.Pipeline
	timeout   time.Duration
	userAgent string
	observe   Observer
	auth      *bearer
}

// NewClient validates cfg and returns a Client.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	rt := cfg.Transport
	if rt == nil {
		rt = NewTransport()
	}
	observe := cfg.Observe
	if observe == nil {
		observe = func(Operation, string, time.Duration) {}
	}
	c := &Client{
		base:      base,
		timeout:   cfg.Timeout,
		userAgent: cfg.UserAgent,
		observe:   observe,
		auth:      newBearer(cfg.Credential, cfg.Timeout),
	}
	// An azcore pipeline only for its bearer-token policy (see bearer): its
	// own retries are off (the worker's loop is the only one, docs/SPEC.md §3), its
	// telemetry too (User-Agent is ours), and the answer is read by send.
	c.pl = runtime.NewPipeline("graphops", "", runtime.PipelineOptions{
		PerRetry: []policy.Policy{c.auth, policy.Policy(sendPolicy(c.send))},
	}, &policy.ClientOptions{
		Transport: &http.Client{
			Transport: rt,
			// A redirect would carry the bearer token to wherever Location
			// points; Graph does not redirect these calls, so a 3xx is
			// returned as an *Error instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Retry:     policy.RetryOptions{MaxRetries: -1},
		Telemetry: policy.TelemetryOptions{Disabled: true},
	})
	return c, nil
}

// Result describes a call Graph answered with a 2xx.
type Result struct {
	Status          int
	GraphRequestID  string // response header "request-id"
	ClientRequestID string // the client-request-id this attempt sent
	// Body is the response body (a role request update may answer 200 with
	// the updated object, or 204). For a write it is informational: a 2xx is
	// a success even if the body could not be read completely.
	Body []byte
	// Throttling is Graph's early warning of its limit, when it sent one.
	Throttling Throttling
}

// Resume makes one POST {base}/v1.0/identityGovernance/entitlementManagement/assignmentRequests/{id}/resume
// with body sent unchanged. headers are extra request headers; the
// client's own (Authorization, Content-Type, client-request-id, Accept,
// User-Agent and framing headers) cannot be overridden.
func (c *Client) Resume(ctx context.Context, assignmentRequestID string, body []byte, headers map[string]string) (Result, error) {
	u, err := c.resumeURL(assignmentRequestID)
	if err != nil {
		return Result{}, err
	}
	return c.do(ctx, request{op: OpResume, method: http.MethodPost, url: u, body: nonNil(body), headers: headers})
}

// UpdateRoleRequest makes one PATCH {base}/beta/privilegedAccess/{pid}/roleAssignmentRequests/{id}
// with body sent unchanged. Both 200 (with the updated object) and 204
// succeed. headers are treated as in Resume.
func (c *Client) UpdateRoleRequest(ctx context.Context, privilegedAccessID, requestID string, body []byte, headers map[string]string) (Result, error) {
	u, err := c.roleRequestURL(privilegedAccessID, requestID)
	if err != nil {
		return Result{}, err
	}
	return c.do(ctx, request{op: OpRoleRequestUpdate, method: http.MethodPatch, url: u, body: nonNil(body), headers: headers})
}

// InvalidateToken makes the next call ask the credential for a new token,
// bypassing azidentity's cache. The retry loop calls it after a 401.
func (c *Client) InvalidateToken() { c.auth.invalidate() }

// nonNil makes an empty write body distinguishable from a GET's absent one.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

type request struct {
	op      Operation
	method  string
	url     *url.URL
	body    []byte // nil: no body (GET)
	headers map[string]string
}

// response is a 2xx answer; non-2xx answers become *Error inside do.
type response struct {
	Result
	readErr error // the body could not be read completely
}

// do makes exactly one HTTP call. It never retries, and it never follows a
// redirect.
func (c *Client) do(ctx context.Context, r request) (Result, error) {
	res, err := c.roundTrip(ctx, r)
	return res.Result, err
}

func (c *Client) roundTrip(ctx context.Context, r request) (response, error) {
	if err := ctx.Err(); err != nil {
		return response{}, &TransportError{Operation: r.op, Method: r.method, Err: err}
	}
	if err := checkHeaders(r.headers); err != nil {
		return response{}, fmt.Errorf("graph: %s: %w", r.op, err)
	}

	crid := uuid.NewString()
	// Sent tells the retry loop whether Graph may have acted on the request:
	// WroteRequest fires once the whole request, body included, is written.
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				sent.Store(true)
			}
		},
	})
	req, err := runtime.NewRequest(ctx, r.method, r.url.String())
	if err != nil {
		return response{}, fmt.Errorf("graph: %s: building request: %w", r.op, err)
	}
	a := &answer{op: r.op}
	req.SetOperationValue(a)
	runtime.SkipBodyDownload(req) // send reads it, up to maxResponseBody
	if r.body != nil {
		// The bytes go out exactly as given, with a Content-Length.
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(r.body)), "application/json"); err != nil {
			return response{}, fmt.Errorf("graph: %s: building request: %w", r.op, err)
		}
	}
	h := req.Raw().Header
	for name, v := range r.headers {
		if !reservedHeader(name) {
			h.Set(name, v)
		}
	}
	h.Set("Accept", "application/json")
	h.Set("client-request-id", crid)
	h.Set("User-Agent", c.userAgent)

	resp, err := c.pl.Do(req)
	if err != nil {
		var ae *AuthError
		if errors.As(err, &ae) { // no token: nothing was sent
			return response{}, ae
		}
		return response{}, &TransportError{Operation: r.op, Method: r.method, ClientRequestID: crid, Sent: sent.Load(), Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return response{}, newError(r.op, r.method, resp, a.data, crid, a.arrived)
	}
	return response{
		Result: Result{
			Status:          resp.StatusCode,
			GraphRequestID:  resp.Header.Get("request-id"),
			ClientRequestID: crid,
			Body:            a.data,
			Throttling:      throttlingOf(resp.Header),
		},
		readErr: a.readErr,
	}, nil
}

// answer is what send learnt of a call's answer, for roundTrip.
type answer struct {
	op      Operation
	arrived time.Time
	data    []byte
	readErr error
}

// sendPolicy makes a function a pipeline policy.
type sendPolicy func(*policy.Request) (*http.Response, error)

func (f sendPolicy) Do(req *policy.Request) (*http.Response, error) { return f(req) }

// send is the pipeline's policy after the bearer-token policy, so it sees
// every HTTP call (a CAE challenge's resend too): it bounds the call by the
// client's timeout, reads the whole answer and reports the call to the
// Observer. Token acquisition, before it, has a budget of its own.
func (c *Client) send(req *policy.Request) (*http.Response, error) {
	var a *answer
	req.OperationValue(&a)
	ctx, cancel := context.WithTimeout(req.Raw().Context(), c.timeout)
	defer cancel()
	start := time.Now()
	resp, err := req.Clone(ctx).Next()
	if err != nil {
		c.observe(a.op, "error", time.Since(start))
		return nil, err
	}
	a.arrived = time.Now()
	a.data, a.readErr = readBody(resp)
	resp.Body = http.NoBody // read and closed
	c.observe(a.op, strconv.Itoa(resp.StatusCode), time.Since(start))
	return resp, nil
}

var errBodyTooLarge = errors.New("response body larger than 4 MiB")

// readBody reads the whole body (up to the cap) and closes it, so that the
// connection can be reused.
func readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	if resp.Body == http.NoBody { // a 204: io.ReadAll would allocate for nothing
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if len(data) > maxResponseBody {
		return data[:maxResponseBody], errBodyTooLarge
	}
	return data, err
}
