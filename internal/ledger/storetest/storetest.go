// Package storetest is the conformance suite every ledger.Store backend must
// pass: the behaviour of the Store contract written once and run against
// each backend (the model is Watermill's pubsub/tests.TestPubSub).
//
// It owns the cases and the race between processes; it does not own any
// backend nor the servers they talk to: a backend's test package brings a
// Factory and calls Run.
//
// Wiring in a backend's test package, where factory has the type Factory
// and returns a store named after Options.Name (its bucket or key prefix):
//
//	func TestStore(t *testing.T) {
//		if testing.Short() {
//			t.Skip("integration test")
//		}
//		storetest.Run(t, factory, storetest.Features{MinTTL: time.Second, ChildTest: "TestStoreChild"})
//	}
//
//	func BenchmarkStore(b *testing.B) {
//		storetest.Benchmark(b, newStore(b))
//	}
//
//	// TestStoreChild is a racer process of the conformance suite; run on
//	// its own it skips.
//	func TestStoreChild(t *testing.T) {
//		storetest.RunChild(t, factory)
//	}
//
// The race between processes re-executes the test binary (os.Args[0]) with
// -test.run=^ChildTest$ and an environment variable describing the store;
// RunChild opens the same store through the Factory with Options.Attach set
// and reports on stdout.
package storetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
)

// Options tell a Factory which store to return.
type Options struct {
	// Name is unique to this store and isolates it: the backend derives its
	// bucket or key prefix from it. At most 30 bytes of [a-z0-9-].
	Name string
	// Retention is the store's retention; 0 means the backend's default.
	Retention time.Duration
	// Attach asks for the store another process made with this Name: open
	// it and do not clean it up (its creator does).
	Attach bool
}

// Factory returns a store isolated from every other store of the test run,
// emptied or removed when t ends unless o.Attach is set. It fails t when it
// cannot.
type Factory func(t *testing.T, o Options) ledger.Store

// Features describe what a backend honours.
type Features struct {
	// MinTTL is the smallest ttl the backend honours reliably (1s for
	// JetStream, whose TTLs count whole seconds). The ttl cases take a few
	// times this long.
	MinTTL time.Duration
	// RetentionOnly says the backend ignores the ttl of writes and expires
	// every key after its retention (JetStream before nats-server 2.11).
	RetentionOnly bool
	// ChildTest names the backend's test function that calls RunChild;
	// empty skips the race between processes.
	ChildTest string
	// ChildEnv is environment (KEY=VALUE) the child processes need to reach
	// the backend, e.g. the URL of a server the parent started.
	ChildEnv []string
}

// Run runs the conformance suite against the stores f returns, each case
// in a subtest named by a sentence.
func Run(t *testing.T, f Factory, feat Features) {
	if feat.MinTTL <= 0 {
		t.Fatal("storetest: Features.MinTTL must be positive")
	}
	fresh := func(t *testing.T) ledger.Store {
		t.Helper()
		return f(t, Options{Name: NewName()})
	}

	t.Run("Get of a missing key returns ErrNotFound", func(t *testing.T) {
		s := fresh(t)
		_, err := s.Get(ctx(t), "missing")
		wantIs(t, err, ledger.ErrNotFound)
	})

	t.Run("Create then Get returns the same bytes and revision", func(t *testing.T) {
		s := fresh(t)
		big := make([]byte, 64<<10)
		_, _ = rand.Read(big)
		cases := []struct {
			name  string
			value []byte
		}{
			{"a short text", []byte(`{"state":"claimed","owner":"w-1"}`)},
			{"binary bytes with zeros and high bytes", []byte{0, 1, 0xff, 0xfe, 0, '\n', '\r', 0x80}},
			{"64 KiB of random bytes", big},
			{"an empty value", []byte{}},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				key := fmt.Sprintf("round-trip-%d", i)
				rev, err := s.Create(ctx(t), key, c.value, 0)
				if err != nil {
					t.Fatalf("Create: %v", err)
				}
				if rev == 0 {
					t.Fatal("Create returned revision 0")
				}
				e, err := s.Get(ctx(t), key)
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if !bytes.Equal(e.Value, c.value) {
					t.Fatalf("Get returned %d bytes, want the %d written", len(e.Value), len(c.value))
				}
				if e.Revision != rev {
					t.Fatalf("Get revision = %d, Create returned %d", e.Revision, rev)
				}
			})
		}
	})

	t.Run("Create of an existing key returns ErrExists and keeps the value", func(t *testing.T) {
		s := fresh(t)
		rev := mustCreate(t, s, "k", "first")
		_, err := s.Create(ctx(t), "k", []byte("second"), 0)
		wantIs(t, err, ledger.ErrExists)
		wantValue(t, s, "k", "first", rev)
	})

	t.Run("Update with the current revision succeeds and bumps the revision", func(t *testing.T) {
		s := fresh(t)
		rev1 := mustCreate(t, s, "k", "v1")
		rev2, err := s.Update(ctx(t), "k", []byte("v2"), rev1, 0)
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if rev2 <= rev1 {
			t.Fatalf("Update returned revision %d, want more than %d", rev2, rev1)
		}
		wantValue(t, s, "k", "v2", rev2)
		rev3, err := s.Update(ctx(t), "k", []byte("v3"), rev2, 0)
		if err != nil {
			t.Fatalf("second Update: %v", err)
		}
		if rev3 <= rev2 {
			t.Fatalf("second Update returned revision %d, want more than %d", rev3, rev2)
		}
		wantValue(t, s, "k", "v3", rev3)
	})

	t.Run("Update with a stale revision returns ErrConflict and keeps the value", func(t *testing.T) {
		s := fresh(t)
		rev1 := mustCreate(t, s, "k", "v1")
		rev2 := mustUpdate(t, s, "k", "v2", rev1)
		_, err := s.Update(ctx(t), "k", []byte("stale"), rev1, 0)
		wantIs(t, err, ledger.ErrConflict)
		wantValue(t, s, "k", "v2", rev2)
	})

	t.Run("Update of a missing key returns ErrConflict and creates nothing", func(t *testing.T) {
		s := fresh(t)
		other := mustCreate(t, s, "other", "x") // a revision that exists in the store
		for _, rev := range []uint64{0, 1, other, other + 1} {
			_, err := s.Update(ctx(t), "missing", []byte("v"), rev, 0)
			if !errors.Is(err, ledger.ErrConflict) {
				t.Errorf("Update at revision %d: got %v, want ErrConflict", rev, err)
			}
		}
		_, err := s.Get(ctx(t), "missing")
		wantIs(t, err, ledger.ErrNotFound)
	})

	t.Run("Delete with a stale revision returns ErrConflict and keeps the key", func(t *testing.T) {
		s := fresh(t)
		rev1 := mustCreate(t, s, "k", "v1")
		rev2 := mustUpdate(t, s, "k", "v2", rev1)
		for _, rev := range []uint64{rev1, 0, rev2 + 1} {
			err := s.Delete(ctx(t), "k", rev)
			if !errors.Is(err, ledger.ErrConflict) {
				t.Errorf("Delete at revision %d: got %v, want ErrConflict", rev, err)
			}
		}
		wantValue(t, s, "k", "v2", rev2)
	})

	t.Run("Delete with the current revision removes the key", func(t *testing.T) {
		s := fresh(t)
		rev := mustCreate(t, s, "k", "v1")
		if err := s.Delete(ctx(t), "k", rev); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		_, err := s.Get(ctx(t), "k")
		wantIs(t, err, ledger.ErrNotFound)
	})

	t.Run("Delete of a missing key returns nil", func(t *testing.T) {
		s := fresh(t)
		for _, rev := range []uint64{0, 1, 12345} {
			if err := s.Delete(ctx(t), "never-written", rev); err != nil {
				t.Errorf("Delete of a never written key at revision %d: %v", rev, err)
			}
		}
		rev := mustCreate(t, s, "deleted", "v")
		if err := s.Delete(ctx(t), "deleted", rev); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		for _, r := range []uint64{rev, 0, rev + 1} {
			if err := s.Delete(ctx(t), "deleted", r); err != nil {
				t.Errorf("Delete of a deleted key at revision %d: %v", r, err)
			}
		}
	})

	t.Run("Create after Delete works and the old revisions can no longer Update or Delete", func(t *testing.T) {
		s := fresh(t)
		rev1 := mustCreate(t, s, "k", "v1")
		rev2 := mustUpdate(t, s, "k", "v2", rev1)
		if err := s.Delete(ctx(t), "k", rev2); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		rev3 := mustCreate(t, s, "k", "again")
		if rev3 <= rev2 {
			t.Fatalf("Create after Delete returned revision %d, want more than the earlier %d", rev3, rev2)
		}
		for _, old := range []uint64{rev1, rev2} {
			_, err := s.Update(ctx(t), "k", []byte("stale writer"), old, 0)
			if !errors.Is(err, ledger.ErrConflict) {
				t.Errorf("Update at old revision %d: got %v, want ErrConflict", old, err)
			}
			if err := s.Delete(ctx(t), "k", old); !errors.Is(err, ledger.ErrConflict) {
				t.Errorf("Delete at old revision %d: got %v, want ErrConflict", old, err)
			}
		}
		wantValue(t, s, "k", "again", rev3)
	})

	t.Run("Exactly one of 50 goroutines creating the same key wins", func(t *testing.T) {
		s := fresh(t)
		for _, c := range []struct {
			name    string
			prepare func(t *testing.T, key string)
		}{
			{"when the key was never written", func(*testing.T, string) {}},
			{"when the key was just deleted", func(t *testing.T, key string) {
				rev := mustCreate(t, s, key, "before")
				if err := s.Delete(ctx(t), key, rev); err != nil {
					t.Fatalf("Delete: %v", err)
				}
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				key := "claim-" + strings.ReplaceAll(c.name, " ", "-")
				c.prepare(t, key)
				won, exists, value := claimRace(t, s, key, 50, "goroutine")
				if won != 1 || exists != 49 {
					t.Fatalf("%d won and %d got ErrExists, want 1 and 49", won, exists)
				}
				e, err := s.Get(ctx(t), key)
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if string(e.Value) != value {
					t.Fatalf("stored value %q, the winner wrote %q", e.Value, value)
				}
			})
		}
	})

	t.Run("20 goroutines each incrementing a counter 25 times with Get and Update end at 500", func(t *testing.T) {
		s := fresh(t)
		mustCreate(t, s, "counter", "0")
		const workers, increments = 20, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		c := ctx(t)
		start := make(chan struct{})
		for range workers {
			wg.Go(func() {
				<-start
				for range increments {
					if err := increment(c, s, "counter"); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		e, err := s.Get(ctx(t), "counter")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if string(e.Value) != strconv.Itoa(workers*increments) {
			t.Fatalf("counter = %s, want %d", e.Value, workers*increments)
		}
	})

	t.Run("Exactly one of 40 racers in 4 processes creating the same key wins", func(t *testing.T) {
		if feat.ChildTest == "" {
			t.Skip("the backend names no child test (Features.ChildTest)")
		}
		raceProcesses(t, f, feat)
	})

	t.Run("Keys expire", func(t *testing.T) {
		t.Run("a key written with the minimum ttl disappears after about that ttl", func(t *testing.T) {
			if feat.RetentionOnly {
				t.Skip("the backend ignores the ttl of writes")
			}
			t.Parallel()
			testTTLExpiry(t, fresh(t), feat.MinTTL)
		})
		t.Run("an Update restarts the key's ttl", func(t *testing.T) {
			if feat.RetentionOnly {
				t.Skip("the backend ignores the ttl of writes")
			}
			t.Parallel()
			testTTLRestart(t, fresh(t), feat.MinTTL)
		})
		t.Run("keys written with ttl 0 or a ttl beyond the retention disappear after the retention", func(t *testing.T) {
			t.Parallel()
			retention := feat.MinTTL
			s := f(t, Options{Name: NewName(), Retention: retention})
			testRetention(t, s, retention)
		})
	})

	t.Run("Invalid keys are rejected by every operation", func(t *testing.T) {
		s := fresh(t)
		for _, c := range []struct{ name, key string }{
			{"an empty key", ""},
			{"upper case", "Key"},
			{"a space", "a key"},
			{"a slash", "a/b"},
			{"an equals sign", "a=b"},
			{"a NATS wildcard", "a.*"},
			{"a NATS tail wildcard", "a.>"},
			{"a colon", "a:b"},
			{"non-ASCII", "clé"},
			{"a NUL byte", "a\x00b"},
			{"201 bytes", strings.Repeat("k", 201)},
			{"a leading dot", ".a"},
			{"a trailing dot", "a."},
			{"two dots in a row", "a..b"},
		} {
			t.Run(c.name, func(t *testing.T) {
				ops := map[string]error{}
				_, ops["Get"] = s.Get(ctx(t), c.key)
				_, ops["Create"] = s.Create(ctx(t), c.key, []byte("v"), 0)
				_, ops["Update"] = s.Update(ctx(t), c.key, []byte("v"), 1, 0)
				ops["Delete"] = s.Delete(ctx(t), c.key, 1)
				for op, err := range ops {
					if err == nil {
						t.Errorf("%s(%q) succeeded, want an error", op, c.key)
					}
					for _, sentinel := range []error{ledger.ErrNotFound, ledger.ErrExists, ledger.ErrConflict} {
						if errors.Is(err, sentinel) {
							t.Errorf("%s(%q) = %v: an invalid key is not %v", op, c.key, err, sentinel)
						}
					}
				}
			})
		}
	})

	t.Run("Valid keys of every allowed character and of 200 bytes work", func(t *testing.T) {
		s := fresh(t)
		for _, key := range []string{
			"abcdefghijklmnopqrstuvwxyz0123456789",
			"cmd.7f3c1a52-2b7e-4c43_9d1e.0c6a6f1d2e11",
			"-leading-dash", "_", "a.b.c",
			strings.Repeat("k", 200),
		} {
			rev := mustCreate(t, s, key, "v")
			wantValue(t, s, key, "v", rev)
			if err := s.Delete(ctx(t), key, rev); err != nil {
				t.Errorf("Delete(%q): %v", key, err)
			}
		}
	})
}

// NewName returns a store name unique to the test run, for Options.Name.
func NewName() string {
	return "st-" + strings.ToLower(rand.Text()[:12])
}

// ctx bounds each store call of a case.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func wantIs(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func wantValue(t *testing.T, s ledger.Store, key, value string, rev uint64) {
	t.Helper()
	e, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if string(e.Value) != value || e.Revision != rev {
		t.Fatalf("Get(%q) = %q at revision %d, want %q at %d", key, e.Value, e.Revision, value, rev)
	}
}

func mustCreate(t *testing.T, s ledger.Store, key, value string) uint64 {
	t.Helper()
	rev, err := s.Create(ctx(t), key, []byte(value), 0)
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	return rev
}

func mustUpdate(t *testing.T, s ledger.Store, key, value string, rev uint64) uint64 {
	t.Helper()
	n, err := s.Update(ctx(t), key, []byte(value), rev, 0)
	if err != nil {
		t.Fatalf("Update(%q, %d): %v", key, rev, err)
	}
	return n
}

// increment adds one to the decimal counter at key, retrying on conflicts.
func increment(ctx context.Context, s ledger.Store, key string) error {
	for {
		e, err := s.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("Get: %w", err)
		}
		n, err := strconv.Atoi(string(e.Value))
		if err != nil {
			return fmt.Errorf("counter value %q: %w", e.Value, err)
		}
		_, err = s.Update(ctx, key, []byte(strconv.Itoa(n+1)), e.Revision, 0)
		if errors.Is(err, ledger.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("Update: %w", err)
		}
		return nil
	}
}

// claimRace has n goroutines Create key at once, each with its own value;
// it returns how many won, how many got ErrExists, and the winner's value.
// Any other error fails t.
func claimRace(t *testing.T, s ledger.Store, key string, n int, who string) (won, exists int, value string) {
	t.Helper()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	c := ctx(t)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			v := fmt.Sprintf("%s-%d", who, i)
			<-start
			_, err := s.Create(c, key, []byte(v), 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
				value = v
			case errors.Is(err, ledger.ErrExists):
				exists++
			default:
				errs = append(errs, err)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Errorf("Create: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return won, exists, value
}

// gone polls key until Get reports ErrNotFound, until deadline; it returns
// when the key was first seen gone, or the zero time.
func gone(t *testing.T, s ledger.Store, key string, deadline time.Time, every time.Duration) time.Time {
	t.Helper()
	for {
		_, err := s.Get(ctx(t), key)
		now := time.Now()
		if errors.Is(err, ledger.ErrNotFound) {
			return now
		}
		if err != nil {
			t.Fatalf("Get(%q): %v", key, err)
		}
		if now.After(deadline) {
			return time.Time{}
		}
		time.Sleep(every)
	}
}

func testTTLExpiry(t *testing.T, s ledger.Store, ttl time.Duration) {
	start := time.Now()
	rev, err := s.Create(ctx(t), "short", []byte("v"), ttl)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Get(ctx(t), "short"); err != nil && time.Since(start) < ttl/2 {
		t.Fatalf("Get right after Create: %v", err)
	}
	at := gone(t, s, "short", start.Add(5*ttl), ttl/20)
	if at.IsZero() {
		t.Fatalf("the key written with ttl %s is still there after %s", ttl, 5*ttl)
	}
	if lived := at.Sub(start); lived < ttl/2 {
		t.Fatalf("the key written with ttl %s was gone after %s", ttl, lived)
	}
	// What expiry leaves behind neither blocks a new Create nor lets the
	// expired revision write.
	if _, err := s.Update(ctx(t), "short", []byte("stale"), rev, 0); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("Update of the expired key at its last revision: got %v, want ErrConflict", err)
	}
	rev2 := mustCreate(t, s, "short", "again")
	if rev2 <= rev {
		t.Fatalf("Create after expiry returned revision %d, want more than the expired %d", rev2, rev)
	}
	wantValue(t, s, "short", "again", rev2)
}

// testTTLRestart writes a key with ttl, updates it with ttl half-way, and
// checks it is still there a quarter ttl after the first ttl ended. When the
// machine is too slow to keep that schedule it tries again with a new key.
func testTTLRestart(t *testing.T, s ledger.Store, ttl time.Duration) {
	for attempt := 1; attempt <= 3; attempt++ {
		key := fmt.Sprintf("restart-%d", attempt)
		t0 := time.Now()
		rev, err := s.Create(ctx(t), key, []byte("v1"), ttl)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		time.Sleep(time.Until(t0.Add(ttl / 2)))
		t1 := time.Now()
		if _, err := s.Update(ctx(t), key, []byte("v2"), rev, ttl); err != nil {
			if time.Since(t0) >= ttl/2+ttl/4 { // the first ttl may have ended
				t.Logf("attempt %d: the Update came %s after the Create: too late; trying again", attempt, time.Since(t0))
				continue
			}
			t.Fatalf("Update: %v", err)
		}
		if late := time.Since(t0); late > ttl/2+ttl/4 {
			t.Logf("attempt %d: the Update ended %s after the Create: too late; trying again", attempt, late)
			continue
		}
		// The first write's ttl ends by t0+ttl; the second's not before t1+ttl.
		time.Sleep(time.Until(t0.Add(ttl + ttl/4)))
		_, err = s.Get(ctx(t), key)
		if since := time.Since(t1); since >= ttl-ttl/10 {
			t.Logf("attempt %d: the Get ended %s after the Update: too late; trying again", attempt, since)
			continue
		}
		if err != nil {
			t.Fatalf("Get %s after the Create and %s after the Update that restarted the ttl of %s: %v",
				time.Since(t0), time.Since(t1), ttl, err)
		}
		if at := gone(t, s, key, t1.Add(5*ttl), ttl/20); at.IsZero() {
			t.Fatalf("the key updated with ttl %s is still there after %s", ttl, 5*ttl)
		}
		return
	}
	t.Fatal("the machine was too slow to keep the schedule in 3 attempts")
}

func testRetention(t *testing.T, s ledger.Store, retention time.Duration) {
	start := time.Now()
	if _, err := s.Create(ctx(t), "default-ttl", []byte("v"), 0); err != nil {
		t.Fatalf("Create with ttl 0: %v", err)
	}
	if _, err := s.Create(ctx(t), "negative-ttl", []byte("v"), -time.Second); err != nil {
		t.Fatalf("Create with a negative ttl: %v", err)
	}
	if _, err := s.Create(ctx(t), "long-ttl", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Create with ttl 1h: %v", err)
	}
	rev, err := s.Create(ctx(t), "updated", []byte("v"), time.Hour)
	if err != nil {
		t.Fatalf("Create with ttl 1h: %v", err)
	}
	if _, err := s.Update(ctx(t), "updated", []byte("v2"), rev, 0); err != nil {
		t.Fatalf("Update with ttl 0: %v", err)
	}
	for _, key := range []string{"default-ttl", "negative-ttl", "long-ttl", "updated"} {
		at := gone(t, s, key, start.Add(5*retention), retention/20)
		if at.IsZero() {
			t.Fatalf("%s is still there %s after it was written in a store with retention %s", key, 5*retention, retention)
		}
		if lived := at.Sub(start); lived < retention/2 {
			t.Fatalf("%s was gone %s after it was written in a store with retention %s", key, lived, retention)
		}
	}
}

// The race between processes. The parent creates the store and starts the
// children with the spec in childEnv; each child opens the store (Attach),
// prints readyLine, waits for a line on stdin so that all start together,
// races and prints its result line.
const (
	childEnv    = "STORETEST_CHILD"
	readyLine   = "storetest-ready"
	resultLine  = "storetest-result"
	processes   = 4
	perProcess  = 10
	childBudget = 90 * time.Second
)

type childSpec struct {
	Name       string `json:"name"`
	Key        string `json:"key"`
	Process    int    `json:"process"`
	Goroutines int    `json:"goroutines"`
}

type childResult struct {
	Won    int    `json:"won"`
	Exists int    `json:"exists"`
	Value  string `json:"value,omitempty"`
}

func raceProcesses(t *testing.T, f Factory, feat Features) {
	name := NewName()
	s := f(t, Options{Name: name})
	const key = "claim-across-processes"

	c, cancel := context.WithTimeout(t.Context(), childBudget)
	defer cancel()
	type child struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		lines  chan string
		stderr bytes.Buffer
		output []string
	}
	children := make([]*child, processes)
	for p := range children {
		spec, _ := json.Marshal(childSpec{Name: name, Key: key, Process: p, Goroutines: perProcess})
		ch := &child{lines: make(chan string, 1000)}
		ch.cmd = exec.CommandContext(c, os.Args[0], "-test.run=^"+feat.ChildTest+"$", "-test.count=1",
			"-test.timeout="+childBudget.String())
		ch.cmd.Env = append(append(os.Environ(), feat.ChildEnv...), childEnv+"="+string(spec))
		ch.cmd.Stderr = &ch.stderr
		ch.cmd.WaitDelay = 5 * time.Second
		var err error
		if ch.stdin, err = ch.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		stdout, err := ch.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.cmd.Start(); err != nil {
			t.Fatalf("starting child %d: %v", p, err)
		}
		go func() {
			defer close(ch.lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				ch.lines <- sc.Text()
			}
		}()
		children[p] = ch
	}
	// next returns the child's next line starting with prefix, or fails.
	next := func(p int, prefix string) string {
		ch := children[p]
		for {
			select {
			case line, ok := <-ch.lines:
				if !ok {
					err := ch.cmd.Wait()
					t.Fatalf("child %d ended (%v) before printing %s; output:\n%s\nstderr:\n%s",
						p, err, prefix, strings.Join(ch.output, "\n"), ch.stderr.String())
				}
				ch.output = append(ch.output, line)
				if rest, ok := strings.CutPrefix(line, prefix); ok {
					return strings.TrimSpace(rest)
				}
			case <-c.Done():
				t.Fatalf("child %d did not print %s within %s", p, prefix, childBudget)
			}
		}
	}
	for p := range children {
		next(p, readyLine)
	}
	for p, ch := range children {
		if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
			t.Fatalf("starting child %d's race: %v", p, err)
		}
	}
	var total childResult
	for p, ch := range children {
		var r childResult
		if err := json.Unmarshal([]byte(next(p, resultLine)), &r); err != nil {
			t.Fatalf("child %d's result: %v", p, err)
		}
		total.Won += r.Won
		total.Exists += r.Exists
		if r.Value != "" {
			total.Value = r.Value
		}
		for range ch.lines { // drain so that Wait can close the pipe
		}
		if err := ch.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v; stderr:\n%s", p, err, ch.stderr.String())
		}
	}
	if total.Won != 1 || total.Exists != processes*perProcess-1 {
		t.Fatalf("%d won and %d got ErrExists across %d processes, want 1 and %d",
			total.Won, total.Exists, processes, processes*perProcess-1)
	}
	e, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(e.Value) != total.Value {
		t.Fatalf("stored value %q, the winner wrote %q", e.Value, total.Value)
	}
}

// RunChild is the body of a racer process of Run's race between processes;
// call it from the test function Features.ChildTest names, with the same
// Factory. Outside such a process (no spec in the environment) it skips.
func RunChild(t *testing.T, f Factory) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("runs only as a child process of storetest.Run")
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatalf("%s: %v", childEnv, err)
	}
	s := f(t, Options{Name: spec.Name, Attach: true})
	fmt.Println(readyLine)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "go" {
		t.Fatalf("waiting for the start signal: got %q, %v", line, err)
	}
	won, exists, value := claimRace(t, s, spec.Key, spec.Goroutines, fmt.Sprintf("process-%d-goroutine", spec.Process))
	out, _ := json.Marshal(childResult{Won: won, Exists: exists, Value: value})
	fmt.Println(resultLine, string(out))
}

// Benchmark measures the ledger's cycle for one command on s: Create,
// Update, Delete of a fresh key with a typical record. "serial" is the
// latency of one cycle; "parallel" the throughput of GOMAXPROCS goroutines
// cycling at once.
func Benchmark(b *testing.B, s ledger.Store) {
	value := []byte(`{"state":"claimed","owner":"worker-7d9f-1","lease_until":"2026-11-23T10:00:30Z","command_id":"7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11"}`)
	var n atomic.Uint64
	cycle := func(ctx context.Context) error {
		key := "bench-" + strconv.FormatUint(n.Add(1), 10)
		rev, err := s.Create(ctx, key, value, time.Minute)
		if err != nil {
			return err
		}
		if rev, err = s.Update(ctx, key, value, rev, time.Minute); err != nil {
			return err
		}
		return s.Delete(ctx, key, rev)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := cycle(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := cycle(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
