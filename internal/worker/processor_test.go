package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/memstore"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
)

// Unit tests of the processor's edges with fakes; the whole flow against
// real JetStream and HTTP is tested in internal/app and internal/e2e.

// memStore is the in-memory ledger.Store (ledger/memstore, which passes
// the store conformance suite), counting its reads.
type memStore struct {
	*memstore.Store
	gets, updates atomic.Int64
}

func newMemStore() *memStore { return &memStore{Store: memstore.New(0)} }

func (s *memStore) Get(ctx context.Context, k string) (ledger.Entry, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, k)
}

func (s *memStore) Update(ctx context.Context, k string, v []byte, rev uint64, ttl time.Duration) (uint64, error) {
	s.updates.Add(1)
	return s.Store.Update(ctx, k, v, rev, ttl)
}

// fakeMsg is one delivery.
type fakeMsg struct {
	data     []byte
	delivery int
	last     bool
	headers  map[string]string

	mu         sync.Mutex
	acked      int
	keepAlives int
	handedBack []time.Duration
	ackErr     error
	inOrder    bool
	// dead is where DeadLetter stores (a message without one cannot be
	// dead-lettered).
	dead *fakeDLQ
}

func (m *fakeMsg) InOrder() bool { return m.inOrder }

// DeadLetter stores e as the adapters do (the original bytes and subject
// filled in) and settles the message.
func (m *fakeMsg) DeadLetter(_ context.Context, e dlq.Entry) error {
	if m.dead == nil {
		return errors.New("no dead-letter store")
	}
	e.Payload, e.OriginalSubject = m.data, m.Subject()
	if err := m.dead.put(e); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked++
	return nil
}

func (m *fakeMsg) Data() []byte           { return m.data }
func (m *fakeMsg) Subject() string        { return "graphops.commands.resume" }
func (m *fakeMsg) Header(k string) string { return m.headers[k] }
func (m *fakeMsg) Delivery() int          { return m.delivery }
func (m *fakeMsg) Last() bool             { return m.last }
func (m *fakeMsg) ID() string             { return "7" }
func (m *fakeMsg) KeepAlive(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keepAlives++
	return nil
}
func (m *fakeMsg) Ack(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked++
	return m.ackErr
}
func (m *fakeMsg) HandBack(_ context.Context, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handedBack = append(m.handedBack, d)
	return nil
}

// fakeGraph answers writes from a script of errors (nil = 204).
type fakeGraph struct {
	mu          sync.Mutex
	script      []error
	writes      int
	reads       int
	readAt      []time.Time
	readErrs    []error // the next reads' errors, in order
	status      string  // callout instance status the read reports
	delay       time.Duration
	inFlight    int
	maxInFlight int
	onCall      func() // runs at each write call, before its answer
}

func (g *fakeGraph) next() error {
	if g.onCall != nil {
		g.onCall()
	}
	g.mu.Lock()
	g.inFlight++
	g.maxInFlight = max(g.maxInFlight, g.inFlight)
	g.mu.Unlock()
	time.Sleep(g.delay)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	g.writes++
	if len(g.script) == 0 {
		return nil
	}
	err := g.script[0]
	g.script = g.script[1:]
	return err
}

func (g *fakeGraph) Resume(context.Context, string, []byte, map[string]string) (graphops.Result, error) {
	if err := g.next(); err != nil {
		return graphops.Result{}, err
	}
	return graphops.Result{Status: 204, GraphRequestID: "g-" + strconv.Itoa(g.writes), ClientRequestID: "c-" + strconv.Itoa(g.writes)}, nil
}

func (g *fakeGraph) UpdateRoleRequest(context.Context, string, string, []byte, map[string]string) (graphops.Result, error) {
	if err := g.next(); err != nil {
		return graphops.Result{}, err
	}
	return graphops.Result{Status: 200}, nil
}

func (g *fakeGraph) GetAssignmentRequest(_ context.Context, id string) (graphops.AssignmentRequest, graphops.Result, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reads++
	g.readAt = append(g.readAt, time.Now())
	if len(g.readErrs) > 0 {
		err := g.readErrs[0]
		g.readErrs = g.readErrs[1:]
		return graphops.AssignmentRequest{}, graphops.Result{}, err
	}
	return graphops.AssignmentRequest{ID: id, CalloutInstances: []graphops.CalloutInstance{
		{ID: "957d0c50-466b-4840-bb5b-c92cea7141ff", Status: g.status}}}, graphops.Result{Status: 200}, nil
}

func (g *fakeGraph) InvalidateToken() {}

type fakeDLQ struct {
	mu      sync.Mutex
	entries []dlq.Entry
	fail    error
}

func (d *fakeDLQ) put(e dlq.Entry) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	d.entries = append(d.entries, e)
	return nil
}

type rig struct {
	store   *memStore
	graph   *fakeGraph
	dead    *fakeDLQ
	settled []worker.Settled
	proc    *worker.Processor
	drain   context.CancelFunc
}

func newRig(t *testing.T, cfg worker.Config) *rig {
	t.Helper()
	r := &rig{store: newMemStore(), graph: &fakeGraph{status: graphops.StatusWaitingForCallback}, dead: &fakeDLQ{}}
	led, err := ledger.New(r.store, ledger.Config{Owner: "test", Lease: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	drain, cancel := context.WithCancel(context.Background())
	r.drain = cancel
	t.Cleanup(cancel)
	var mu sync.Mutex
	if cfg.KeepAliveEvery == 0 {
		cfg.KeepAliveEvery = time.Second
	}
	r.proc = mustNew(t, cfg, worker.Deps{Graph: r.graph, Ledger: led, Metrics: metrics.New(),
		OnSettled: func(s worker.Settled) { mu.Lock(); r.settled = append(r.settled, s); mu.Unlock() }},
		drain, context.Background())
	return r
}

// handle hands m, which dead-letters into the rig's store, to the processor.
func (r *rig) handle(m *fakeMsg) {
	m.dead = r.dead
	r.proc.Handle(m)
}

func seed(t testing.TB) []byte {
	t.Helper()
	return command.Examples()[0].Data // Microsoft's resume example 1
}

func throttle(after time.Duration) error {
	return &graphops.Error{Operation: graphops.OpResume, Status: 429, Code: "TooManyRequests", RetryAfter: after, HasRetryAfter: true}
}

func TestALongThrottleIsHandedBackUnlessItIsTheLastDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := worker.Config{HandbackAfter: 100 * time.Millisecond}

		r := newRig(t, cfg)
		r.graph.script = []error{throttle(400 * time.Millisecond)}
		m := &fakeMsg{data: seed(t), delivery: 1}
		r.handle(m)
		if m.acked != 0 || len(m.handedBack) != 1 || m.handedBack[0] < 300*time.Millisecond {
			t.Fatalf("acked %d, handed back %v: want one hand-back of about the Retry-After", m.acked, m.handedBack)
		}
		if r.graph.writes != 1 || len(r.settled) != 0 {
			t.Fatalf("writes %d, settled %v", r.graph.writes, r.settled)
		}

		r = newRig(t, cfg)
		r.graph.script = []error{throttle(400 * time.Millisecond)}
		last := &fakeMsg{data: seed(t), delivery: 5, last: true}
		start := time.Now()
		r.handle(last)
		if len(last.handedBack) != 0 || last.acked != 1 || r.graph.writes != 2 {
			t.Fatalf("last delivery: handed back %v, acked %d, writes %d: want it waited in place and applied",
				last.handedBack, last.acked, r.graph.writes)
		}
		if time.Since(start) < 400*time.Millisecond {
			t.Fatal("the last delivery did not wait out the Retry-After")
		}
		if len(r.settled) != 1 || r.settled[0].Outcome != metrics.OutcomeApplied {
			t.Fatalf("settled %+v", r.settled)
		}
	})
}

func TestADrainDuringTheLastDeliveryDeadLettersInsteadOfDroppingIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{HandbackAfter: time.Minute})
		r.graph.script = []error{throttle(20 * time.Second)}
		m := &fakeMsg{data: seed(t), delivery: 50, last: true}
		go func() { time.Sleep(200 * time.Millisecond); r.drain() }()
		r.handle(m)
		if len(r.dead.entries) != 1 || r.dead.entries[0].Reason != dlq.ReasonRetriesExhausted || m.acked != 1 {
			t.Fatalf("dead letters %+v, acked %d: want retries_exhausted and an ack", r.dead.entries, m.acked)
		}
		if len(m.handedBack) != 0 {
			t.Fatal("the last delivery was handed back: the broker would drop it")
		}
	})
}

func TestAnUnreachableLedgerHandsTheMessageBackWithoutACall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{})
		r.store.Fail(errors.New("connection refused"))
		m := &fakeMsg{data: seed(t), delivery: 1}
		r.handle(m)
		if r.graph.writes != 0 || m.acked != 0 || len(m.handedBack) != 1 {
			t.Fatalf("writes %d acked %d handed back %v", r.graph.writes, m.acked, m.handedBack)
		}
	})
}

func TestAnUnreachableDeadLetterStoreNeverAcksTheMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{BackoffMax: 50 * time.Millisecond})
		r.dead.fail = errors.New("stream unavailable")
		m := &fakeMsg{data: []byte("not json"), delivery: 1}
		r.handle(m)
		if m.acked != 0 || len(m.handedBack) != 1 {
			t.Fatalf("acked %d handed back %v: the message must go back, not be lost", m.acked, m.handedBack)
		}
	})
}

func TestAFailedAckAfterApplyingLeavesARedeliveryToBeADuplicate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{})
		first := &fakeMsg{data: seed(t), delivery: 1, ackErr: errors.New("connection closed")}
		r.handle(first)
		again := &fakeMsg{data: seed(t), delivery: 2}
		r.handle(again)
		if r.graph.writes != 1 || again.acked != 1 {
			t.Fatalf("writes %d, redelivery acked %d", r.graph.writes, again.acked)
		}
		if len(r.settled) != 2 || r.settled[1].Outcome != metrics.OutcomeDuplicate {
			t.Fatalf("settled %+v: want applied then duplicate", r.settled)
		}
	})
}

func TestATakenOverResumeIsReconciledFromTheCalloutStatus(t *testing.T) {
	cases := []struct {
		status     string
		wantWrites int
		want       string
		reason     dlq.Reason
	}{
		{graphops.StatusWaitingForCallback, 1, metrics.OutcomeApplied, ""},
		{graphops.StatusCallbackReceived, 0, metrics.OutcomeApplied, ""},
		{graphops.StatusCallbackTimedOut, 0, metrics.OutcomeDeadLettered, dlq.ReasonExpired},
	}
	for _, tc := range cases {
		t.Run(tc.status, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const settle = 20 * time.Second // under the hand-back threshold: waited in place
				r := newRig(t, worker.Config{SettleAfterNoAnswer: settle})
				r.graph.status = tc.status
				// A claim left behind by a replica that died, with a lease
				// that has run out.
				led, _ := ledger.New(r.store, ledger.Config{Owner: "dead", Lease: time.Millisecond})
				cmd, err := command.Parse(seed(t), command.Options{})
				if err != nil {
					t.Fatal(err)
				}
				id := ledger.Identity{Source: cmd.Source, ID: cmd.ID, BodyHash: cmd.BodyHash,
					Request: "resume:0e60f18c-b2a0-4887-9da8-da2e30a39d99", // as identityOf derives it
					Key:     ledger.KeyOf("callout", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", "957d0c50-466b-4840-bb5b-c92cea7141ff")}
				if _, _, err := led.Begin(context.Background(), id, false); err != nil {
					t.Fatal(err)
				}
				leaseEnd := time.Now().Add(time.Millisecond)
				time.Sleep(5 * time.Millisecond)
				m := &fakeMsg{data: seed(t), delivery: 2}
				r.handle(m)
				if r.graph.reads != 1 || r.graph.writes != tc.wantWrites {
					t.Fatalf("reads %d writes %d, want 1 read and %d writes", r.graph.reads, r.graph.writes, tc.wantWrites)
				}
				// The dead owner may have started a write until its lease
				// ended, unrecorded: the read waits settle after.
				if earliest := leaseEnd.Add(settle); r.graph.readAt[0].Before(earliest) {
					t.Errorf("read at %v, want no sooner than %v (settle after the last write the dead owner could start)",
						r.graph.readAt[0].Sub(leaseEnd), earliest.Sub(leaseEnd))
				}
				if len(r.settled) != 1 || r.settled[0].Outcome != tc.want || r.settled[0].Reason != string(tc.reason) {
					t.Fatalf("settled %+v", r.settled)
				}
			})
		})
	}
}

// TestLeasesAreRenewedWhileAGraphCallRunsAndNotAfter: a call that takes
// ten renewal periods keeps the ledger claim alive all along, and the
// renewals stop with the job (the timer is stopped, not left running). The
// broker's lock is the consumer runner's: the worker never renews it.
func TestLeasesAreRenewedWhileAGraphCallRunsAndNotAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{KeepAliveEvery: 10 * time.Millisecond})
		r.graph.delay = 100 * time.Millisecond
		m := &fakeMsg{data: seed(t), delivery: 1}
		r.handle(m)
		// The claim and the outcome are two writes; the rest are renewals.
		during := r.store.updates.Load() - 1
		if m.acked != 1 {
			t.Fatalf("acked %d times, want 1", m.acked)
		}
		if during < 5 {
			t.Errorf("%d claim renewals during a call of 10 renewal periods, want about 10", during)
		}
		time.Sleep(50 * time.Millisecond)
		if after := r.store.updates.Load() - 1; after != during {
			t.Errorf("renewals went on after the job ended: %d, then %d", during, after)
		}
		if m.keepAlives != 0 {
			t.Errorf("the worker renewed the broker's lock %d times: that is the runner's", m.keepAlives)
		}
	})
}

func rejected404() error {
	return &graphops.Error{Operation: graphops.OpResume, Status: 404, Code: "ResourceNotFound",
		GraphRequestID: "g-404", ClientRequestID: "c-404"}
}

// withField returns the command with a top-level field replaced.
func withField(t *testing.T, raw []byte, k string, v any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m[k] = v
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeEvent(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// roleUpdate is the SPEC's role request update.
func roleUpdate(t *testing.T) []byte {
	t.Helper()
	for _, e := range command.Examples() {
		if e.Name == "role-request-update-spec" {
			return e.Data
		}
	}
	t.Fatal("no role request update example")
	return nil
}

func TestARetiredRoleRequestAPIIsDeadLetteredSayingSoAndTheAttemptIsInTheHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, worker.Config{})
		gone := &graphops.Error{Operation: graphops.OpRoleRequestUpdate, Status: 400, Code: "BadRequest",
			Message: "Resource not found for the segment 'privilegedAccess'.", GraphRequestID: "g-gone", ClientRequestID: "crid-gone"}
		r.graph.script = []error{gone}
		m := &fakeMsg{data: roleUpdate(t), delivery: 1}
		r.handle(m)
		if len(r.dead.entries) != 1 || m.acked != 1 {
			t.Fatalf("dead letters %+v, acked %d", r.dead.entries, m.acked)
		}
		e := r.dead.entries[0]
		if e.Reason != dlq.ReasonGraphRejected || !strings.HasPrefix(e.Description, graphops.RoleRequestRetired) ||
			!strings.Contains(e.Description, "g-gone") {
			t.Errorf("dead letter %s %q: want graph_rejected saying the API is retired, with Graph's answer", e.Reason, e.Description)
		}
		found, err := ledger.ByCommandID(context.Background(), r.store, e.CommandID)
		if err != nil || len(found) != 1 {
			t.Fatalf("ledger has %+v (%v)", found, err)
		}
		h := found[0].Record.History
		if len(h) != 1 || h[0].GraphStatus != 400 || h[0].GraphRequestID != "g-gone" || h[0].ClientRequestID != "crid-gone" || h[0].GraphCode != "BadRequest" {
			t.Errorf("history %+v: want the one refused attempt", h)
		}

		// A resume refused with the same words is not about the retired API.
		r = newRig(t, worker.Config{})
		r.graph.script = []error{gone}
		r.handle(&fakeMsg{data: seed(t), delivery: 1})
		if len(r.dead.entries) != 1 || strings.Contains(r.dead.entries[0].Description, "retired") {
			t.Errorf("resume dead letter %+v: must not blame the PIM retirement", r.dead.entries)
		}
	})
}

// mustNew is worker.New, failing the test on a configuration error.
func mustNew(t testing.TB, cfg worker.Config, d worker.Deps, drain, stop context.Context) *worker.Processor {
	t.Helper()
	p, err := worker.New(cfg, d, drain, stop)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
