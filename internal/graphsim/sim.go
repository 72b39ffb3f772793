// Package graphsim is an in-process Microsoft Graph simulator: an http.Handler
// that serves the three Graph calls the worker makes (docs/SPEC.md §1 and §3: the
// assignment request resume, the PIM role request PATCH and the assignment
// request read) with per-request state, Graph-shaped errors, programmable
// faults, latency and a token-bucket rate limit. It is the "Graph" of
// `worker dev`, of the tests, of the benchmarks and of the load harness.
//
// It also observes its caller: overlapping calls for one request id, resumes
// of an instance that was already resumed, the peak concurrency and every call
// made, so that tests can assert exactly-once and per-request serialization
// from the outside.
//
// It owns the simulated Graph state and the observations. It does not own any
// worker logic (classification, retries, pacing): it only answers the way
// Graph does, so that the worker's logic can be tested against it. Where
// Graph's behaviour is undocumented (the error code of a refused resume, for
// one), the choice made here is documented at the place it is made.
package graphsim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/graphops/worker/internal/command"
)

// Operations: the values of Call.Operation, Match.Operation and the keys of
// Stats.Calls and Stats.Applied. The write operations share the short types of
// internal/command so that they read the same in the worker's metrics.
const (
	OpResume            = string(command.TypeResume)            // POST …/assignmentRequests/{id}/resume
	OpRoleRequestUpdate = string(command.TypeRoleRequestUpdate) // PATCH /beta/privilegedAccess/{pid}/roleAssignmentRequests/{id}
	OpRead              = "read"                                // GET …/assignmentRequests/{id}
	// OpOther is any other path or method: the worker must never make one.
	OpOther = "other"
)

// StatsPath serves Stats as JSON (GET), for tests and harnesses in another
// process. It is not a Graph call: it is neither authenticated nor recorded.
const StatsPath = "/_sim/stats"

// maxBody bounds a request body, before and after gzip decoding; the worker's
// bodies are under 256 KiB (docs/SPEC.md §2).
const maxBody = 4 << 20

// Sentinel errors.
var (
	// ErrInvalidConfig wraps every Config.Validate error.
	ErrInvalidConfig = errors.New("graphsim: invalid config")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("graphsim: closed")
)

// Config configures a Sim. The zero value is a valid, instant, unlimited
// simulator that accepts any bearer token and knows no request.
type Config struct {
	// Token, when set, is the only accepted bearer token: a request must carry
	// "Authorization: Bearer <Token>", else 401 InvalidAuthenticationToken.
	// When empty any bearer token is accepted, but a missing or non-Bearer
	// Authorization header is still 401.
	Token string
	// AutoCreate creates unknown ids on first use instead of answering 404
	// ResourceNotFound: an unknown assignment request is created when a call
	// names it; a resume also adds the callout instance it names, waiting for
	// callback, when the request does not have it (so that a harness can send
	// several commands for one request id); a read of a never-seen request
	// shows it without callout instances; an unknown role request is created
	// with default properties before the PATCH is merged into it.
	AutoCreate bool
	// Latency is added to every call before it is processed and answered.
	Latency time.Duration
	// Jitter adds a uniform extra latency in [0, Jitter).
	Jitter time.Duration
	// WriteRate is the token-bucket refill rate for write calls (resume and
	// PATCH), in calls per second; 0 means unlimited. Reads are never limited.
	WriteRate float64
	// Burst is the bucket size; 0 means max(1, ceil(WriteRate/10)).
	Burst int
	// OtherShare is the share of WriteRate another application of the tenant
	// spends from the same bucket, steadily: the bucket refills for this
	// caller at WriteRate × (1 - OtherShare). 0 means none; less than 1.
	OtherShare float64
	// LimitWarning sends Graph's early warning of identity and access
	// throttling on write answers: x-ms-throttle-limit-percentage, the
	// share of the bucket spent, from 0.80 to 1.80, once more than 0.8 is
	// spent ("returned only when the application consumed more than 0.8 of
	// its limit", https://learn.microsoft.com/graph/throttling-limits);
	// and on 429s x-ms-throttle-scope and x-ms-throttle-information.
	LimitWarning bool
	// PenalizeThrottled makes a call refused by the rate limit consume a token
	// too (the bucket may go down to -Burst*10), as Graph counts throttled
	// calls against the budget: a 429 storm prolongs the throttling.
	PenalizeThrottled bool
	// RoleUpdateNoContent answers a successful PATCH with 204 instead of 200
	// and the updated object (Graph's generators have documented both).
	RoleUpdateNoContent bool
	// MaxCalls bounds the call log that Calls returns to the most recent
	// MaxCalls calls (long load runs); 0 keeps every call. Stats are never
	// bounded.
	MaxCalls int
	// Now is the clock of timestamps, of the rate limit and of Timeline; it
	// defaults to time.Now. Latency and delays always wait in real time.
	Now func() time.Time
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Latency < 0:
		return fmt.Errorf("%w: Latency %v is negative", ErrInvalidConfig, c.Latency)
	case c.Jitter < 0:
		return fmt.Errorf("%w: Jitter %v is negative", ErrInvalidConfig, c.Jitter)
	case c.WriteRate < 0 || math.IsNaN(c.WriteRate) || math.IsInf(c.WriteRate, 0):
		return fmt.Errorf("%w: WriteRate %v is not a finite rate >= 0", ErrInvalidConfig, c.WriteRate)
	case c.Burst < 0:
		return fmt.Errorf("%w: Burst %d is negative", ErrInvalidConfig, c.Burst)
	case !(c.OtherShare >= 0 && c.OtherShare < 1):
		return fmt.Errorf("%w: OtherShare %v is not in [0, 1)", ErrInvalidConfig, c.OtherShare)
	case c.MaxCalls < 0:
		return fmt.Errorf("%w: MaxCalls %d is negative", ErrInvalidConfig, c.MaxCalls)
	}
	return nil
}

// Sim is the simulator. It is safe for concurrent use. Its zero value is not
// usable: call New.
type Sim struct {
	cfg   Config
	now   func() time.Time
	start time.Time
	done  chan struct{} // closed by Close: releases every latency and delay wait

	closeOnce sync.Once
	srvMu     sync.Mutex
	srv       *http.Server
	baseURL   string
	closed    bool

	// hookBegun, when set (tests only, see export_test.go), runs once a call
	// is registered as in flight and before its latency.
	hookBegun func()

	// mu guards everything below. It is held only for map and counter
	// updates, never across a wait, a body decode or a JSON encode.
	mu          sync.Mutex
	assign      map[string]*assignmentRequest // by lower-cased request id
	roles       map[string]*roleRequest       // by lower-cased "pid/id"
	faults      []*pendingFault
	bucket      *bucket // nil: unlimited
	inflight    map[string]int
	inflightAll int
	stats       Stats
	appliedBy   map[string]int
	calls       []Call
	callsBase   int             // calls dropped from the front of calls (MaxCalls)
	appliedAt   []time.Duration // since start, for Timeline
	throttledAt []time.Duration
}

// New returns a simulator for cfg. It panics when cfg.Validate fails: a
// simulator is built by tests and by `worker dev` from fixed values, where a
// bad value is a programming error.
func New(cfg Config) *Sim {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Sim{
		cfg:       cfg,
		now:       now,
		start:     now(),
		done:      make(chan struct{}),
		assign:    make(map[string]*assignmentRequest),
		roles:     make(map[string]*roleRequest),
		inflight:  make(map[string]int),
		appliedBy: make(map[string]int),
		stats:     newStats(),
	}
	if cfg.WriteRate > 0 {
		burst := cfg.Burst
		if burst == 0 {
			burst = max(1, int(math.Ceil(cfg.WriteRate/10)))
		}
		s.bucket = newBucket(cfg.WriteRate*(1-cfg.OtherShare), burst, cfg.PenalizeThrottled, s.start)
	}
	return s
}

// Start serves the simulator on a loopback listener (127.0.0.1:0) and returns
// its base URL, e.g. "http://127.0.0.1:43211". Close stops it.
func (s *Sim) Start() (baseURL string, err error) {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	if s.srv != nil {
		return "", fmt.Errorf("graphsim: already serving on %s", s.baseURL)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("graphsim: listen on loopback: %w", err)
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.baseURL = "http://" + ln.Addr().String()
	go func(srv *http.Server) { _ = srv.Serve(ln) }(s.srv) // returns ErrServerClosed on Close
	return s.baseURL, nil
}

// Close releases every call waiting on Latency or a fault's Delay (they are
// answered at once), and stops the listener of Start and its connections.
// Calls being handled may still finish after Close returns. Close is
// idempotent; the Sim's state and observations stay readable.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	s.closed = true
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	s.srv = nil
	if err != nil {
		return fmt.Errorf("graphsim: close server: %w", err)
	}
	return nil
}

// ServeHTTP answers one call. The steps, in order: authentication (401),
// routing (404/405), faults, Latency, then the rate limit (writes only),
// validation (415/400) and the effect. The call counts as in flight from its
// arrival until just before its answer is written, so that a caller that
// waits for the answer before its next call is never seen overlapping.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == StatsPath {
		s.serveStats(w, r)
		return
	}
	in := s.receive(r)
	seq, f, faulted := s.begin(in)
	if s.hookBegun != nil {
		s.hookBegun()
	}
	s.wait(s.latency())
	rp := s.respond(in, f, faulted)
	s.end(seq, in, rp)
	if rp.drop {
		dropConn(w)
		return
	}
	s.write(w, in, rp)
}

// respond computes the answer of a call that is in flight.
func (s *Sim) respond(in *incoming, f Fault, faulted bool) reply {
	switch {
	case in.authFail != nil:
		return *in.authFail
	case in.rt.op == OpOther:
		return in.rt.refusal()
	case !faulted:
		return s.process(in, true)
	case f.slowOnly():
		s.wait(f.Delay)
		return s.process(in, true)
	}
	if f.ApplyFirst {
		s.process(in, false) // the effect happens; its answer is lost
	}
	s.wait(f.Delay)
	return f.reply()
}

// latency is this call's Latency plus its jitter.
func (s *Sim) latency() time.Duration {
	d := s.cfg.Latency
	if s.cfg.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(s.cfg.Jitter)))
	}
	return d
}

// wait blocks for d of real time, or until Close.
func (s *Sim) wait(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

// dropConn closes the connection without an answer. Hijacking closes exactly
// this call's TCP connection, which is what a client sees when Graph's front
// door resets; where hijacking is impossible (HTTP/2) the server aborts the
// response instead.
func dropConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}
