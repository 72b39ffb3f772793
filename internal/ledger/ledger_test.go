package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/kvstore"
	"github.com/graphops/worker/internal/ledger/redisstore"
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
			t.Cleanup(func() { _ = s.Close() })
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

func identity(id, body string) ledger.Identity {
	return ledger.Identity{Source: "urn:test", ID: id, Key: ledger.KeyOf("callout", "req", "inst"), BodyHash: body}
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
		_, cl, _ := a.Begin(ctx, identity("cmd-1", "h1"), false)
		if err := cl.DeadLettered(ctx, "graph_rejected"); err != nil {
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
		_ = again.DeadLettered(ctx, "expired")
		if d, _, _ := a.Begin(ctx, identity("cmd-9", "h9"), false); d != ledger.Claimed {
			t.Fatalf("new decision after a dead letter: %s, want claimed", d)
		}
	})

	t.Run("a dead owner's claim is taken over after its lease, keeping its progress", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		dead := replica(t, s, "dead", c)
		_, cl, _ := dead.Begin(ctx, identity("cmd-1", "h1"), false)
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
		_, cl, _ := a.Begin(ctx, identity("cmd-1", "h1"), false)
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
		if err := second.DeadLettered(ctx, "graph_rejected"); err != nil {
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

	t.Run("a request lease admits one owner at a time until released or expired", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		a, bb := replica(t, s, "a", c), replica(t, s, "b", c)
		la, err := a.AcquireRequest(ctx, "REQ-1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bb.AcquireRequest(ctx, "req-1"); !errors.Is(err, ledger.ErrBusy) {
			t.Fatalf("second owner (ids differ only in case): %v, want ErrBusy", err)
		}
		if err := la.Release(ctx); err != nil {
			t.Fatal(err)
		}
		lb, err := bb.AcquireRequest(ctx, "req-1")
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
		c.Advance(20 * time.Second)
		if err := lb.Renew(ctx); err != nil {
			t.Fatal(err)
		}
		c.Advance(20 * time.Second)
		if _, err := a.AcquireRequest(ctx, "req-1"); !errors.Is(err, ledger.ErrBusy) {
			t.Fatalf("renewed lease: %v, want ErrBusy", err)
		}
		c.Advance(11 * time.Second)
		la2, err := a.AcquireRequest(ctx, "req-1")
		if err != nil {
			t.Fatalf("after the lease expired: %v", err)
		}
		if err := lb.Release(ctx); err != nil { // the old holder's release must not free the new holder's lease
			t.Fatal(err)
		}
		if _, err := bb.AcquireRequest(ctx, "req-1"); !errors.Is(err, ledger.ErrBusy) {
			t.Fatalf("a stale release freed the lease: %v", err)
		}
		_ = la2.Release(ctx)
	})

	t.Run("a request lease is held by exactly one of many racing replicas", func(t *testing.T) {
		s := b.open(t, time.Hour)
		c := &clock{now: time.Now()}
		var won atomic.Int64
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				_, err := replica(t, s, fmt.Sprintf("r%d", i), c).AcquireRequest(ctx, "req-race")
				if err == nil {
					won.Add(1)
				} else if !errors.Is(err, ledger.ErrBusy) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d holders, want 1", won.Load())
		}
	})

	t.Run("outcomes are forgotten after the retention", func(t *testing.T) {
		s := b.open(t, 2*time.Second)
		c := &clock{now: time.Now()}
		a := replica(t, s, "a", c)
		_, cl, _ := a.Begin(ctx, identity("cmd-1", "h1"), false)
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
}
