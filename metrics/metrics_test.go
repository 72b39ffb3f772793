package metrics_test

import (
	"context"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/metrics"
)

// startAdmin serves m on a loopback port for the duration of the test.
func startAdmin(t *testing.T, m *metrics.Metrics, ready func() error) *metrics.Admin {
	t.Helper()
	a := metrics.NewAdmin(metrics.AdminConfig{Addr: "127.0.0.1:0", Ready: ready}, m, nil)
	if err := a.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return a
}

// get fetches path from the admin server and returns status and body.
func get(t *testing.T, a *metrics.Admin, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp.StatusCode, string(body), resp.Header
}

// scrape parses /metrics with Prometheus's own text parser.
func scrape(t *testing.T, a *metrics.Admin) map[string]*dto.MetricFamily {
	t.Helper()
	status, body, header := get(t, a, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", status, body)
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the Prometheus text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// series flattens the graphops_ families into "name{a=x,b=y}" → value; a
// histogram contributes "_count" and "_sum" entries.
func series(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := make(map[string]float64)
	for name, f := range fams {
		if !strings.HasPrefix(name, "graphops_") {
			continue
		}
		for _, m := range f.GetMetric() {
			key := name + labelKey(m)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
				out[key+"_sum"] = m.GetHistogram().GetSampleSum()
			default:
				out[key+"?"] = math.NaN()
			}
		}
	}
	return out
}

func labelKey(m *dto.Metric) string {
	var parts []string
	for _, lp := range m.GetLabel() {
		parts = append(parts, lp.GetName()+"="+lp.GetValue())
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func key(name string, labels ...string) string {
	var parts []string
	for i := 0; i+1 < len(labels); i += 2 {
		parts = append(parts, labels[i]+"="+labels[i+1])
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

var (
	allTypes   = []string{"resume", "role_request_update", "unknown"}
	operations = []string{"resume", "role_request_update"}
	outcomes   = []string{metrics.OutcomeApplied, metrics.OutcomeDuplicate, metrics.OutcomeDeadLettered}
)

func reasons() []string {
	var out []string
	for _, r := range dlq.Reasons() {
		out = append(out, string(r))
	}
	return out
}

func TestLabelValuesAreTheSharedShortTypes(t *testing.T) {
	// The tables below spell the types out; this keeps them honest if
	// internal/command ever changes.
	var got []string
	for _, typ := range command.Types() {
		got = append(got, string(typ))
	}
	got = append(got, string(command.TypeUnknown))
	if !slices.Equal(got, allTypes) {
		t.Fatalf("command types %v, tests assume %v", got, allTypes)
	}
}

func TestEveryFamilyHasItsTypeAndExactlyItsLabels(t *testing.T) {
	fams := scrape(t, startAdmin(t, metrics.New(), nil))
	tests := []struct {
		name   string
		typ    dto.MetricType
		labels []string
	}{
		{"graphops_commands_total", dto.MetricType_COUNTER, []string{"outcome", "type"}},
		{"graphops_command_duration_seconds", dto.MetricType_HISTOGRAM, []string{"type"}},
		{"graphops_graph_requests_total", dto.MetricType_COUNTER, []string{"code", "operation"}},
		{"graphops_graph_request_duration_seconds", dto.MetricType_HISTOGRAM, []string{"operation"}},
		{"graphops_graph_throttled_total", dto.MetricType_COUNTER, []string{"operation"}},
		{"graphops_retries_total", dto.MetricType_COUNTER, []string{"operation"}},
		{"graphops_dead_letters_total", dto.MetricType_COUNTER, []string{"reason", "type"}},
		{"graphops_in_flight", dto.MetricType_GAUGE, []string{"type"}},
		{"graphops_ledger_operations_total", dto.MetricType_COUNTER, []string{"op", "result"}},
		{"graphops_ledger_operation_duration_seconds", dto.MetricType_HISTOGRAM, []string{"op"}},
		{"graphops_pacer_rate", dto.MetricType_GAUGE, []string{"operation"}},
		{"graphops_throttled_until_seconds", dto.MetricType_GAUGE, []string{"operation"}},
		{"graphops_ready", dto.MetricType_GAUGE, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is a "+tt.typ.String()+" labelled "+strings.Join(tt.labels, ","), func(t *testing.T) {
			f, ok := fams[tt.name]
			if !ok {
				t.Fatalf("family %s missing from /metrics", tt.name)
			}
			if f.GetType() != tt.typ {
				t.Errorf("type %v, want %v", f.GetType(), tt.typ)
			}
			if f.GetHelp() == "" {
				t.Errorf("no HELP text")
			}
			for _, m := range f.GetMetric() {
				var names []string
				for _, lp := range m.GetLabel() {
					names = append(names, lp.GetName())
				}
				sort.Strings(names)
				if !slices.Equal(names, tt.labels) {
					t.Errorf("series %s has labels %v, want exactly %v", labelKey(m), names, tt.labels)
				}
			}
		})
	}
}

func TestRequiredSeriesExistAtZeroFromStartUp(t *testing.T) {
	got := series(scrape(t, startAdmin(t, metrics.New(), nil)))

	var want []string
	for _, typ := range allTypes {
		for _, o := range outcomes {
			want = append(want, key("graphops_commands_total", "type", typ, "outcome", o))
		}
		for _, r := range reasons() {
			want = append(want, key("graphops_dead_letters_total", "type", typ, "reason", r))
		}
		want = append(want,
			key("graphops_in_flight", "type", typ),
			key("graphops_command_duration_seconds", "type", typ)+"_count")
	}
	for _, op := range operations {
		for _, code := range []string{"200", "204", "429", "503", "504", "error"} {
			want = append(want, key("graphops_graph_requests_total", "operation", op, "code", code))
		}
		want = append(want,
			key("graphops_graph_request_duration_seconds", "operation", op)+"_count",
			key("graphops_graph_throttled_total", "operation", op),
			key("graphops_retries_total", "operation", op),
			key("graphops_pacer_rate", "operation", op),
			key("graphops_throttled_until_seconds", "operation", op))
	}
	for _, op := range []string{"claim", "renew", "complete", "release", "read"} {
		for _, r := range []string{"ok", "conflict", "not_found", "error"} {
			want = append(want, key("graphops_ledger_operations_total", "op", op, "result", r))
		}
		want = append(want, key("graphops_ledger_operation_duration_seconds", "op", op)+"_count")
	}
	for _, k := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("series %s missing at start-up", k)
			continue
		}
		if v != 0 {
			t.Errorf("series %s = %v at start-up, want 0", k, v)
		}
	}
	// Nothing is non-zero before the first event (graphops_ready follows
	// the admin server's check, which is nil here: always ready).
	for k, v := range got {
		if v != 0 && k != key("graphops_ready") {
			t.Errorf("series %s = %v at start-up, want 0", k, v)
		}
	}
	// "unknown" is a type but not an operation.
	for k := range got {
		if strings.Contains(k, "operation=unknown") {
			t.Errorf("series %s: unknown is not a Graph operation", k)
		}
	}
}

func TestReadyIsZeroUntilAnAdminServerReportsReady(t *testing.T) {
	m := metrics.New()
	readyValue := func() float64 {
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatalf("Gather: %v", err)
		}
		for _, f := range fams {
			if f.GetName() == "graphops_ready" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("graphops_ready not gathered")
		return 0
	}
	if v := readyValue(); v != 0 {
		t.Errorf("graphops_ready = %v with no admin server, want 0", v)
	}
	metrics.NewAdmin(metrics.AdminConfig{Ready: func() error { return nil }}, m, nil)
	if v := readyValue(); v != 1 {
		t.Errorf("graphops_ready = %v with a passing check, want 1", v)
	}
}

func TestRecordingChangesExactlyTheNamedSeries(t *testing.T) {
	tests := []struct {
		name   string
		record func(m *metrics.Metrics)
		want   map[string]float64 // series whose value changes, to this value
	}{
		{
			name:   "an applied resume counts once and observes its duration",
			record: func(m *metrics.Metrics) { m.CommandDone("resume", metrics.OutcomeApplied, 1500*time.Millisecond) },
			want: map[string]float64{
				key("graphops_commands_total", "type", "resume", "outcome", "applied"): 1,
				key("graphops_command_duration_seconds", "type", "resume") + "_count":  1,
				key("graphops_command_duration_seconds", "type", "resume") + "_sum":    1.5,
			},
		},
		{
			name: "a duplicate and a dead letter of another type land on their own series",
			record: func(m *metrics.Metrics) {
				m.CommandDone("role_request_update", metrics.OutcomeDuplicate, 2*time.Millisecond)
				m.CommandDone("unknown", metrics.OutcomeDeadLettered, 3*time.Millisecond)
			},
			want: map[string]float64{
				key("graphops_commands_total", "type", "role_request_update", "outcome", "duplicate"): 1,
				key("graphops_command_duration_seconds", "type", "role_request_update") + "_count":    1,
				key("graphops_command_duration_seconds", "type", "role_request_update") + "_sum":      0.002,
				key("graphops_commands_total", "type", "unknown", "outcome", "dead_lettered"):         1,
				key("graphops_command_duration_seconds", "type", "unknown") + "_count":                1,
				key("graphops_command_duration_seconds", "type", "unknown") + "_sum":                  0.003,
			},
		},
		{
			name: "a dead letter counts by type and reason only",
			record: func(m *metrics.Metrics) {
				m.DeadLettered("unknown", string(dlq.ReasonInvalidMessage))
				m.DeadLettered("resume", string(dlq.ReasonConflict))
				m.DeadLettered("resume", string(dlq.ReasonConflict))
			},
			want: map[string]float64{
				key("graphops_dead_letters_total", "type", "unknown", "reason", "invalid_message"): 1,
				key("graphops_dead_letters_total", "type", "resume", "reason", "conflict"):         2,
			},
		},
		{
			name: "in-flight goes up on receipt and down on settling",
			record: func(m *metrics.Metrics) {
				m.InFlight("resume", 1)
				m.InFlight("resume", 1)
				m.InFlight("resume", -1)
				m.InFlight("unknown", 1)
			},
			want: map[string]float64{
				key("graphops_in_flight", "type", "resume"):  1,
				key("graphops_in_flight", "type", "unknown"): 1,
			},
		},
		{
			name: "a Graph call counts by operation and code and observes its duration",
			record: func(m *metrics.Metrics) {
				m.GraphRequest("resume", "204", 250*time.Millisecond)
				m.GraphRequest("role_request_update", metrics.CodeError, 30*time.Second)
				m.GraphRequest("role_request_update", "502", time.Second)
			},
			want: map[string]float64{
				key("graphops_graph_requests_total", "operation", "resume", "code", "204"):                    1,
				key("graphops_graph_request_duration_seconds", "operation", "resume") + "_count":              1,
				key("graphops_graph_request_duration_seconds", "operation", "resume") + "_sum":                0.25,
				key("graphops_graph_requests_total", "operation", "role_request_update", "code", "error"):     1,
				key("graphops_graph_requests_total", "operation", "role_request_update", "code", "502"):       1,
				key("graphops_graph_request_duration_seconds", "operation", "role_request_update") + "_count": 2,
				key("graphops_graph_request_duration_seconds", "operation", "role_request_update") + "_sum":   31,
			},
		},
		{
			name: "a throttle and a retry count for their operation only",
			record: func(m *metrics.Metrics) {
				m.Throttled("resume")
				m.Retry("resume")
				m.Retry("role_request_update")
			},
			want: map[string]float64{
				key("graphops_graph_throttled_total", "operation", "resume"):      1,
				key("graphops_retries_total", "operation", "resume"):              1,
				key("graphops_retries_total", "operation", "role_request_update"): 1,
			},
		},
		{
			name: "a ledger operation counts by op and result and observes its duration by op",
			record: func(m *metrics.Metrics) {
				m.LedgerOp(metrics.LedgerOpClaim, metrics.LedgerResultConflict, 2*time.Millisecond)
			},
			want: map[string]float64{
				key("graphops_ledger_operations_total", "op", "claim", "result", "conflict"): 1,
				key("graphops_ledger_operation_duration_seconds", "op", "claim") + "_count":  1,
				key("graphops_ledger_operation_duration_seconds", "op", "claim") + "_sum":    0.002,
			},
		},
		{
			name:   "the pacer rate is set, not added",
			record: func(m *metrics.Metrics) { m.SetPacerRate("resume", 40); m.SetPacerRate("resume", 12.5) },
			want:   map[string]float64{key("graphops_pacer_rate", "operation", "resume"): 12.5},
		},
		{
			name:   "a throttle holding an operation for 30s reads 30 for that operation only",
			record: func(m *metrics.Metrics) { m.SetThrottledUntil("role_request_update", 30) },
			want:   map[string]float64{key("graphops_throttled_until_seconds", "operation", "role_request_update"): 30},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			a := startAdmin(t, m, nil)
			before := series(scrape(t, a))
			tt.record(m)
			after := series(scrape(t, a))

			changed := make(map[string]float64)
			for k, v := range after {
				if b, ok := before[k]; !ok || b != v {
					changed[k] = v
				}
			}
			for k := range before {
				if _, ok := after[k]; !ok {
					t.Errorf("series %s disappeared", k)
				}
			}
			for k, v := range tt.want {
				if got, ok := changed[k]; !ok {
					t.Errorf("series %s did not change, want %v", k, v)
				} else if math.Abs(got-v) > 1e-9 {
					t.Errorf("series %s = %v, want %v", k, got, v)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(changed)) {
				if _, ok := tt.want[k]; !ok {
					t.Errorf("series %s changed to %v, and should not have", k, changed[k])
				}
			}
		})
	}
}

func TestThrottledUntilReadsZeroWhenTheGateOpens(t *testing.T) {
	m := metrics.New()
	a := startAdmin(t, m, nil)
	m.SetThrottledUntil("resume", 30)
	m.SetThrottledUntil("role_request_update", 30)
	m.SetThrottledUntil("resume", 0)

	got := series(scrape(t, a))
	if v := got[key("graphops_throttled_until_seconds", "operation", "resume")]; v != 0 {
		t.Errorf("a gate that opened reads %v, want 0", v)
	}
	if v := got[key("graphops_throttled_until_seconds", "operation", "role_request_update")]; v != 30 {
		t.Errorf("a gate closed for 30s reads %v, want 30", v)
	}
}

func TestHistogramBucketsCoverMillisecondsToMinutes(t *testing.T) {
	fams := scrape(t, startAdmin(t, metrics.New(), nil))
	for _, name := range []string{
		"graphops_command_duration_seconds",
		"graphops_graph_request_duration_seconds",
		"graphops_ledger_operation_duration_seconds",
	} {
		t.Run(name+" spans at most 1ms to at least 60s", func(t *testing.T) {
			f := fams[name]
			if f == nil || len(f.GetMetric()) == 0 {
				t.Fatalf("family %s has no series", name)
			}
			var bounds []float64
			for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
				if !math.IsInf(b.GetUpperBound(), +1) {
					bounds = append(bounds, b.GetUpperBound())
				}
			}
			if len(bounds) == 0 {
				t.Fatal("no finite buckets")
			}
			if lo := slices.Min(bounds); lo > 0.001 {
				t.Errorf("smallest bucket %vs, want ≤ 0.001s", lo)
			}
			if hi := slices.Max(bounds); hi < 60 {
				t.Errorf("largest bucket %vs, want ≥ 60s", hi)
			}
		})
	}
	t.Run("command durations reach the default 10m retry budget", func(t *testing.T) {
		var hi float64
		for _, b := range fams["graphops_command_duration_seconds"].GetMetric()[0].GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), +1) {
				hi = max(hi, b.GetUpperBound())
			}
		}
		if hi < 600 {
			t.Errorf("largest bucket %vs, want ≥ 600s", hi)
		}
	})
}

func TestGoAndProcessCollectorsAreRegistered(t *testing.T) {
	fams := scrape(t, startAdmin(t, metrics.New(), nil))
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("family %s missing", name)
		}
	}
}

func TestRecordingIsSafeForConcurrentUse(t *testing.T) {
	m := metrics.New()
	const goroutines, each = 8, 250
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			op := operations[g%len(operations)]
			for range each {
				m.InFlight("resume", 1)
				m.GraphRequest(op, "204", time.Millisecond)
				m.SetThrottledUntil(op, 0)
				m.SetPacerRate(op, float64(g))
				m.CommandDone("resume", metrics.OutcomeApplied, time.Millisecond)
				m.InFlight("resume", -1)
			}
		})
	}
	wg.Wait()

	got := series(scrape(t, startAdmin(t, m, nil)))
	if v := got[key("graphops_commands_total", "type", "resume", "outcome", "applied")]; v != goroutines*each {
		t.Errorf("applied = %v, want %d", v, goroutines*each)
	}
	if v := got[key("graphops_in_flight", "type", "resume")]; v != 0 {
		t.Errorf("in flight = %v after every command settled, want 0", v)
	}
	total := got[key("graphops_graph_requests_total", "operation", "resume", "code", "204")] +
		got[key("graphops_graph_requests_total", "operation", "role_request_update", "code", "204")]
	if total != goroutines*each {
		t.Errorf("Graph requests = %v, want %d", total, goroutines*each)
	}
}

func TestANilMetricsRecordsNothingAndDoesNotPanic(t *testing.T) {
	var m *metrics.Metrics
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("recording on a nil *Metrics panicked: %v", r)
		}
	}()
	m.CommandDone("resume", metrics.OutcomeApplied, time.Second)
	m.DeadLettered("resume", "expired")
	m.InFlight("resume", 1)
	m.GraphRequest("resume", "204", time.Second)
	m.Throttled("resume")
	m.Retry("resume")
	m.LedgerOp("claim", "ok", time.Millisecond)
	m.SetPacerRate("resume", 1)
	m.SetThrottledUntil("resume", 1)
}

func TestHandlerServesTheRegistryInTextFormat(t *testing.T) {
	// Handler is also usable on its own (e.g. mounted elsewhere): it serves
	// exactly what Registry gathers.
	m := metrics.New()
	m.Retry("resume")
	gathered, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var names []string
	for _, f := range gathered {
		if strings.HasPrefix(f.GetName(), "graphops_") {
			names = append(names, f.GetName())
		}
	}
	fams := scrape(t, startAdmin(t, m, nil))
	for _, n := range names {
		if _, ok := fams[n]; !ok {
			t.Errorf("family %s gathered but not served", n)
		}
	}
	if v := series(fams)[key("graphops_retries_total", "operation", "resume")]; v != 1 {
		t.Errorf("served retries = %v, want 1", v)
	}
	if len(names) != 13 {
		t.Errorf("gathered %d graphops_ families %v, want 13", len(names), names)
	}
}

func TestSourceGaugesAreAbsentUntilKnownAndAbsentAgainWhenUnknown(t *testing.T) {
	m := metrics.New()
	a := startAdmin(t, m, nil)
	const backlog, oldest = "graphops_backlog_messages", "graphops_oldest_message_age_seconds"
	read := func() map[string]float64 { return series(scrape(t, a)) }

	steps := []struct {
		name                  string
		do                    func()
		wantBacklog, wantOld  float64
		hasBacklog, hasOldest bool
	}{
		{"absent before the first reading", func() {}, 0, 0, false, false},
		{"both known", func() { m.SetBacklog(42, true); m.SetOldestMessageAge(7.5, true) }, 42, 7.5, true, true},
		{"an empty source reads 0, not absent", func() { m.SetBacklog(0, true); m.SetOldestMessageAge(0, true) }, 0, 0, true, true},
		{"the oldest unknown (a session entity) leaves the backlog", func() { m.SetBacklog(3, true); m.SetOldestMessageAge(0, false) }, 3, 0, true, false},
		{"the backlog unknown (no right to read it)", func() { m.SetBacklog(99, false) }, 0, 0, false, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			got := read()
			v, ok := got[key(backlog)]
			if ok != st.hasBacklog || v != st.wantBacklog {
				t.Errorf("%s = %v (present %v), want %v (present %v)", backlog, v, ok, st.wantBacklog, st.hasBacklog)
			}
			v, ok = got[key(oldest)]
			if ok != st.hasOldest || v != st.wantOld {
				t.Errorf("%s = %v (present %v), want %v (present %v)", oldest, v, ok, st.wantOld, st.hasOldest)
			}
		})
	}
	m.SetBacklog(1, true)
	fams := scrape(t, a)
	if f := fams[backlog]; f == nil || f.GetType() != dto.MetricType_GAUGE || len(f.GetMetric()[0].GetLabel()) != 0 {
		t.Errorf("%s must be an unlabelled gauge, got %v", backlog, f)
	}
}
