package graphsim

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Match selects the calls a fault applies to. Empty fields match anything.
// Only the three Graph operations are ever matched: a call to an unknown path
// or with a wrong method, or one refused by authentication, consumes no
// fault.
type Match struct {
	Method    string // compared case-insensitively
	Operation string // OpResume, OpRoleRequestUpdate, OpRead, or "" for any
	RequestID string // the assignment request id, or "pid/id"; compared case-insensitively
}

func (m Match) matches(method string, rt route) bool {
	return rt.op != OpOther &&
		(m.Method == "" || strings.EqualFold(m.Method, method)) &&
		(m.Operation == "" || m.Operation == rt.op) &&
		(m.RequestID == "" || strings.EqualFold(m.RequestID, rt.requestID))
}

// Fault replaces the normal processing of a call. The call still gets the
// Latency of every call first.
//
// A fault with Status 0 and no Drop is a slow call: normal processing (rate
// limit included) after Delay.
type Fault struct {
	Status     int    // e.g. 429, 500, 503, 404; a status below 400 is answered without a body
	Code       string // Graph error code; default by status (TooManyRequests, ServiceUnavailable, …)
	Message    string // default "Simulated fault: <status text>."
	RetryAfter string // Retry-After header value, "" for none
	// ApplyFirst applies the call's effect (validation included, rate limit
	// excluded), then answers with the fault: an unknown outcome, such as a
	// 500 or 504 after the resume took effect.
	ApplyFirst bool
	// Drop closes the connection without an answer (after applying, when
	// ApplyFirst is set).
	Drop bool
	// Delay waits before answering (after applying, when ApplyFirst is set),
	// to trip client timeouts.
	Delay time.Duration
}

func (f Fault) slowOnly() bool { return f.Status == 0 && !f.Drop }

// reply is the fault's answer.
func (f Fault) reply() reply {
	if f.Drop {
		return reply{drop: true}
	}
	if f.Status < 400 {
		return reply{status: f.Status, retryAfter: f.RetryAfter}
	}
	msg := f.Message
	if msg == "" {
		msg = fmt.Sprintf("Simulated fault: %s.", http.StatusText(f.Status))
	}
	rp := errReply(f.Status, f.Code, msg)
	rp.retryAfter = f.RetryAfter
	return rp
}

type pendingFault struct {
	m    Match
	f    Fault
	left int
}

// Inject makes the next n calls matching m get f instead of normal
// processing. Faults are taken in injection order: a call consumes one use of
// the oldest fault it matches. n <= 0 injects nothing.
func (s *Sim) Inject(m Match, f Fault, n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.faults = append(s.faults, &pendingFault{m: m, f: f, left: n})
	s.mu.Unlock()
}

// takeFaultLocked consumes one use of the oldest fault matching the call.
func (s *Sim) takeFaultLocked(method string, rt route) (Fault, bool) {
	for i, pf := range s.faults {
		if !pf.m.matches(method, rt) {
			continue
		}
		pf.left--
		if pf.left == 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return pf.f, true
	}
	return Fault{}, false
}
