package graphsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphops/worker/internal/graphsim"
)

func TestOverlaps(t *testing.T) {
	resume := func(id, inst string) call {
		return call{method: http.MethodPost, path: resumeURL(id), body: resumeBody(inst)}
	}
	read := func(id string) call { return call{method: http.MethodGet, path: readURL(id)} }
	patch := func(pid, id string) call {
		return call{method: http.MethodPatch, path: roleURL(pid, id), body: `{"reason":"r"}`}
	}
	tests := []struct {
		name          string
		first, second call
		want          int
	}{
		{"two resumes of one request overlap", resume("req", "i1"), resume("req", "i2"), 1},
		{"a read during a resume of the same request overlaps", resume("req", "i1"), read("req"), 1},
		{"ids differing only in case name one request", read("req"), resume("REQ", "i1"), 1},
		{"calls for different requests do not overlap", resume("req", "i1"), resume("other", "o1"), 0},
		{"two PATCHes of one role request overlap", patch("azureResources", "r1"), patch("azureResources", "r1"), 1},
		{"one role request id under two privilegedAccess ids is two requests", patch("azureResources", "r1"), patch("aadRoles", "r1"), 0},
		{"calls to unknown paths are not requests", call{method: http.MethodGet, path: "/v1.0/me"}, call{method: http.MethodGet, path: "/v1.0/me"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := graphsim.New(graphsim.Config{AutoCreate: true})
			arrived, release := make(chan struct{}), make(chan struct{})
			graphsim.SetBeginHook(sim, func() {
				arrived <- struct{}{}
				<-release
			})
			f := serve(t, sim)
			var wg sync.WaitGroup
			for _, c := range []call{tt.first, tt.second} {
				wg.Go(func() { _, _ = f.try(c) })
				<-arrived // held in flight until release
			}
			st := sim.Stats()
			close(release)
			wg.Wait()
			if st.InFlight != 2 || st.MaxInFlight != 2 {
				t.Errorf("while held: InFlight %d, MaxInFlight %d; want 2, 2", st.InFlight, st.MaxInFlight)
			}
			if st.Overlaps != tt.want {
				t.Errorf("Overlaps = %d, want %d", st.Overlaps, tt.want)
			}
			if after := sim.Stats(); after.Overlaps != tt.want || after.InFlight != 0 {
				t.Errorf("after: Overlaps %d, InFlight %d; want %d, 0", after.Overlaps, after.InFlight, tt.want)
			}
		})
	}
}

// A caller that waits for each answer before its next call must never be
// seen overlapping: a call leaves the in-flight set before its answer is
// written.
func TestSequentialCallsNeverOverlap(t *testing.T) {
	f := newFixture(t, graphsim.Config{AutoCreate: true})
	for i := range 100 {
		c := call{method: http.MethodGet, path: readURL("req")}
		if i%2 == 0 {
			c = call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i" + strconv.Itoa(i))}
		}
		f.do(t, c)
	}
	if st := f.sim.Stats(); st.Overlaps != 0 || st.MaxInFlight != 1 || st.Applied[graphsim.OpResume] != 50 {
		t.Fatalf("Stats = %+v; want no overlap, MaxInFlight 1, 50 applied", st)
	}
}

// probe is a ResponseWriter that records how many calls the simulator counts
// in flight at the moment the answer starts being written.
type probe struct {
	*httptest.ResponseRecorder
	sim      *graphsim.Sim
	inFlight int
}

func (p *probe) WriteHeader(status int) {
	p.inFlight = p.sim.Stats().InFlight
	p.ResponseRecorder.WriteHeader(status)
}

// Deterministic form of the rule above: whatever the answer, the call has
// left the in-flight set when its first byte is written.
func TestACallLeavesTheInFlightSetBeforeItsAnswerIsWritten(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		fault  *graphsim.Fault
		want   int
	}{
		{"a resume", http.MethodPost, resumeURL("req"), resumeBody("i1"), nil, 204},
		{"a read", http.MethodGet, readURL("req"), "", nil, 200},
		{"a PATCH", http.MethodPatch, roleURL("azureResources", "r1"), `{}`, nil, 200},
		{"a refused resume", http.MethodPost, resumeURL("req"), `{}`, nil, 400},
		{"a faulted call", http.MethodGet, readURL("req"), "", &graphsim.Fault{Status: 503}, 503},
		{"an unknown path", http.MethodGet, "/v1.0/me", "", nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := graphsim.New(graphsim.Config{AutoCreate: true})
			if tt.fault != nil {
				sim.Inject(graphsim.Match{}, *tt.fault, 1)
			}
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer t")
			req.Header.Set("Content-Type", "application/json")
			p := &probe{ResponseRecorder: httptest.NewRecorder(), sim: sim, inFlight: -1}
			sim.ServeHTTP(p, req)
			if p.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", p.Code, tt.want, p.Body)
			}
			if p.inFlight != 0 {
				t.Errorf("%d calls in flight while the answer was written, want 0", p.inFlight)
			}
		})
	}
}

// The in-flight window covers the Latency: a call waiting on it overlaps with
// the next call for its request.
func TestACallWaitingOnLatencyIsInFlight(t *testing.T) {
	sim := graphsim.New(graphsim.Config{AutoCreate: true, Latency: time.Hour})
	arrived := make(chan struct{}, 2)
	graphsim.SetBeginHook(sim, func() { arrived <- struct{}{} })
	f := serve(t, sim)
	var wg sync.WaitGroup
	statuses := make(chan int, 2)
	for _, inst := range []string{"i1", "i2"} {
		wg.Go(func() {
			a, err := f.try(call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody(inst)})
			if err == nil {
				statuses <- a.status
			}
		})
		<-arrived
	}
	if st := sim.Stats(); st.Overlaps != 1 || st.InFlight != 2 {
		t.Errorf("Overlaps %d, InFlight %d; want 1, 2", st.Overlaps, st.InFlight)
	}
	if err := sim.Close(); err != nil { // releases the latency waits
		t.Fatal(err)
	}
	wg.Wait()
	close(statuses)
	n := 0
	for s := range statuses {
		n++
		if s != 204 {
			t.Errorf("released call answered %d, want 204", s)
		}
	}
	if n != 2 {
		t.Errorf("%d calls answered after Close, want 2", n)
	}
}

func TestTimelineCountsAppliedWritesAndThrottlesPerBucket(t *testing.T) {
	clock := newFakeClock()
	t0 := clock.Now()
	f := newFixture(t, graphsim.Config{AutoCreate: true, WriteRate: 1, Burst: 1, Now: clock.Now})
	steps := []struct {
		at   time.Duration
		c    call
		want int
	}{
		{200 * time.Millisecond, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i1")}, 204},
		{1300 * time.Millisecond, call{method: http.MethodPatch, path: roleURL("azureResources", "r1"), body: `{}`}, 200},
		{1400 * time.Millisecond, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i2")}, 429},
		{1450 * time.Millisecond, call{method: http.MethodGet, path: readURL("req")}, 200},
		{2500 * time.Millisecond, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i2")}, 204},
		{2600 * time.Millisecond, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i3")}, 429}, // from a fault
	}
	for i, st := range steps {
		clock.Advance(t0.Add(st.at).Sub(clock.Now()))
		if i == len(steps)-1 {
			f.sim.Inject(graphsim.Match{}, graphsim.Fault{Status: 429, RetryAfter: "3"}, 1)
		}
		checkAnswer(t, f.do(t, st.c), st.want, map[int]string{429: "TooManyRequests"}[st.want])
	}
	clock.Advance(400 * time.Millisecond) // now = t0+3s: a fourth, empty bucket
	want := []graphsim.Bucket{
		{Start: t0, Applied: 1},
		{Start: t0.Add(time.Second), Applied: 1, Throttled: 1},
		{Start: t0.Add(2 * time.Second), Applied: 1, Throttled: 1},
		{Start: t0.Add(3 * time.Second)},
	}
	if got := f.sim.Timeline(time.Second); !reflect.DeepEqual(got, want) {
		t.Errorf("Timeline(1s) =\n%+v\nwant\n%+v", got, want)
	}
	if got := f.sim.Timeline(0); got != nil {
		t.Errorf("Timeline(0) = %+v, want nil", got)
	}
	// From the first applied write (t0+200ms): the 429 at 1.4s and the
	// write at 1.3s fall in the second slice, those at 2.5s and 2.6s in
	// the third; the slices end with now (t0+3s).
	from := t0.Add(200 * time.Millisecond)
	wantFrom := []graphsim.Bucket{
		{Start: from, Applied: 1},
		{Start: from.Add(time.Second), Applied: 1, Throttled: 1},
		{Start: from.Add(2 * time.Second), Applied: 1, Throttled: 1},
	}
	if got := f.sim.TimelineFromFirstApplied(time.Second); !reflect.DeepEqual(got, wantFrom) {
		t.Errorf("TimelineFromFirstApplied(1s) =\n%+v\nwant\n%+v", got, wantFrom)
	}
	if st := f.sim.Stats(); st.Throttled != 2 || st.Applied[graphsim.OpResume] != 2 || st.Applied[graphsim.OpRoleRequestUpdate] != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestCallsRecordsEachCall(t *testing.T) {
	clock := newFakeClock()
	f := newFixture(t, graphsim.Config{AutoCreate: true, Now: clock.Now})
	clock.Advance(time.Minute)
	f.do(t, call{method: http.MethodPost, path: resumeURL("Req-1"), rawBody: gzipped(t, resumeBody("i1")),
		header: map[string]string{"Content-Encoding": "gzip", "client-request-id": "c-1", "Authorization": "Bearer tok-1"}})
	f.do(t, call{method: http.MethodGet, path: readURL("req-1") + "?$select=id,state", header: map[string]string{"client-request-id": "c-2"}})
	f.do(t, call{method: http.MethodPatch, path: roleURL("azureResources", "r1"), body: `{"reason":"x"}`})
	f.do(t, call{method: http.MethodDelete, path: "/v1.0/users/u1"})

	calls := f.sim.Calls()
	if len(calls) != 4 {
		t.Fatalf("%d calls logged, want 4", len(calls))
	}
	first := calls[0]
	if first.Method != "POST" || first.Path != resumeURL("Req-1") || first.ClientRequestID != "c-1" ||
		first.Authorization != "Bearer tok-1" || first.Status != 204 || first.Operation != graphsim.OpResume ||
		first.RequestID != "Req-1" || !first.Time.Equal(clock.Now()) {
		t.Errorf("first call = %+v", first)
	}
	if string(first.Body) != resumeBody("i1") {
		t.Errorf("first body = %q, want the gzip-decoded body", first.Body)
	}
	second := calls[1]
	if second.Operation != graphsim.OpRead || second.RawQuery != "$select=id,state" || second.Status != 200 || second.ClientRequestID != "c-2" {
		t.Errorf("second call = %+v", second)
	}
	if c := calls[2]; c.Operation != graphsim.OpRoleRequestUpdate || c.RequestID != "azureResources/r1" || c.Status != 200 {
		t.Errorf("third call = %+v", c)
	}
	if c := calls[3]; c.Operation != graphsim.OpOther || c.RequestID != "" || c.Status != 404 {
		t.Errorf("fourth call = %+v", c)
	}
	calls[0].Body[0] = 'X'
	if f.sim.Calls()[0].Body[0] == 'X' {
		t.Error("Calls shares body memory with the log")
	}
}

func TestMaxCallsKeepsTheNewestCalls(t *testing.T) {
	f := newFixture(t, graphsim.Config{AutoCreate: true, MaxCalls: 3})
	for i := range 10 {
		f.do(t, call{method: http.MethodGet, path: readURL("r" + strconv.Itoa(i))})
	}
	calls := f.sim.Calls()
	var ids []string
	for _, c := range calls {
		if c.Status != 200 {
			t.Errorf("call %s has status %d, want 200", c.RequestID, c.Status)
		}
		ids = append(ids, c.RequestID)
	}
	if !reflect.DeepEqual(ids, []string{"r7", "r8", "r9"}) {
		t.Errorf("Calls kept %v, want r7 r8 r9", ids)
	}
	if got := f.sim.Stats().Calls[graphsim.OpRead]; got != 10 {
		t.Errorf("Stats.Calls[read] = %d, want 10: stats are not bounded", got)
	}
}

func TestStatsEndpoint(t *testing.T) {
	sim := graphsim.New(graphsim.Config{AutoCreate: true})
	base, err := sim.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	f := &fixture{sim: sim, url: base, client: &http.Client{Timeout: 10 * time.Second}}
	f.do(t, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i1")})
	f.do(t, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i1")})
	f.do(t, call{method: http.MethodGet, path: readURL("req")})

	resp, err := http.Get(base + graphsim.StatsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var raw map[string]json.RawMessage
	var got graphsim.Stats
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(body, &raw) != nil || json.Unmarshal(body, &got) != nil {
		t.Fatalf("GET %s: %d %q %s", graphsim.StatsPath, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if want := sim.Stats(); !reflect.DeepEqual(got, want) {
		t.Errorf("GET %s = %+v\nStats = %+v", graphsim.StatsPath, got, want)
	}
	if got.DoubleApplies != 1 || got.Status[204] != 1 || got.Status[400] != 1 || got.Calls[graphsim.OpRead] != 1 {
		t.Errorf("stats = %+v; want one 204, one refused double apply, one read", got)
	}
	for _, k := range []string{"calls", "status", "applied", "throttled", "overlaps", "maxInFlight", "doubleApplies"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("stats JSON lacks %q: %s", k, body)
		}
	}
	resp, err = http.Post(base+graphsim.StatsPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s = %d, want 405", graphsim.StatsPath, resp.StatusCode)
	}
	if n := len(sim.Calls()); n != 3 {
		t.Errorf("%d calls logged, want 3: reading the stats is not a Graph call", n)
	}
}
