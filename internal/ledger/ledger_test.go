package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/kvstore"
	"github.com/graphops/worker/internal/ledger/redisstore"
	"github.com/graphops/worker/internal/ledger/storetest"
	"github.com/graphops/worker/internal/natsembed/natstest"
)

// The ledger's rules run against both real backends: the same cases, the
// same expectations (the conformance idea of storetest, one level up).

type backend struct {
	name string
	open func(t *testing.T, retention time.Duration) ledger.Store
}

func backends(t *testing.T) []backend {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: embedded JetStream and Redis on loopback")
	}
	redisAddr := os.Getenv("REDIS_ADDR")
	if redisAddr == "" {
		redisAddr = "127.0.0.1:6379"
	}
	if c, err := net.DialTimeout("tcp", redisAddr, time.Second); err != nil {
		t.Fatalf("Redis is not reachable at %s (start redis-server; CI does): %v", redisAddr, err)
	} else {
		c.Close()
	}
	var n atomic.Int64
	return []backend{
		{"jetstream", func(t *testing.T, retention time.Duration) ledger.Store {
			_, _, js := natstest.Start(t)
			s, err := kvstore.New(context.Background(), js, kvstore.Config{Bucket: "LEDGER_TEST", Retention: retention})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"redis", func(t *testing.T, retention time.Duration) ledger.Store {
			prefix := fmt.Sprintf("graphops:test:%d:%d:", time.Now().UnixNano(), n.Add(1))
			s, err := redisstore.New(context.Background(), redisstore.Config{Addr: redisAddr, Prefix: prefix, Retention: retention})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = s.Close()
				storetest.RemoveRedisPrefix(t, redisAddr, prefix)
			})
			return s
		}},
	}
}

// clock is a settable clock shared by the replicas of a test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func replica(t *testing.T, s ledger.Store, owner string, c *clock) *ledger.Ledger {
	t.Helper()
	l, err := ledger.New(s, ledger.Config{Owner: owner, Lease: 30 * time.Second, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// identity is a command for the one callout instance "inst" of request "req".
func identity(id, body string) ledger.Identity {
	return ledger.Identity{Source: "urn:test", ID: id, Request: "resume:req", Key: ledger.KeyOf("callout", "req", "inst"), BodyHash: body}
}

// onRequest is a command with a key of its own on request req.
func onRequest(req, id string) ledger.Identity {
	return ledger.Identity{Source: "urn:test", ID: id, Request: req, Key: ledger.KeyOf("cmd", "urn:test", id), BodyHash: "h-" + id}
}

func TestLedgerConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { runLedgerCases(t, b) })
	}
}

func runLedgerCases(t *testing.T, b backend) {
	ctx := context.Background()

	t.Run("a command is claimed by exactly one of many racing replicas", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		var claimed, busy atomic.Int64
		var wg sync.WaitGroup
		for i := range 24 {
			wg.Go(func() {
				l := replica(t, s, fmt.Sprintf("replica-%d", i), c)
				d, _, err := l.Begin(ctx, identity("cmd-1", "h1"), false)
				switch {
				case err != nil:
					t.Error(err)
				case d == ledger.Claimed:
					claimed.Add(1)
				case d == ledger.Busy:
					busy.Add(1)
				default:
					t.Errorf("decision %s", d)
				}
			})
		}
		wg.Wait()
		if claimed.Load() != 1 || busy.Load() != 23 {
			t.Fatalf("%d claimed, %d busy; want 1 and 23", claimed.Load(), busy.Load())
		}
	})

	t.Run("an applied command is a duplicate for its redelivery and an equal decision, a conflict for a different one", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		a := replica(t, s, "a", c)
		_, cl, err := a.Begin(ctx, identity("cmd-1", "h1"), false)
		if err != nil {
			t.Fatal(err)
		}
		cl.Attempted(c.Now())
		if err := cl.Applied(ctx, 204, "graph-req-1", false); err != nil {
			t.Fatal(err)
		}
		other := replica(t, s, "b", c)
		cases := []struct {
			id, body string
			want     ledger.Decision
		}{
			{"cmd-1", "h1", ledger.Duplicate},
			{"cmd-2", "h1", ledger.Duplicate},
			{"cmd-3", "h2", ledger.Conflict},
			{"cmd-1", "h1", ledger.Duplicate}, // a replay of an applied command is still a duplicate
		}
		for i, tc := range cases {
			d, got, err := other.Begin(ctx, identity(tc.id, tc.body), i == 3)
			if err != nil {
				t.Fatal(err)
			}
			if d != tc.want {
				t.Errorf("%s/%s: %s, want %s", tc.id, tc.body, d, tc.want)
			}
			if d == ledger.Conflict && got.Record.ID != "cmd-1" {
				t.Errorf("conflict names %q, want the applied cmd-1", got.Record.ID)
			}
		}
	})

	t.Run("a dead-lettered command is a duplicate on redelivery and claimed again by a replay", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		a := replica(t, s, "a", c)
		cl := claim(t, a, identity("cmd-1", "h1"))
		if err := cl.DeadLettered(ctx, "graph_rejected", ""); err != nil {
			t.Fatal(err)
		}
		if d, _, _ := a.Begin(ctx, identity("cmd-1", "h1"), false); d != ledger.Duplicate {
			t.Fatalf("redelivery after a dead letter: %s, want duplicate", d)
		}
		d, again, err := a.Begin(ctx, identity("cmd-1", "h1"), true)
		if err != nil || d != ledger.Claimed || again.Previous == nil || again.Previous.State != ledger.StateDeadLettered {
			t.Fatalf("replay: %s %+v %v, want claimed over the dead letter", d, again, err)
		}
		// A different decision for a callout whose earlier command never
		// took effect is not a conflict either.
		_ = again.DeadLettered(ctx, "expired", "")
		if d, _, _ := a.Begin(ctx, identity("cmd-9", "h9"), false); d != ledger.Claimed {
			t.Fatalf("new decision after a dead letter: %s, want claimed", d)
		}
	})

	t.Run("a dead owner's claim is taken over after its lease, keeping its progress", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		dead := replica(t, s, "dead", c)
		cl := claim(t, dead, identity("cmd-1", "h1"))
		cl.Attempted(c.Now())
		if err := cl.Renew(ctx); err != nil { // the attempt is recorded with the renewal
			t.Fatal(err)
		}
		heir := replica(t, s, "heir", c)
		if d, _, _ := heir.Begin(ctx, identity("cmd-1", "h1"), false); d != ledger.Busy {
			t.Fatalf("before the lease ends: %s, want busy", d)
		}
		c.Advance(31 * time.Second)
		d, got, err := heir.Begin(ctx, identity("cmd-1", "h1"), false)
		if err != nil || d != ledger.Claimed {
			t.Fatalf("after the lease: %s %v, want claimed", d, err)
		}
		if got.Previous == nil || got.Previous.Owner != "dead" || got.Record.Attempts != 1 || got.Record.FirstAttempt.IsZero() {
			t.Fatalf("takeover %+v (previous %+v): want the dead owner's record and its attempt", got.Record, got.Previous)
		}
	})

	t.Run("a renewed claim is not taken over and a released one is at once", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		a, bb := replica(t, s, "a", c), replica(t, s, "b", c)
		cl := claim(t, a, identity("cmd-1", "h1"))
		c.Advance(20 * time.Second)
		if err := cl.Renew(ctx); err != nil {
			t.Fatal(err)
		}
		c.Advance(20 * time.Second)
		if d, _, _ := bb.Begin(ctx, identity("cmd-1", "h1"), false); d != ledger.Busy {
			t.Fatalf("renewed claim: %s, want busy", d)
		}
		if err := cl.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if d, _, _ := bb.Begin(ctx, identity("cmd-1", "h1"), false); d != ledger.Claimed {
			t.Fatalf("released claim: %s, want claimed", d)
		}
		if err := cl.Renew(ctx); !errors.Is(err, ledger.ErrConflict) {
			t.Fatalf("renewing a claim taken over: %v, want ErrConflict", err)
		}
	})

	t.Run("an owner that outlived its lease still records applied, and the heir sees it", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		slow, heir := replica(t, s, "slow", c), replica(t, s, "heir", c)
		_, first, _ := slow.Begin(ctx, identity("cmd-1", "h1"), false)
		c.Advance(31 * time.Second)
		_, second, _ := heir.Begin(ctx, identity("cmd-1", "h1"), false)
		if err := first.Applied(ctx, 204, "g1", false); err != nil {
			t.Fatalf("late applied: %v", err)
		}
		if err := second.DeadLettered(ctx, "graph_rejected", ""); err != nil {
			t.Fatal(err)
		}
		if d, _, _ := heir.Begin(ctx, identity("cmd-1", "h1"), false); d != ledger.Duplicate {
			t.Fatalf("after both settled: %s, want duplicate (applied must win)", d)
		}
		_, rec, _ := heir.Begin(ctx, identity("cmd-2", "h2"), false)
		if rec.Record.State != ledger.StateApplied {
			t.Fatalf("record %+v, want applied to stand", rec.Record)
		}
	})

	t.Run("a request admits one command at a time until its claim settles, is released or runs out", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		a, bb := replica(t, s, "a", c), replica(t, s, "b", c)
		_, c1, err := a.Begin(ctx, onRequest("resume:req-1", "cmd-1"), false)
		if err != nil {
			t.Fatal(err)
		}
		d, busy, err := bb.Begin(ctx, onRequest("resume:req-1", "cmd-2"), false)
		if err != nil || d != ledger.Busy || busy.Record.ID != "cmd-1" || !busy.Record.LeaseUntil.After(c.Now()) {
			t.Fatalf("another command for the busy request: %s %+v %v, want busy naming cmd-1 and its lease", d, busy, err)
		}
		if d, _, _ := a.Begin(ctx, onRequest("resume:req-1", "cmd-3"), false); d != ledger.Busy {
			t.Fatalf("a second job of the holder's own process: %s, want busy", d)
		}
		if d, _, _ := bb.Begin(ctx, onRequest("resume:req-other", "cmd-2"), false); d != ledger.Claimed {
			t.Fatalf("a command for another request: %s, want claimed", d)
		}
		if err := c1.Applied(ctx, 204, "g1", false); err != nil {
			t.Fatal(err)
		}
		d, c3, err := bb.Begin(ctx, onRequest("resume:req-1", "cmd-3"), false)
		if err != nil || d != ledger.Claimed {
			t.Fatalf("after the holder applied: %s %v, want claimed", d, err)
		}
		if err := c3.Release(ctx); err != nil {
			t.Fatal(err)
		}
		_, c4, _ := a.Begin(ctx, onRequest("resume:req-1", "cmd-4"), false)
		if c4 == nil || c4.Record.ID != "cmd-4" {
			t.Fatalf("after a release: %+v, want cmd-4 claimed", c4)
		}
		c.Advance(20 * time.Second)
		if err := c4.Renew(ctx); err != nil {
			t.Fatal(err)
		}
		c.Advance(20 * time.Second)
		if d, _, _ := bb.Begin(ctx, onRequest("resume:req-1", "cmd-5"), false); d != ledger.Busy {
			t.Fatalf("renewed claim: %s, want busy", d)
		}
		c.Advance(11 * time.Second)
		d, c5, err := bb.Begin(ctx, onRequest("resume:req-1", "cmd-5"), false)
		if err != nil || d != ledger.Claimed {
			t.Fatalf("after the lease ran out: %s %v, want claimed", d, err)
		}
		// The old holder's late release and renewal touch only its own,
		// expired claim: they must not free the request from cmd-5.
		if err := c4.Release(ctx); !errors.Is(err, ledger.ErrConflict) && err != nil {
			t.Fatal(err)
		}
		if d, _, _ := a.Begin(ctx, onRequest("resume:req-1", "cmd-6"), false); d != ledger.Busy {
			t.Fatalf("a stale release freed the request: %s, want busy", d)
		}
		if err := c5.Applied(ctx, 204, "g5", false); err != nil {
			t.Fatal(err)
		}
		// Every outcome is still there, each under its own key.
		for id, want := range map[string]ledger.Decision{"cmd-1": ledger.Duplicate, "cmd-5": ledger.Duplicate, "cmd-4": ledger.Claimed} {
			d, cl, err := a.Begin(ctx, onRequest("resume:req-1", id), false)
			if err != nil || d != want {
				t.Errorf("%s afterwards: %s %v, want %s", id, d, err, want)
			}
			if d == ledger.Claimed {
				_ = cl.Release(ctx)
			}
		}
	})

	t.Run("a request is held by exactly one of many racing replicas, each with its own command", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		var won, busy atomic.Int64
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				d, _, err := replica(t, s, fmt.Sprintf("r%d", i), c).Begin(ctx, onRequest("resume:req-race", fmt.Sprintf("cmd-%d", i)), false)
				switch {
				case err != nil:
					t.Error(err)
				case d == ledger.Claimed:
					won.Add(1)
				case d == ledger.Busy:
					busy.Add(1)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 || busy.Load() != 15 {
			t.Fatalf("%d holders and %d busy, want 1 and 15", won.Load(), busy.Load())
		}
	})

	t.Run("a release with a settle time keeps the command and its request closed until then", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		a, bb := replica(t, s, "a", c), replica(t, s, "b", c)
		cl := claim(t, a, onRequest("resume:req-1", "cmd-1"))
		if err := cl.ReleaseUntil(ctx, c.Now().Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if d, _, _ := bb.Begin(ctx, onRequest("resume:req-1", "cmd-1"), false); d != ledger.Busy {
			t.Fatalf("the same command inside the settle time: %s, want busy", d)
		}
		if d, _, _ := bb.Begin(ctx, onRequest("resume:req-1", "cmd-2"), false); d != ledger.Busy {
			t.Fatalf("another command of the request inside the settle time: %s, want busy", d)
		}
		c.Advance(2*time.Minute + time.Second)
		d, again, err := bb.Begin(ctx, onRequest("resume:req-1", "cmd-1"), false)
		if err != nil || d != ledger.Claimed || again.Previous == nil {
			t.Fatalf("after the settle time: %s %v, want claimed over the released claim", d, err)
		}
	})

	t.Run("a process taking over its own expired claim leaves the old job nothing to write", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		a := replica(t, s, "a", c)
		_, old, _ := a.Begin(ctx, identity("cmd-1", "h1"), false)
		c.Advance(31 * time.Second)
		d, heir, err := a.Begin(ctx, identity("cmd-1", "h1"), false)
		if err != nil || d != ledger.Claimed {
			t.Fatalf("takeover by the same owner: %s %v", d, err)
		}
		if err := old.Renew(ctx); !errors.Is(err, ledger.ErrConflict) {
			t.Fatalf("the old job renewed over its heir: %v, want ErrConflict", err)
		}
		if err := heir.Renew(ctx); err != nil {
			t.Fatalf("the heir's renewal: %v", err)
		}
	})

	t.Run("settled records are forgotten a retention after they settled, even while the request lives on", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		l, err := ledger.New(s, ledger.Config{Owner: "a", Lease: 30 * time.Second, Retention: time.Hour, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		_, c1, _ := l.Begin(ctx, onRequest("role:req-1", "cmd-1"), false)
		if err := c1.Applied(ctx, 200, "g1", false); err != nil {
			t.Fatal(err)
		}
		c.Advance(30 * time.Minute)
		_, c2, _ := l.Begin(ctx, onRequest("role:req-1", "cmd-2"), false)
		_ = c2.Applied(ctx, 200, "g2", false)
		c.Advance(31 * time.Minute)
		_, c3, _ := l.Begin(ctx, onRequest("role:req-1", "cmd-3"), false) // this write forgets cmd-1
		_ = c3.Applied(ctx, 200, "g3", false)
		for id, want := range map[string]bool{"cmd-1": false, "cmd-2": true, "cmd-3": true} {
			_, ok, err := l.Lookup(ctx, onRequest("role:req-1", id))
			if err != nil || ok != want {
				t.Errorf("%s remembered: %v (%v), want %v", id, ok, err, want)
			}
		}
	})

	t.Run("outcomes are forgotten after the retention", func(t *testing.T) {
		s := b.open(t, 2*time.Second)
		c := &clock{now: time.Now()}
		a := replica(t, s, "a", c)
		cl := claim(t, a, identity("cmd-1", "h1"))
		if err := cl.Applied(ctx, 204, "g", false); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			d, _, err := a.Begin(ctx, identity("cmd-1", "h1"), false)
			if err != nil {
				t.Fatal(err)
			}
			if d == ledger.Claimed {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("still %s 15s after a 2s retention", d)
			}
			time.Sleep(250 * time.Millisecond)
		}
	})

	runHistoryCases(t, b)
	runSameIDCases(t, b)
}

// countingStore counts the writes that reach a store.
type countingStore struct {
	ledger.Store
	writes atomic.Int64
}

func (s *countingStore) Create(ctx context.Context, k string, v []byte, ttl time.Duration) (uint64, error) {
	s.writes.Add(1)
	return s.Store.Create(ctx, k, v, ttl)
}

func (s *countingStore) Update(ctx context.Context, k string, v []byte, rev uint64, ttl time.Duration) (uint64, error) {
	s.writes.Add(1)
	return s.Store.Update(ctx, k, v, rev, ttl)
}

// failingIndex fails the next n writes of index entries.
type failingIndex struct {
	ledger.Store
	n atomic.Int64
}

func (s *failingIndex) Create(ctx context.Context, k string, v []byte, ttl time.Duration) (uint64, error) {
	if strings.HasPrefix(k, "index.") && s.n.Add(-1) >= 0 {
		return 0, errors.New("store unavailable")
	}
	return s.Store.Create(ctx, k, v, ttl)
}

// only returns the one record found, failing t otherwise.
func only(t *testing.T, found []ledger.Found, err error) ledger.Record {
	t.Helper()
	if err != nil || len(found) != 1 {
		t.Fatalf("found %+v (%v), want one record", found, err)
	}
	return found[0].Record
}

// byID returns the one record of command id, failing t otherwise.
func byID(t *testing.T, s ledger.Store, id string) ledger.Record {
	t.Helper()
	found, err := ledger.ByCommandID(context.Background(), s, id)
	return only(t, found, err)
}

func runHistoryCases(t *testing.T, b backend) {
	ctx := context.Background()

	t.Run("a command's attempts and outcome are kept in three writes and found by id and by request", func(t *testing.T) {
		s := &countingStore{Store: b.open(t, time.Hour)}
		c := &clock{now: time.Now().UTC().Truncate(time.Second)}
		l := replica(t, s, "a", c)
		_, cl, err := l.Begin(ctx, identity("cmd-1", "h1"), false)
		if err != nil {
			t.Fatal(err)
		}
		first := c.Now()
		cl.Attempted(first)
		cl.Answered(ledger.Answer{ClientRequestID: "crid-1"}) // no answer
		c.Advance(time.Second)
		cl.Attempted(c.Now())
		cl.Answered(ledger.Answer{ClientRequestID: "crid-2", GraphStatus: 204, GraphRequestID: "g-2"})
		if err := cl.Applied(ctx, 204, "g-2", false); err != nil {
			t.Fatal(err)
		}
		// claim + index + outcome; the attempts ride on the outcome's write.
		if n := s.writes.Load(); n != 3 {
			t.Errorf("%d store writes, want 3", n)
		}
		byID, err := ledger.ByCommandID(ctx, s, "cmd-1")
		r := only(t, byID, err)
		want := []ledger.Attempt{
			{At: first, ClientRequestID: "crid-1"},
			{At: first.Add(time.Second), ClientRequestID: "crid-2", GraphStatus: 204, GraphRequestID: "g-2"},
		}
		if len(r.History) != 2 || !r.History[0].At.Equal(want[0].At) || r.History[0].ClientRequestID != want[0].ClientRequestID ||
			r.History[0].GraphStatus != 0 || r.History[1].ClientRequestID != "crid-2" || r.History[1].GraphStatus != 204 ||
			r.History[1].GraphRequestID != "g-2" {
			t.Errorf("history %+v, want %+v", r.History, want)
		}
		if r.State != ledger.StateApplied || r.GraphRequestID != "g-2" || !r.Since.Equal(first) || byID[0].Request != "resume:req" {
			t.Errorf("record %+v on %q, want applied by g-2 since %s on resume:req", r, byID[0].Request, first)
		}
		byReq, err := ledger.ByRequest(ctx, s, "resume:req")
		if got := only(t, byReq, err); got.ID != "cmd-1" {
			t.Errorf("by request: %+v", got)
		}
		if none, err := ledger.ByCommandID(ctx, s, "cmd-unknown"); err != nil || len(none) != 0 {
			t.Errorf("unknown id found %+v (%v)", none, err)
		}
	})

	t.Run("a command whose index write failed is not claimed, and is indexed when it comes back", func(t *testing.T) {
		s := &failingIndex{Store: b.open(t, time.Hour)}
		s.n.Store(1)
		c := &clock{now: time.Now()}
		l := replica(t, s, "a", c)
		if d, _, err := l.Begin(ctx, identity("cmd-1", "h1"), false); err == nil {
			t.Fatalf("Begin = %s without error, want the index failure", d)
		}
		d, cl, err := l.Begin(ctx, identity("cmd-1", "h1"), false)
		if err != nil || d != ledger.Claimed {
			t.Fatalf("again: %s (%v), want claimed: the first claim must have been released", d, err)
		}
		if err := cl.Applied(ctx, 204, "g", false); err != nil {
			t.Fatal(err)
		}
		if r := byID(t, s, "cmd-1"); r.State != ledger.StateApplied || !r.Indexed {
			t.Errorf("record %+v, want applied and indexed", r)
		}
	})

	t.Run("attempts beyond the bound are summarised and the newest, applying one is kept", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		l := replica(t, s, "a", c)
		cl := claim(t, l, onRequest("role_request_update:r", "cmd-1"))
		const n = ledger.MaxHistory + 3
		for i := range n {
			cl.Attempted(c.Now())
			status := 429
			if i == n-1 {
				status = 200
			}
			cl.Answered(ledger.Answer{ClientRequestID: fmt.Sprint("crid-", i), GraphStatus: status})
			c.Advance(time.Second)
			if i == 4 { // a renewal in between writes part of the history
				if err := cl.Renew(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := cl.Applied(ctx, 200, "g", false); err != nil {
			t.Fatal(err)
		}
		r := byID(t, s, "cmd-1")
		if len(r.History) != ledger.MaxHistory || r.History[len(r.History)-1].ClientRequestID != fmt.Sprint("crid-", n-1) ||
			r.History[0].ClientRequestID != "crid-3" {
			t.Errorf("history %+v: want the last %d attempts", r.History, ledger.MaxHistory)
		}
		if r.Earlier == nil || r.Earlier.Count != 3 || r.Earlier.ByStatus["429"] != 3 || r.Attempts != n {
			t.Errorf("earlier %+v, attempts %d: want 3 summarised 429s of %d", r.Earlier, r.Attempts, n)
		}
	})

	t.Run("a duplicate under another id is recorded once with the id it repeats", func(t *testing.T) {
		s := &countingStore{Store: b.open(t, time.Hour)}
		c := &clock{now: time.Now()}
		l := replica(t, s, "a", c)
		cl := claim(t, l, identity("cmd-1", "h1"))
		if err := cl.Applied(ctx, 204, "g", false); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if d, _, err := l.Begin(ctx, identity("cmd-2", "h1"), false); err != nil || d != ledger.Duplicate {
				t.Fatalf("%s (%v), want duplicate", d, err)
			}
		}
		r := byID(t, s, "cmd-2")
		if r.State != ledger.StateDuplicate || r.DuplicateOf != "cmd-1" {
			t.Errorf("record %+v, want a duplicate of cmd-1", r)
		}
		if all, _ := ledger.ByRequest(ctx, s, "resume:req"); len(all) != 2 {
			t.Errorf("request has %d records, want cmd-1 and its duplicate", len(all))
		}
	})

	t.Run("a conflicting decision is recorded once as dead-lettered for conflict", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		l := replica(t, s, "a", c)
		cl := claim(t, l, identity("cmd-1", "h1"))
		if err := cl.Applied(ctx, 204, "g", false); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if d, got, err := l.Begin(ctx, identity("cmd-2", "h2"), false); err != nil || d != ledger.Conflict || got.Record.ID != "cmd-1" {
				t.Fatalf("%s (%v), want a conflict naming cmd-1", d, err)
			}
		}
		if r := byID(t, s, "cmd-2"); r.State != ledger.StateDeadLettered || r.Reason != ledger.ReasonConflict || r.Replays != 0 {
			t.Errorf("record %+v, want dead-lettered for conflict, never replayed", r)
		}
		if r := byID(t, s, "cmd-1"); r.State != ledger.StateApplied {
			t.Errorf("cmd-1 %+v, want still applied", r)
		}
		// An operator replays its dead letter: still a conflict, and the
		// replay counts (worker history's replays).
		if d, _, err := l.Begin(ctx, identity("cmd-2", "h2"), true); err != nil || d != ledger.Conflict {
			t.Fatalf("replay: %s (%v), want a conflict again", d, err)
		}
		if r := byID(t, s, "cmd-2"); r.Replays != 1 || r.State != ledger.StateDeadLettered {
			t.Errorf("record %+v after a replay, want one replay counted", r)
		}
	})

	t.Run("a replay is counted and the history goes on", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		l := replica(t, s, "a", c)
		cl := claim(t, l, identity("cmd-1", "h1"))
		cl.Attempted(c.Now())
		cl.Answered(ledger.Answer{ClientRequestID: "crid-1", GraphStatus: 400, GraphCode: "BadRequest"})
		if err := cl.DeadLettered(ctx, "graph_rejected", ""); err != nil {
			t.Fatal(err)
		}
		d, again, err := l.Begin(ctx, identity("cmd-1", "h1"), true)
		if err != nil || d != ledger.Claimed {
			t.Fatalf("replay: %s (%v)", d, err)
		}
		again.Attempted(c.Now())
		again.Answered(ledger.Answer{ClientRequestID: "crid-2", GraphStatus: 204})
		if err := again.Applied(ctx, 204, "g", false); err != nil {
			t.Fatal(err)
		}
		r := byID(t, s, "cmd-1")
		if r.Replays != 1 || len(r.History) != 2 || r.History[0].GraphCode != "BadRequest" || r.State != ledger.StateApplied {
			t.Errorf("record %+v: want applied after one replay, both attempts listed", r)
		}
	})

	t.Run("a command that takes over another's dead-lettered key leaves the earlier one in the history", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		l := replica(t, s, "a", c)
		cl := claim(t, l, identity("cmd-1", "h1"))
		if err := cl.DeadLettered(ctx, "graph_rejected", ""); err != nil {
			t.Fatal(err)
		}
		d, c2, err := l.Begin(ctx, identity("cmd-2", "h2"), false)
		if err != nil || d != ledger.Claimed {
			t.Fatalf("%s (%v)", d, err)
		}
		if err := c2.Applied(ctx, 204, "g", false); err != nil {
			t.Fatal(err)
		}
		if r := byID(t, s, "cmd-1"); r.State != ledger.StateDeadLettered || r.Reason != "graph_rejected" {
			t.Errorf("cmd-1 %+v, want its dead letter kept", r)
		}
		if r := byID(t, s, "cmd-2"); r.State != ledger.StateApplied {
			t.Errorf("cmd-2 %+v, want applied", r)
		}
	})
}

// Keys are where existing records sit: a change of KeyOf's hashing would
// orphan every record a ledger keeps. These are the keys of the first
// release.
func TestKeyOfKeepsItsKeys(t *testing.T) {
	long := strings.Repeat("é", 300)
	for _, tt := range []struct{ got, want string }{
		{ledger.KeyOf("callout", "0e60f18c-b2a0-4887-9da8-da2e30a39d99", "957d0c50-466b-4840-bb5b-c92cea7141ff"), "callout.844cb43361b35cf5472744079d4c907adab07070"},
		{ledger.RequestKey("resume:0e60f18c-b2a0-4887-9da8-da2e30a39d99"), "request.cb1561d379b616b9bd3a41bc187027eb97d67adf"},
		{ledger.KeyOf("x"), "x.e3b0c44298fc1c149afbf4c8996fb92427ae41e4"},
		{ledger.KeyOf("cmd", "urn:a", long), "cmd.d5bb5cfe2fbded29b9177e50020440e1c7647930"},
	} {
		if tt.got != tt.want {
			t.Errorf("key %s, want %s", tt.got, tt.want)
		}
	}
}

// claim begins a command that must be claimed, and returns its claim.
func claim(t *testing.T, l *ledger.Ledger, id ledger.Identity) *ledger.Claim {
	t.Helper()
	d, cl, err := l.Begin(context.Background(), id, false)
	if err != nil || d != ledger.Claimed {
		t.Fatalf("Begin(%s) = %s, %v; want claimed", id.ID, d, err)
	}
	return cl
}

// runSameIDCases: the same source+id again is a duplicate whatever it asks
// (docs/SPEC.md §3), also for another callout instance or request.
func runSameIDCases(t *testing.T, b backend) {
	ctx := context.Background()
	other := func(id, inst string) ledger.Identity {
		return ledger.Identity{Source: "urn:test", ID: id, Request: "resume:req", Key: ledger.KeyOf("callout", "req", inst), BodyHash: "h-" + inst}
	}

	t.Run("the same id for another callout instance is a duplicate of the first and leaves that instance free", func(t *testing.T) {
		s := b.open(t, time.Hour)
		l := replica(t, s, "a", &clock{now: time.Now()})
		cl := claim(t, l, identity("cmd-1", "h1"))
		if err := cl.Applied(ctx, 204, "g", false); err != nil {
			t.Fatal(err)
		}
		d, got, err := l.Begin(ctx, other("cmd-1", "inst-2"), false)
		if err != nil || d != ledger.Duplicate || got.Record.ID != "cmd-1" || got.Record.State != ledger.StateApplied {
			t.Fatalf("%s %+v (%v), want a duplicate of the applied cmd-1", d, got, err)
		}
		all, err := ledger.ByCommandID(ctx, s, "cmd-1")
		if err != nil || len(all) != 2 {
			t.Fatalf("records of cmd-1: %+v (%v), want the applied one and the duplicate noted", all, err)
		}
		// Another command for inst-2 is not blocked by the one undone.
		if d, _, err := l.Begin(ctx, other("cmd-2", "inst-2"), false); err != nil || d != ledger.Claimed {
			t.Fatalf("cmd-2 for inst-2: %s (%v), want claimed", d, err)
		}
	})

	t.Run("the same id for another request is a duplicate", func(t *testing.T) {
		s := b.open(t, time.Hour)
		l := replica(t, s, "a", &clock{now: time.Now()})
		cl := claim(t, l, onRequest("role:pa/r1", "cmd-9"))
		if err := cl.Applied(ctx, 204, "g", false); err != nil {
			t.Fatal(err)
		}
		if d, _, err := l.Begin(ctx, onRequest("role:pa/r2", "cmd-9"), false); err != nil || d != ledger.Duplicate {
			t.Fatalf("%s (%v), want a duplicate", d, err)
		}
		if all, _ := ledger.ByRequest(ctx, s, "role:pa/r2"); len(all) != 1 || all[0].Record.State != ledger.StateDuplicate {
			t.Fatalf("request r2 holds %+v, want only the duplicate noted", all)
		}
	})

	t.Run("while the first is not settled the second waits", func(t *testing.T) {
		s := b.open(t, time.Hour)
		l := replica(t, s, "a", &clock{now: time.Now()})
		claim(t, l, identity("cmd-1", "h1"))
		if d, _, err := l.Begin(ctx, other("cmd-1", "inst-2"), false); err != nil || d != ledger.Busy {
			t.Fatalf("%s (%v), want busy", d, err)
		}
		if all, _ := ledger.ByCommandID(ctx, s, "cmd-1"); len(all) != 1 {
			t.Fatalf("records of cmd-1: %+v, want the first claim only", all)
		}
	})
}
