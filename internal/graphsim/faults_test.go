package graphsim_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/graphsim"
)

func TestFaults(t *testing.T) {
	resume := func(id, inst string) call {
		return call{method: http.MethodPost, path: resumeURL(id), body: resumeBody(inst)}
	}
	type want struct {
		status     int
		code       string
		retryAfter string
		message    string
	}
	tests := []struct {
		name        string
		inject      func(s *graphsim.Sim)
		calls       []call
		want        []want
		wantApplied int
		wantInst    string // status of req/i1 afterwards
		wantThrott  int
	}{
		{
			name:     "a 429 fault answers with its Retry-After and the default code, and applies nothing",
			inject:   func(s *graphsim.Sim) { s.Inject(graphsim.Match{}, graphsim.Fault{Status: 429, RetryAfter: "7"}, 1) },
			calls:    []call{resume("req", "i1")},
			want:     []want{{status: 429, code: "TooManyRequests", retryAfter: "7"}},
			wantInst: "waitingForCallback", wantThrott: 1,
		},
		{
			name: "a fault's code and message are answered as given",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{}, graphsim.Fault{Status: 503, Code: "UnknownError", Message: "Try later."}, 1)
			},
			calls:    []call{resume("req", "i1")},
			want:     []want{{status: 503, code: "UnknownError", message: "Try later."}},
			wantInst: "waitingForCallback",
		},
		{
			name:        "a fault is used n times, then normal processing resumes",
			inject:      func(s *graphsim.Sim) { s.Inject(graphsim.Match{}, graphsim.Fault{Status: 500}, 2) },
			calls:       []call{resume("req", "i1"), resume("req", "i1"), resume("req", "i1")},
			want:        []want{{status: 500, code: "InternalServerError"}, {status: 500, code: "InternalServerError"}, {status: 204}},
			wantApplied: 1, wantInst: "callbackReceived",
		},
		{
			name: "faults are taken in injection order",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{}, graphsim.Fault{Status: 502}, 1)
				s.Inject(graphsim.Match{}, graphsim.Fault{Status: 504}, 1)
			},
			calls:       []call{resume("req", "i1"), resume("req", "i1"), resume("req", "i1")},
			want:        []want{{status: 502, code: "BadGateway"}, {status: 504, code: "GatewayTimeout"}, {status: 204}},
			wantApplied: 1, wantInst: "callbackReceived",
		},
		{
			name: "a fault for one request id leaves the others alone",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{RequestID: "REQ"}, graphsim.Fault{Status: 500}, 1)
			},
			calls:       []call{resume("other", "o1"), resume("req", "i1")},
			want:        []want{{status: 204}, {status: 500, code: "InternalServerError"}},
			wantApplied: 1, wantInst: "waitingForCallback",
		},
		{
			name: "a fault for reads leaves resumes alone",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{Operation: graphsim.OpRead}, graphsim.Fault{Status: 500}, 1)
			},
			calls:       []call{resume("req", "i1"), {method: http.MethodGet, path: readURL("req")}},
			want:        []want{{status: 204}, {status: 500, code: "InternalServerError"}},
			wantApplied: 1, wantInst: "callbackReceived",
		},
		{
			name: "a fault for one method leaves the others alone",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{Method: "patch"}, graphsim.Fault{Status: 500}, 1)
			},
			calls:       []call{resume("req", "i1"), {method: http.MethodPatch, path: roleURL("azureResources", "r1"), body: `{}`}},
			want:        []want{{status: 204}, {status: 500, code: "InternalServerError"}},
			wantApplied: 1, wantInst: "callbackReceived",
		},
		{
			name: "ApplyFirst applies the resume and answers the fault: an unknown outcome",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{}, graphsim.Fault{Status: 504, ApplyFirst: true}, 1)
			},
			calls:       []call{resume("req", "i1"), resume("req", "i1")},
			want:        []want{{status: 504, code: "GatewayTimeout"}, {status: 400, code: "InvalidRequestState"}},
			wantApplied: 1, wantInst: "callbackReceived",
		},
		{
			name: "ApplyFirst skips the rate limit but not the validation",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{}, graphsim.Fault{Status: 500, ApplyFirst: true}, 1)
			},
			calls:    []call{{method: http.MethodPost, path: resumeURL("req"), body: `{"data":{}}`}},
			want:     []want{{status: 500, code: "InternalServerError"}},
			wantInst: "waitingForCallback",
		},
		{
			name: "a fault below 400 answers without a body",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{}, graphsim.Fault{Status: 202, ApplyFirst: true}, 1)
			},
			calls:       []call{resume("req", "i1")},
			want:        []want{{status: 202}},
			wantApplied: 1, wantInst: "callbackReceived",
		},
		{
			name: "a fault with only a delay is a slow call processed normally",
			inject: func(s *graphsim.Sim) {
				s.Inject(graphsim.Match{}, graphsim.Fault{Delay: time.Millisecond}, 1)
			},
			calls:       []call{resume("req", "i1")},
			want:        []want{{status: 204}},
			wantApplied: 1, wantInst: "callbackReceived",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, graphsim.Config{})
			f.sim.AddAssignmentRequest("req", "i1")
			f.sim.AddAssignmentRequest("other", "o1")
			f.sim.AddRoleRequest("azureResources", "r1")
			tt.inject(f.sim)
			for i, c := range tt.calls {
				a := f.do(t, c)
				w := tt.want[i]
				checkAnswer(t, a, w.status, w.code)
				if got := a.header.Get("Retry-After"); got != w.retryAfter {
					t.Errorf("call %d: Retry-After = %q, want %q", i, got, w.retryAfter)
				}
				if w.status < 400 && w.status != 200 && len(a.body) != 0 {
					t.Errorf("call %d: body %q, want none", i, a.body)
				}
				if w.message != "" && !strings.Contains(string(a.body), w.message) {
					t.Errorf("call %d: body %s lacks message %q", i, a.body, w.message)
				}
			}
			st := f.sim.Stats()
			if got := st.Applied[graphsim.OpResume]; got != tt.wantApplied {
				t.Errorf("resumes applied = %d, want %d", got, tt.wantApplied)
			}
			if got, _ := f.sim.Instance("req", "i1"); got != tt.wantInst {
				t.Errorf("instance req/i1 = %q, want %q", got, tt.wantInst)
			}
			if st.Throttled != tt.wantThrott {
				t.Errorf("Throttled = %d, want %d", st.Throttled, tt.wantThrott)
			}
		})
	}
}

func TestDropClosesTheConnectionWithoutAnAnswer(t *testing.T) {
	tests := []struct {
		name        string
		fault       graphsim.Fault
		wantInst    string
		wantApplied int
	}{
		{"a drop without ApplyFirst applies nothing", graphsim.Fault{Drop: true}, "waitingForCallback", 0},
		{"a drop after ApplyFirst leaves the resume applied", graphsim.Fault{Drop: true, ApplyFirst: true}, "callbackReceived", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := graphsim.New(graphsim.Config{})
			url, err := sim.Start()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sim.Close() })
			sim.AddAssignmentRequest("req", "i1")
			sim.Inject(graphsim.Match{Operation: graphsim.OpResume}, tt.fault, 1)
			f := &fixture{sim: sim, url: url, client: &http.Client{Timeout: 10 * time.Second}}

			if a, err := f.try(call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i1")}); err == nil {
				t.Fatalf("the dropped call got an answer: %d %s", a.status, a.body)
			}
			if got, _ := sim.Instance("req", "i1"); got != tt.wantInst {
				t.Errorf("instance = %q, want %q", got, tt.wantInst)
			}
			st := sim.Stats()
			if st.Applied[graphsim.OpResume] != tt.wantApplied || st.Status[0] != 1 {
				t.Errorf("Stats = %+v; want %d applied and one dropped (status 0)", st, tt.wantApplied)
			}
			if calls := sim.Calls(); len(calls) != 1 || calls[0].Status != 0 {
				t.Errorf("Calls = %+v; want one call with status 0", calls)
			}
			// The simulator keeps serving after a drop.
			checkAnswer(t, f.do(t, call{method: http.MethodGet, path: readURL("req")}), 200, "")
		})
	}
}

func TestFaultDelay(t *testing.T) {
	t.Run("a delayed fault is answered after its delay", func(t *testing.T) {
		const delay = 50 * time.Millisecond
		f := newFixture(t, graphsim.Config{})
		f.sim.AddAssignmentRequest("req", "i1")
		f.sim.Inject(graphsim.Match{}, graphsim.Fault{Status: 503, Delay: delay}, 1)
		began := time.Now()
		checkAnswer(t, f.do(t, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i1")}), 503, "ServiceUnavailable")
		if took := time.Since(began); took < delay {
			t.Errorf("answered after %v, before the delay %v", took, delay)
		}
	})
	t.Run("a long delay trips the client's timeout", func(t *testing.T) {
		f := newFixture(t, graphsim.Config{}) // its cleanup closes the Sim, which ends the delay
		f.sim.AddAssignmentRequest("req", "i1")
		f.sim.Inject(graphsim.Match{}, graphsim.Fault{Status: 504, Delay: time.Hour}, 1)
		f.client.Timeout = 100 * time.Millisecond
		_, err := f.try(call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i1")})
		var ne interface{ Timeout() bool }
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a client timeout", err)
		}
	})
}
