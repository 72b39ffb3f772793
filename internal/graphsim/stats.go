package graphsim

import (
	"bytes"
	"maps"
	"net/http"
	"strings"
	"time"
)

// Stats are the simulator's observations since New.
type Stats struct {
	// Calls counts every call by operation (OpResume, OpRoleRequestUpdate,
	// OpRead, OpOther), whatever its answer.
	Calls map[string]int `json:"calls"`
	// Status counts write calls (resume, PATCH) by the HTTP status returned;
	// 0 counts calls whose connection was dropped without an answer.
	Status map[int]int `json:"status"`
	// Applied counts effective writes by operation: a resume that changed an
	// instance to callbackReceived, an applied PATCH.
	Applied map[string]int `json:"applied"`
	// Throttled counts write calls answered 429, by the rate limit or by a
	// fault.
	Throttled int `json:"throttled"`
	// Overlaps counts calls that arrived while another call for the same
	// request id was in flight (reads included; the request id is the
	// assignment request id, or privilegedAccessId/id).
	Overlaps int `json:"overlaps"`
	// MaxInFlight is the peak number of concurrent calls, all ids together.
	MaxInFlight int `json:"maxInFlight"`
	// InFlight is the number of calls in flight now.
	InFlight int `json:"inFlight"`
	// DoubleApplies counts resumes refused because their instance was
	// already callbackReceived: exactly-once keeps it at 0.
	DoubleApplies int `json:"doubleApplies"`
}

func newStats() Stats {
	return Stats{Calls: map[string]int{}, Status: map[int]int{}, Applied: map[string]int{}}
}

// Call is one call as the simulator received it.
type Call struct {
	Time            time.Time // arrival, on Config.Now
	Method          string
	Path            string
	RawQuery        string
	ClientRequestID string
	Authorization   string
	Body            []byte // after Content-Encoding decoding, when it succeeded
	Status          int    // 0 while in flight, or when the connection was dropped
	Operation       string // OpResume, OpRoleRequestUpdate, OpRead or OpOther
	RequestID       string // as in the path: the assignment request id, or "pid/id"; "" for OpOther paths
}

// Bucket is one time slice of Timeline.
type Bucket struct {
	Start     time.Time
	Applied   int // effective writes
	Throttled int // writes answered 429
}

// begin registers an arriving call: it is logged and enters the in-flight
// set; under AutoCreate what it names is created; and it takes its fault.
func (s *Sim) begin(in *incoming) (seq int, f Fault, faulted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Calls[in.rt.op]++
	s.inflightAll++
	s.stats.MaxInFlight = max(s.stats.MaxInFlight, s.inflightAll)
	if in.rt.op != OpOther {
		if s.inflight[in.rt.key] > 0 {
			s.stats.Overlaps++
		}
		s.inflight[in.rt.key]++
	}
	seq = s.appendCallLocked(in.call)
	if in.authFail != nil || in.rt.op == OpOther {
		return seq, Fault{}, false
	}
	if s.cfg.AutoCreate {
		s.autoCreateLocked(in)
	}
	f, faulted = s.takeFaultLocked(in.call.Method, in.rt)
	return seq, f, faulted
}

// end takes a call out of the in-flight set and records its answer. It runs
// before the answer is written, so that a caller that waits for the answer
// before its next call for the same id never counts as an overlap.
func (s *Sim) end(seq int, in *incoming, rp reply) {
	status := rp.status
	if rp.drop {
		status = 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflightAll--
	if in.rt.op != OpOther {
		if n := s.inflight[in.rt.key] - 1; n > 0 {
			s.inflight[in.rt.key] = n
		} else {
			delete(s.inflight, in.rt.key)
		}
	}
	if i := seq - s.callsBase; i >= 0 {
		s.calls[i].Status = status
	}
	if in.write {
		s.stats.Status[status]++
		if status == http.StatusTooManyRequests {
			s.stats.Throttled++
			s.throttledAt = append(s.throttledAt, s.now().Sub(s.start))
		}
	}
}

// appendCallLocked logs a call and returns its sequence number. With
// MaxCalls the log is trimmed to its newest MaxCalls entries once it holds
// twice as many, which keeps appends amortized O(1).
func (s *Sim) appendCallLocked(c Call) int {
	seq := s.callsBase + len(s.calls)
	s.calls = append(s.calls, c)
	if limit := s.cfg.MaxCalls; limit > 0 && len(s.calls) >= 2*limit {
		cut := len(s.calls) - limit
		s.calls = append([]Call(nil), s.calls[cut:]...)
		s.callsBase += cut
	}
	return seq
}

func (s *Sim) recordAppliedLocked(op, key string) {
	s.stats.Applied[op]++
	s.appliedBy[key]++
	s.appliedAt = append(s.appliedAt, s.now().Sub(s.start))
}

// AppliedSpan returns when the first and the last effective writes took
// effect, from New; zeros before the first.
func (s *Sim) AppliedSpan() (first, last time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.appliedAt) == 0 {
		return 0, 0
	}
	return s.appliedAt[0], s.appliedAt[len(s.appliedAt)-1]
}

// Stats returns a deep copy of the observations.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Calls = maps.Clone(s.stats.Calls)
	st.Status = maps.Clone(s.stats.Status)
	st.Applied = maps.Clone(s.stats.Applied)
	st.InFlight = s.inflightAll
	return st
}

// Calls returns the call log in arrival order (the newest Config.MaxCalls
// when set). Calls to StatsPath are not logged.
func (s *Sim) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := 0
	if limit := s.cfg.MaxCalls; limit > 0 && len(s.calls) > limit {
		from = len(s.calls) - limit
	}
	out := make([]Call, len(s.calls)-from)
	copy(out, s.calls[from:])
	for i := range out {
		out[i].Body = bytes.Clone(out[i].Body)
	}
	return out
}

// AppliedCount returns the effective writes for one request id: an
// assignment request id, or "privilegedAccessId/id" for a role request
// (case-insensitive).
func (s *Sim) AppliedCount(requestID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appliedBy[strings.ToLower(requestID)]
}

// Timeline returns the effective writes and the 429s answered to writes per
// slice of bucket, from New to now (Config.Now), empty slices included, for
// plots. A non-positive bucket returns nil. The caller chooses bucket: a
// long run cut in tiny slices makes a long slice.
func (s *Sim) Timeline(bucket time.Duration) []Bucket {
	return s.timeline(bucket, false)
}

// TimelineFromFirstApplied is Timeline with its slices starting at the
// first effective write instead of at New, so that a window measured in
// whole slices from that write starts at it and not up to a slice before
// it; answers before that write count in the first slice. It is empty
// until a write is applied.
func (s *Sim) TimelineFromFirstApplied(bucket time.Duration) []Bucket {
	return s.timeline(bucket, true)
}

func (s *Sim) timeline(bucket time.Duration, fromFirstApplied bool) []Bucket {
	if bucket <= 0 {
		return nil
	}
	s.mu.Lock()
	applied := append([]time.Duration(nil), s.appliedAt...)
	throttled := append([]time.Duration(nil), s.throttledAt...)
	end := s.now().Sub(s.start)
	s.mu.Unlock()
	origin := time.Duration(0)
	if fromFirstApplied {
		if len(applied) == 0 {
			return []Bucket{}
		}
		origin = applied[0] // appended in the order the writes took effect
	}
	for _, ds := range [][]time.Duration{applied, throttled} {
		for i := range ds {
			ds[i] -= origin
		}
	}
	end -= origin
	start := s.start.Add(origin)
	index := func(d time.Duration) int { return int(max(0, d) / bucket) }
	n := index(end) + 1
	for _, d := range applied {
		n = max(n, index(d)+1)
	}
	for _, d := range throttled {
		n = max(n, index(d)+1)
	}
	out := make([]Bucket, n)
	for i := range out {
		out[i].Start = start.Add(time.Duration(i) * bucket)
	}
	for _, d := range applied {
		out[index(d)].Applied++
	}
	for _, d := range throttled {
		out[index(d)].Throttled++
	}
	return out
}

func (s *Sim) serveStats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := mustJSON(s.Stats())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}
