// Package metrics owns the worker's Prometheus registry and its admin HTTP
// server (docs/SPEC.md §6, §7): the graphops_ families, the Go and process
// collectors, /metrics, /healthz and /readyz.
//
// It does not decide what is recorded or when: callers report events with the
// label values of docs/SPEC.md §7 (short types, outcomes, dead-letter reasons) and
// this package only counts them. It knows nothing of brokers, Graph or the
// ledger beyond those label values.
package metrics

import (
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/dlq"
)

// Outcomes of a command: the `outcome` label of graphops_commands_total.
const (
	OutcomeApplied      = "applied"
	OutcomeDuplicate    = "duplicate"
	OutcomeDeadLettered = "dead_lettered"
)

// CodeError is the `code` label of graphops_graph_requests_total for a call
// that got no HTTP response (timeout, reset, DNS); otherwise the code is the
// HTTP status as a decimal string ("204", "429").
const CodeError = "error"

// Ledger operations and results pre-created at zero in
// graphops_ledger_operations_total. Callers may record other values; these are
// the ones whose series exist from start-up.
const (
	LedgerOpClaim    = "claim"    // take a command's key, and so its request id, before the Graph call
	LedgerOpRenew    = "renew"    // extend a claim while a command waits
	LedgerOpComplete = "complete" // record the outcome
	LedgerOpRelease  = "release"  // give a key back (hand-back, shutdown)
	LedgerOpRead     = "read"     // look a key up

	LedgerResultOK       = "ok"
	LedgerResultConflict = "conflict"  // lost a create or compare-and-swap race
	LedgerResultNotFound = "not_found" // the key is absent
	LedgerResultError    = "error"     // the store failed
)

// Metric family names. They are part of docs/SPEC.md §7's contract (dashboards,
// alerts and the autoscaler query them); do not rename.
const (
	nameCommands        = "graphops_commands_total"
	nameCommandDuration = "graphops_command_duration_seconds"
	nameGraphRequests   = "graphops_graph_requests_total"
	nameGraphDuration   = "graphops_graph_request_duration_seconds"
	nameThrottled       = "graphops_graph_throttled_total"
	nameRetries         = "graphops_retries_total"
	nameDeadLetters     = "graphops_dead_letters_total"
	nameInFlight        = "graphops_in_flight"
	nameLedgerOps       = "graphops_ledger_operations_total"
	nameLedgerDuration  = "graphops_ledger_operation_duration_seconds"
	namePacerRate       = "graphops_pacer_rate"
	nameThrottledUntil  = "graphops_throttled_until_seconds"
	nameReady           = "graphops_ready"
	nameBacklog         = "graphops_backlog_messages"
	nameOldestAge       = "graphops_oldest_message_age_seconds"
)

// Metrics records the worker's events. Every method is safe for concurrent
// use and cheap enough for the hot path; a nil *Metrics records nothing, so
// packages under test may pass nil.
type Metrics struct {
	reg *prometheus.Registry

	commands        *prometheus.CounterVec
	commandDuration *prometheus.HistogramVec
	graphRequests   *prometheus.CounterVec
	graphDuration   *prometheus.HistogramVec
	throttled       *prometheus.CounterVec
	retries         *prometheus.CounterVec
	deadLetters     *prometheus.CounterVec
	inFlight        *prometheus.GaugeVec
	ledgerOps       *prometheus.CounterVec
	ledgerDuration  *prometheus.HistogramVec
	pacerRate       *prometheus.GaugeVec
	throttledUntil  *waitGauge
	backlog         *optionalGauge
	oldestAge       *optionalGauge

	// ready is the admin server's readiness check, read at scrape time for
	// graphops_ready; nil until NewAdmin attaches one.
	ready atomic.Pointer[func() error]
}

// New returns Metrics on a fresh registry holding the graphops_ families, the
// Go and process collectors, and every series docs/SPEC.md §7 requires at zero.
//
// Pre-created at zero, so that rate(), increase() and alerts see the first
// event (a series born at 1 shows no increase):
//   - per type (resume, role_request_update, unknown): every outcome, every
//     dead-letter reason, in_flight and the command duration histogram. The
//     unknown type can in practice only be dead-lettered as invalid_message;
//     its other series stay at zero, which keeps sum by (type) uniform;
//   - per operation (resume, role_request_update; unknown is not an
//     operation): the duration histogram, throttled, retries, pacer rate,
//     throttled-until, and graph_requests_total for the codes 200, 204, 429,
//     503, 504 and "error" (the successes, the throttles and the network
//     failures that dashboards and alerts select);
//   - the ledger: every LedgerOp* × LedgerResult* and the duration
//     histogram per LedgerOp*;
//   - graphops_ready, 0 until an Admin attaches its readiness check.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: nameCommands,
			Help: "Commands that reached a final outcome (applied, duplicate, dead_lettered), by short type.",
		}, []string{"type", "outcome"}),
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    nameCommandDuration,
			Help:    "Time from receipt of a command to its final outcome, waits and retries included, by short type.",
			Buckets: commandBuckets(),
		}, []string{"type"}),
		graphRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: nameGraphRequests,
			Help: "Microsoft Graph calls by operation and HTTP status code (\"error\" when no response arrived).",
		}, []string{"operation", "code"}),
		graphDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    nameGraphDuration,
			Help:    "Duration of one Microsoft Graph call, from sending the request to reading the response, by operation.",
			Buckets: graphBuckets(),
		}, []string{"operation"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: nameThrottled,
			Help: "Microsoft Graph throttling responses (429, and 503/504 with Retry-After), by operation.",
		}, []string{"operation"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: nameRetries,
			Help: "Re-attempts of a Microsoft Graph call after a throttle, a transient error or a refreshed token, by operation.",
		}, []string{"operation"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: nameDeadLetters,
			Help: "Commands dead-lettered, by short type and reason.",
		}, []string{"type", "reason"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: nameInFlight,
			Help: "Commands received and not yet settled (waits included), by short type.",
		}, []string{"type"}),
		ledgerOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: nameLedgerOps,
			Help: "Idempotency ledger store operations by operation and result (ok, conflict, not_found, error).",
		}, []string{"op", "result"}),
		ledgerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    nameLedgerDuration,
			Help:    "Duration of one idempotency ledger operation, by operation.",
			Buckets: ledgerBuckets(),
		}, []string{"op"}),
		pacerRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: namePacerRate,
			Help: "Calls per second this process currently allows itself, by Graph operation.",
		}, []string{"operation"}),
		throttledUntil: newWaitGauge(prometheus.NewDesc(nameThrottledUntil,
			"Seconds for which calls of the operation are held by a throttle (Retry-After), as announced when the gate closed; 0 when the gate is open.",
			[]string{"operation"}, nil), time.Now),
		backlog: newOptionalGauge(prometheus.NewDesc(nameBacklog,
			"Commands in the source not yet settled (NATS: the consumer's pending plus ack-pending; Service Bus: the entity's active message count). Absent while the source cannot tell.",
			nil, nil)),
		oldestAge: newOptionalGauge(prometheus.NewDesc(nameOldestAge,
			"Age in seconds of the oldest command not yet settled, 0 when there is none (NATS: the first message after the consumer's ack floor; Service Bus: the first peekable message). Absent while the source cannot tell, and on a session-enabled entity.",
			nil, nil)),
	}
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: nameReady,
		Help: "1 when /readyz answers 200 (connected to the broker and the ledger, not draining), else 0.",
	}, m.readyValue)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.commands, m.commandDuration, m.graphRequests, m.graphDuration,
		m.throttled, m.retries, m.deadLetters, m.inFlight,
		m.ledgerOps, m.ledgerDuration, m.pacerRate, m.throttledUntil, ready,
		m.backlog, m.oldestAge,
	)
	m.precreate()
	return m
}

// precreate makes the zero series New documents.
func (m *Metrics) precreate() {
	types := append(command.Types(), command.TypeUnknown)
	for _, t := range types {
		typ := string(t)
		for _, o := range []string{OutcomeApplied, OutcomeDuplicate, OutcomeDeadLettered} {
			m.commands.WithLabelValues(typ, o)
		}
		for _, r := range dlq.Reasons() {
			m.deadLetters.WithLabelValues(typ, string(r))
		}
		m.commandDuration.WithLabelValues(typ)
		m.inFlight.WithLabelValues(typ)
	}
	for _, t := range command.Types() {
		op := string(t)
		for _, code := range []string{"200", "204", "429", "503", "504", CodeError} {
			m.graphRequests.WithLabelValues(op, code)
		}
		m.graphDuration.WithLabelValues(op)
		m.throttled.WithLabelValues(op)
		m.retries.WithLabelValues(op)
		m.pacerRate.WithLabelValues(op)
		m.throttledUntil.set(op, 0)
	}
	for _, op := range []string{LedgerOpClaim, LedgerOpRenew, LedgerOpComplete, LedgerOpRelease, LedgerOpRead} {
		for _, r := range []string{LedgerResultOK, LedgerResultConflict, LedgerResultNotFound, LedgerResultError} {
			m.ledgerOps.WithLabelValues(op, r)
		}
		m.ledgerDuration.WithLabelValues(op)
	}
}

// Bucket layouts. Functions rather than package variables so that no caller
// can change a shared slice.

// commandBuckets spans a duplicate skipped in a millisecond to a command that
// used the whole default retry budget (RETRY_MAX_ELAPSED 10m).
func commandBuckets() []float64 {
	return []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
}

// graphBuckets spans a fast Graph answer to a call cut by a GRAPH_TIMEOUT of
// up to a minute.
func graphBuckets() []float64 {
	return []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
}

// ledgerBuckets starts at 100µs (a local KV round trip) and still goes to a
// minute, so that a store hanging until its timeout is visible rather than
// lumped into +Inf.
func ledgerBuckets() []float64 {
	return []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
}

// Registry returns the registry behind Handler, for tests and for adding
// collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format (OpenMetrics is
// not offered, so every scraper gets the format docs/SPEC.md §6 names). A collector
// failing does not hide the others.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: false,
	})
}

// CommandDone records a command's final outcome (Outcome*) and the time from
// its receipt.
func (m *Metrics) CommandDone(typ, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.commands.WithLabelValues(typ, outcome).Inc()
	m.commandDuration.WithLabelValues(typ).Observe(d.Seconds())
}

// DeadLettered counts one dead letter of type typ for reason (a dlq.Reason).
// The command's outcome is recorded separately with CommandDone.
func (m *Metrics) DeadLettered(typ, reason string) {
	if m == nil {
		return
	}
	m.deadLetters.WithLabelValues(typ, reason).Inc()
}

// InFlight adds delta (+1 on receipt, -1 on settling) to the commands in
// flight of type typ.
func (m *Metrics) InFlight(typ string, delta int) {
	if m == nil {
		return
	}
	m.inFlight.WithLabelValues(typ).Add(float64(delta))
}

// GraphRequest records one Graph call of operation op: code is the HTTP status
// as a decimal string, or CodeError when no response arrived.
func (m *Metrics) GraphRequest(op, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.graphRequests.WithLabelValues(op, code).Inc()
	m.graphDuration.WithLabelValues(op).Observe(d.Seconds())
}

// Throttled counts one throttling response (429, 503/504 with Retry-After).
func (m *Metrics) Throttled(op string) {
	if m == nil {
		return
	}
	m.throttled.WithLabelValues(op).Inc()
}

// Retry counts one re-attempt of a call of operation op.
func (m *Metrics) Retry(op string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(op).Inc()
}

// LedgerOp records one ledger operation (LedgerOp*) with its result
// (LedgerResult*) and duration.
func (m *Metrics) LedgerOp(op, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.ledgerOps.WithLabelValues(op, result).Inc()
	m.ledgerDuration.WithLabelValues(op).Observe(d.Seconds())
}

// SetPacerRate publishes the call rate the pacer currently allows for op.
func (m *Metrics) SetPacerRate(op string, callsPerSecond float64) {
	if m == nil {
		return
	}
	m.pacerRate.WithLabelValues(op).Set(callsPerSecond)
}

// SetThrottledUntil publishes that calls of op are held by a throttle for
// the next seconds seconds (the Retry-After wait, time.Until(gateOpens)); 0
// when the gate is open. The series reads the value as given until that wait
// has passed and 0 after it, so a gate that opens without a call to
// SetThrottledUntil(op, 0) does not look throttled forever to alerts and the
// autoscaler.
func (m *Metrics) SetThrottledUntil(op string, seconds float64) {
	if m == nil {
		return
	}
	m.throttledUntil.set(op, seconds)
}

// SetBacklog publishes graphops_backlog_messages: the commands in the source
// not yet settled. known false removes the series: a source that cannot read
// its backlog (no right to, broker unreachable) must not report a stale or
// made-up number to the autoscaler.
func (m *Metrics) SetBacklog(messages float64, known bool) {
	if m == nil {
		return
	}
	m.backlog.set(messages, known)
}

// SetOldestMessageAge publishes graphops_oldest_message_age_seconds: the age
// of the oldest command not yet settled (0 when there is none). known false
// removes the series, as for SetBacklog.
func (m *Metrics) SetOldestMessageAge(seconds float64, known bool) {
	if m == nil {
		return
	}
	m.oldestAge.set(seconds, known)
}

// setReady makes graphops_ready follow ready (nil: always ready).
func (m *Metrics) setReady(ready func() error) {
	if m == nil {
		return
	}
	if ready == nil {
		ready = func() error { return nil }
	}
	m.ready.Store(&ready)
}

func (m *Metrics) readyValue() float64 {
	f := m.ready.Load()
	if f == nil || (*f)() != nil {
		return 0
	}
	return 1
}

// waitGauge is a gauge vector over one label whose values are waits in
// seconds: a value reads as set until that many seconds after it was set, and
// 0 afterwards.
type waitGauge struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu    sync.Mutex
	waits map[string]wait
}

type wait struct {
	seconds float64
	ends    time.Time
}

func newWaitGauge(desc *prometheus.Desc, now func() time.Time) *waitGauge {
	return &waitGauge{desc: desc, now: now, waits: make(map[string]wait)}
}

func (g *waitGauge) set(label string, seconds float64) {
	var ends time.Time
	if seconds > 0 {
		// Clamp before converting: a huge value must not overflow into the
		// past.
		ends = g.now().Add(time.Duration(min(seconds, maxWaitSeconds) * float64(time.Second)))
	}
	g.mu.Lock()
	g.waits[label] = wait{seconds: seconds, ends: ends}
	g.mu.Unlock()
}

// maxWaitSeconds bounds a wait (about 100 years) so that its end fits in a
// time.Duration.
const maxWaitSeconds = 100 * 365 * 24 * 3600

// Describe implements prometheus.Collector.
func (g *waitGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *waitGauge) Collect(ch chan<- prometheus.Metric) {
	// Copy under the lock and send outside it, so a slow scrape never
	// blocks a caller of set.
	g.mu.Lock()
	snapshot := maps.Clone(g.waits)
	g.mu.Unlock()
	now := g.now()
	for label, w := range snapshot {
		v := w.seconds
		if v <= 0 || !now.Before(w.ends) {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, label)
	}
}

// optionalGauge is a gauge without labels that may be absent: docs/SPEC.md §7's
// source gauges are missing, not 0, when the source cannot tell, so that an
// alert or an autoscaler query never reads "no backlog" from "unknown". It
// starts absent, until the first reading.
type optionalGauge struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	value float64
	known bool
}

func newOptionalGauge(desc *prometheus.Desc) *optionalGauge {
	return &optionalGauge{desc: desc}
}

func (g *optionalGauge) set(v float64, known bool) {
	g.mu.Lock()
	g.value, g.known = v, known
	g.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (g *optionalGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *optionalGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	v, known := g.value, g.known
	g.mu.Unlock()
	if known {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
	}
}
