package graphops_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/graphops/worker/internal/graphops"
)

// statusFromHeaders makes the fake Graph answer with the status and
// Retry-After the test passes as caller headers.
func statusFromHeaders(w http.ResponseWriter, r *http.Request) {
	if ra := r.Header.Get("X-Test-Retry-After"); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	code, _ := strconv.Atoi(r.Header.Get("X-Test-Status"))
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, `{"error":{"code":"C%d","message":"m"}}`, code)
}

func TestClassifyGraphStatuses(t *testing.T) {
	const (
		perm   = graphops.ClassPermanent
		thr    = graphops.ClassThrottled
		retry  = graphops.ClassRetryable
		unauth = graphops.ClassUnauthorized
	)
	tests := []struct {
		status     int
		retryAfter string
		want       graphops.Verdict
	}{
		{400, "", graphops.Verdict{Class: perm}},
		{401, "", graphops.Verdict{Class: unauth}},
		{403, "", graphops.Verdict{Class: perm}},
		{404, "", graphops.Verdict{Class: perm}},
		{405, "", graphops.Verdict{Class: perm}},
		{408, "", graphops.Verdict{Class: retry}},
		{409, "", graphops.Verdict{Class: perm}},
		{410, "", graphops.Verdict{Class: perm}},
		{412, "", graphops.Verdict{Class: perm}},
		{422, "", graphops.Verdict{Class: perm}},
		{429, "", graphops.Verdict{Class: thr}},
		{429, "12", graphops.Verdict{Class: thr, RetryAfter: 12 * time.Second}},
		{500, "", graphops.Verdict{Class: retry, MaybeApplied: true}},
		{502, "", graphops.Verdict{Class: retry, MaybeApplied: true}},
		{503, "", graphops.Verdict{Class: retry, MaybeApplied: true}},
		{503, "3", graphops.Verdict{Class: thr, RetryAfter: 3 * time.Second, MaybeApplied: true}},
		{503, "0", graphops.Verdict{Class: thr, MaybeApplied: true}},
		{504, "", graphops.Verdict{Class: retry, MaybeApplied: true}},
		{504, "1.5", graphops.Verdict{Class: thr, RetryAfter: 1500 * time.Millisecond, MaybeApplied: true}},
		{500, "9", graphops.Verdict{Class: retry, MaybeApplied: true}},
		{400, "9", graphops.Verdict{Class: perm}},
	}
	e := newEnv(t, statusFromHeaders)
	for _, tt := range tests {
		name := fmt.Sprintf("%d %s", tt.status, http.StatusText(tt.status))
		if tt.retryAfter != "" {
			name += " with Retry-After " + tt.retryAfter
		}
		name += fmt.Sprintf(" is %s", tt.want.Class)
		t.Run(name, func(t *testing.T) {
			h := map[string]string{"X-Test-Status": strconv.Itoa(tt.status)}
			if tt.retryAfter != "" {
				h["X-Test-Retry-After"] = tt.retryAfter
			}
			_, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), h)
			if got := graphops.Classify(err); got != tt.want {
				t.Errorf("Classify(%v) = %+v, want %+v", err, got, tt.want)
			}
			// A wrapped error classifies the same.
			if got := graphops.Classify(fmt.Errorf("attempt 3: %w", err)); got != tt.want {
				t.Errorf("wrapped: %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTransportFailures(t *testing.T) {
	t.Run("a connection closed after the request was read is retryable and maybe applied", func(t *testing.T) {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		})
		_, err := e.client.Resume(context.Background(), resumeID, []byte(`{"a":1}`), nil)
		var te *graphops.TransportError
		if !errors.As(err, &te) || !te.Sent || te.Operation != graphops.OpResume || te.ClientRequestID == "" {
			t.Fatalf("err = %#v, want a sent TransportError", err)
		}
		if v := graphops.Classify(err); v != (graphops.Verdict{Class: graphops.ClassRetryable, MaybeApplied: true}) {
			t.Errorf("verdict = %+v", v)
		}
		if n := len(e.rec.all()); n != 1 {
			t.Errorf("Graph saw %d requests, want exactly 1 (no hidden retry)", n)
		}
		if o := e.obs.list(); len(o) != 1 || o[0] != (observed{graphops.OpResume, "error"}) {
			t.Errorf("observer saw %v", o)
		}
	})

	t.Run("a refused connection is retryable and not applied", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		e := newEnv(t, nil, func(c *graphops.Config) { c.BaseURL = "http://" + addr })
		_, err = e.client.UpdateRoleRequest(context.Background(), pimID, roleReq, []byte(`{}`), nil)
		var te *graphops.TransportError
		if !errors.As(err, &te) || te.Sent || te.Operation != graphops.OpRoleRequestUpdate {
			t.Fatalf("err = %#v, want an unsent TransportError", err)
		}
		if v := graphops.Classify(err); v != (graphops.Verdict{Class: graphops.ClassRetryable}) {
			t.Errorf("verdict = %+v", v)
		}
		if o := e.obs.list(); len(o) != 1 || o[0].Code != "error" {
			t.Errorf("observer saw %v", o)
		}
	})

	t.Run("the per-call timeout after sending is retryable and maybe applied", func(t *testing.T) {
		release := make(chan struct{})
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			select { // hold the answer until the client gives up
			case <-r.Context().Done():
			case <-release:
			}
		}, func(c *graphops.Config) { c.Timeout = 150 * time.Millisecond })
		defer close(release)
		ctx := context.Background() // no deadline of its own: the client's timeout must fire
		_, err := e.client.Resume(ctx, resumeID, []byte(`{}`), nil)
		var te *graphops.TransportError
		if !errors.As(err, &te) || !te.Sent || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %#v, want a sent TransportError wrapping DeadlineExceeded", err)
		}
		if v := graphops.Classify(err); v != (graphops.Verdict{Class: graphops.ClassRetryable, MaybeApplied: true}) {
			t.Errorf("verdict = %+v", v)
		}
	})

	t.Run("a context already ended makes no call", func(t *testing.T) {
		e := newEnv(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := e.client.Resume(ctx, resumeID, []byte(`{}`), nil)
		var te *graphops.TransportError
		if !errors.As(err, &te) || te.Sent || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %#v", err)
		}
		if n := len(e.rec.all()); n != 0 {
			t.Errorf("Graph saw %d requests", n)
		}
	})
}

func TestClassifyOtherErrors(t *testing.T) {
	stsAnswer := func(code int) error {
		return &azidentity.AuthenticationFailedError{RawResponse: &http.Response{StatusCode: code, Body: io.NopCloser(nil)}}
	}
	tests := []struct {
		name string
		err  error
		want graphops.Verdict
	}{
		{"a token service refusal is permanent", &graphops.AuthError{Err: stsAnswer(400)}, graphops.Verdict{Class: graphops.ClassPermanent}},
		{"a token service 503 is retryable", &graphops.AuthError{Err: stsAnswer(503)}, graphops.Verdict{Class: graphops.ClassRetryable}},
		{"a token service 429 is retryable", &graphops.AuthError{Err: stsAnswer(429)}, graphops.Verdict{Class: graphops.ClassRetryable}},
		{"an unreachable token service is retryable", &graphops.AuthError{Err: &azidentity.AuthenticationFailedError{}}, graphops.Verdict{Class: graphops.ClassRetryable}},
		{"a token timeout is retryable", &graphops.AuthError{Err: context.DeadlineExceeded}, graphops.Verdict{Class: graphops.ClassRetryable}},
		{"another credential failure is permanent", &graphops.AuthError{Err: errors.New("no identity")}, graphops.Verdict{Class: graphops.ClassPermanent}},
		{"an unreadable read answer is retryable", fmt.Errorf("x: %w", graphops.ErrBadResponse), graphops.Verdict{Class: graphops.ClassRetryable}},
		{"a bare deadline is retryable and maybe applied", context.DeadlineExceeded, graphops.Verdict{Class: graphops.ClassRetryable, MaybeApplied: true}},
		{"an unknown error is permanent", errors.New("boom"), graphops.Verdict{Class: graphops.ClassPermanent}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := graphops.Classify(tt.err); got != tt.want {
				t.Errorf("Classify = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAFailedTokenMakesNoCall(t *testing.T) {
	e := newEnv(t, nil)
	e.cred.err = errors.New("credential unavailable")
	_, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil)
	var ae *graphops.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *AuthError", err)
	}
	if n := len(e.rec.all()); n != 0 {
		t.Errorf("Graph saw %d requests", n)
	}
}

func TestClassString(t *testing.T) {
	for c, want := range map[graphops.Class]string{
		graphops.ClassPermanent: "permanent", graphops.ClassThrottled: "throttled",
		graphops.ClassRetryable: "retryable", graphops.ClassUnauthorized: "unauthorized", graphops.Class(9): "Class(9)",
	} {
		if got := c.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(c), got, want)
		}
	}
}

func TestSaysRetired(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"410 Gone says the API is gone whatever its words", &graphops.Error{Status: 410, Code: "Gone"}, true},
		{"a 400 saying the API is deprecated", &graphops.Error{Status: 400, Code: "BadRequest",
			Message: "The PIM Iteration 2 beta API is deprecated. Please migrate to PIM Iteration 3 API."}, true},
		{"a 404 saying the API was retired", &graphops.Error{Status: 404, Code: "NotFound", Message: "This API has been retired."}, true},
		{"a 400 from Graph's router that no longer knows privilegedAccess", &graphops.Error{Status: 400, Code: "BadRequest",
			Message: "Resource not found for the segment 'privilegedAccess'."}, true},
		{"a 404 for an unknown request id", &graphops.Error{Status: 404, Code: "ResourceNotFound",
			Message: "The governanceRoleAssignmentRequest does not exist."}, false},
		{"a 400 about the body", &graphops.Error{Status: 400, Code: "InvalidRequest", Message: "decision is required"}, false},
		{"a 403 mentioning deprecation is a permission problem", &graphops.Error{Status: 403, Message: "deprecated role"}, false},
		{"a wrapped 410", fmt.Errorf("graph: %w", &graphops.Error{Status: 410}), true},
		{"a transport error", &graphops.TransportError{Err: io.EOF}, false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := graphops.SaysRetired(c.err); got != c.want {
				t.Errorf("SaysRetired(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}
