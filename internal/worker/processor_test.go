package worker_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
)

// Unit tests of the processor's edges with fakes; the whole flow against
// real JetStream and HTTP is tested in internal/app and internal/e2e.

// memStore is an in-memory ledger.Store.
type memStore struct {
	mu   sync.Mutex
	m    map[string]ledger.Entry
	rev  uint64
	fail error
}

func newMemStore() *memStore { return &memStore{m: map[string]ledger.Entry{}} }

func (s *memStore) Get(_ context.Context, k string) (ledger.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return ledger.Entry{}, s.fail
	}
	e, ok := s.m[k]
	if !ok {
		return e, ledger.ErrNotFound
	}
	return e, nil
}

func (s *memStore) Create(_ context.Context, k string, v []byte, _ time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	if _, ok := s.m[k]; ok {
		return 0, ledger.ErrExists
	}
	s.rev++
	s.m[k] = ledger.Entry{Value: v, Revision: s.rev}
	return s.rev, nil
}

func (s *memStore) Update(_ context.Context, k string, v []byte, rev uint64, _ time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	if e, ok := s.m[k]; !ok || e.Revision != rev {
		return 0, ledger.ErrConflict
	}
	s.rev++
	s.m[k] = ledger.Entry{Value: v, Revision: s.rev}
	return s.rev, nil
}

func (s *memStore) Delete(_ context.Context, k string, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[k]; ok {
		if e.Revision != rev {
			return ledger.ErrConflict
		}
		delete(s.m, k)
	}
	return nil
}

// fakeMsg is one delivery.
type fakeMsg struct {
	data     []byte
	delivery int
	last     bool

	mu         sync.Mutex
	acked      int
	keepAlives int
	handedBack []time.Duration
	ackErr     error
}

func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Subject() string      { return "graphops.commands.resume" }
func (m *fakeMsg) Header(string) string { return "" }
func (m *fakeMsg) Delivery() int        { return m.delivery }
func (m *fakeMsg) Last() bool           { return m.last }
func (m *fakeMsg) ID() string           { return "7" }
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
	mu     sync.Mutex
	script []error
	writes int
	reads  int
	status string // callout instance status the read reports
	delay  time.Duration
}

func (g *fakeGraph) next() error {
	time.Sleep(g.delay)
	g.mu.Lock()
	defer g.mu.Unlock()
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
	return graphops.Result{Status: 204, GraphRequestID: "g-" + strconv.Itoa(g.writes)}, nil
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
	return graphops.AssignmentRequest{ID: id, CalloutInstances: []graphops.CalloutInstance{
		{ID: "957d0c50-466b-4840-bb5b-c92cea7141ff", Status: g.status}}}, graphops.Result{Status: 200}, nil
}

func (g *fakeGraph) InvalidateToken() {}

type fakeDLQ struct {
	mu      sync.Mutex
	entries []dlq.Entry
	fail    error
}

func (d *fakeDLQ) Put(_ context.Context, e dlq.Entry, _ string) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return 0, d.fail
	}
	d.entries = append(d.entries, e)
	return uint64(len(d.entries)), nil
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
	r.proc = mustProcessor(t, cfg, worker.Deps{Graph: r.graph, Ledger: led, DeadLetters: r.dead, Metrics: metrics.New(),
		OnSettled: func(s worker.Settled) { mu.Lock(); r.settled = append(r.settled, s); mu.Unlock() }},
		drain, context.Background())
	return r
}

func seed(t testing.TB) []byte {
	t.Helper()
	return command.Examples()[0].Data // Microsoft's resume example 1
}

func throttle(after time.Duration) error {
	return &graphops.Error{Operation: graphops.OpResume, Status: 429, Code: "TooManyRequests", RetryAfter: after, HasRetryAfter: true}
}

func TestALongThrottleIsHandedBackUnlessItIsTheLastDelivery(t *testing.T) {
	cfg := worker.Config{HandbackAfter: 100 * time.Millisecond}

	r := newRig(t, cfg)
	r.graph.script = []error{throttle(400 * time.Millisecond)}
	m := &fakeMsg{data: seed(t), delivery: 1}
	r.proc.Handle(m)
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
	r.proc.Handle(last)
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
}

func TestADrainDuringTheLastDeliveryDeadLettersInsteadOfDroppingIt(t *testing.T) {
	r := newRig(t, worker.Config{HandbackAfter: time.Minute})
	r.graph.script = []error{throttle(20 * time.Second)}
	m := &fakeMsg{data: seed(t), delivery: 50, last: true}
	go func() { time.Sleep(200 * time.Millisecond); r.drain() }()
	r.proc.Handle(m)
	if len(r.dead.entries) != 1 || r.dead.entries[0].Reason != dlq.ReasonRetriesExhausted || m.acked != 1 {
		t.Fatalf("dead letters %+v, acked %d: want retries_exhausted and an ack", r.dead.entries, m.acked)
	}
	if len(m.handedBack) != 0 {
		t.Fatal("the last delivery was handed back: the broker would drop it")
	}
}

func TestAnUnreachableLedgerHandsTheMessageBackWithoutACall(t *testing.T) {
	r := newRig(t, worker.Config{})
	r.store.fail = errors.New("connection refused")
	m := &fakeMsg{data: seed(t), delivery: 1}
	r.proc.Handle(m)
	if r.graph.writes != 0 || m.acked != 0 || len(m.handedBack) != 1 {
		t.Fatalf("writes %d acked %d handed back %v", r.graph.writes, m.acked, m.handedBack)
	}
}

func TestAnUnreachableDeadLetterStoreNeverAcksTheMessage(t *testing.T) {
	r := newRig(t, worker.Config{BackoffMax: 50 * time.Millisecond})
	r.dead.fail = errors.New("stream unavailable")
	m := &fakeMsg{data: []byte("not json"), delivery: 1}
	r.proc.Handle(m)
	if m.acked != 0 || len(m.handedBack) != 1 {
		t.Fatalf("acked %d handed back %v: the message must go back, not be lost", m.acked, m.handedBack)
	}
}

func TestAFailedAckAfterApplyingLeavesARedeliveryToBeADuplicate(t *testing.T) {
	r := newRig(t, worker.Config{})
	first := &fakeMsg{data: seed(t), delivery: 1, ackErr: errors.New("connection closed")}
	r.proc.Handle(first)
	again := &fakeMsg{data: seed(t), delivery: 2}
	r.proc.Handle(again)
	if r.graph.writes != 1 || again.acked != 1 {
		t.Fatalf("writes %d, redelivery acked %d", r.graph.writes, again.acked)
	}
	if len(r.settled) != 2 || r.settled[1].Outcome != metrics.OutcomeDuplicate {
		t.Fatalf("settled %+v: want applied then duplicate", r.settled)
	}
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
			r := newRig(t, worker.Config{})
			r.graph.status = tc.status
			// A claim left behind by a replica that died: released, so it
			// can be taken over at once.
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
			time.Sleep(5 * time.Millisecond)
			m := &fakeMsg{data: seed(t), delivery: 2}
			r.proc.Handle(m)
			if r.graph.reads != 1 || r.graph.writes != tc.wantWrites {
				t.Fatalf("reads %d writes %d, want 1 read and %d writes", r.graph.reads, r.graph.writes, tc.wantWrites)
			}
			if len(r.settled) != 1 || r.settled[0].Outcome != tc.want || r.settled[0].Reason != string(tc.reason) {
				t.Fatalf("settled %+v", r.settled)
			}
		})
	}
}

// TestLeasesAreRenewedWhileAGraphCallRunsAndNotAfter: a call that takes
// ten renewal periods keeps the broker lease alive all along, and the
// renewals stop with the call (the timer is stopped, not left running).
func TestLeasesAreRenewedWhileAGraphCallRunsAndNotAfter(t *testing.T) {
	r := newRig(t, worker.Config{KeepAliveEvery: 10 * time.Millisecond})
	r.graph.delay = 100 * time.Millisecond
	m := &fakeMsg{data: seed(t), delivery: 1}
	r.proc.Handle(m)
	m.mu.Lock()
	during, acked := m.keepAlives, m.acked
	m.mu.Unlock()
	if acked != 1 {
		t.Fatalf("acked %d times, want 1", acked)
	}
	if during < 3 {
		t.Errorf("%d keep-alives during a call of 10 renewal periods, want several", during)
	}
	time.Sleep(50 * time.Millisecond)
	m.mu.Lock()
	after := m.keepAlives
	m.mu.Unlock()
	if after != during {
		t.Errorf("keep-alives went on after the job ended: %d, then %d", during, after)
	}
}
