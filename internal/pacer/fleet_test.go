package pacer_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/kvstore"
	"github.com/graphops/worker/internal/natsembed/natstest"
	"github.com/graphops/worker/internal/pacer"
)

// storePacer is a pacer of role_request_update on a store fleet.
func storePacer(clock *fakeClock, s ledger.Store, id string) *pacer.Pacer {
	return mustNew(pacer.Config{Operation: "role_request_update", Clock: clock, ReplicaID: id,
		Rand: func() float64 { return 0 }, Fleet: pacer.NewStoreFleet(s, "pacer")})
}

func readState(t *testing.T, s *memStore, key string) pacer.FleetState {
	t.Helper()
	e, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	var st pacer.FleetState
	if err := json.Unmarshal(e.Value, &st); err != nil {
		t.Fatalf("the record does not decode: %v", err)
	}
	return st
}

func TestStoreFleet(t *testing.T) {
	const key = "pacer.role_request_update"
	t.Run("the first sync creates one record per operation under the prefix", func(t *testing.T) {
		s := newMemStore()
		p := storePacer(newFakeClock(), s, "a")
		mustSync(t, p)
		if got := s.keys(); !slices.Equal(got, []string{key}) {
			t.Fatalf("keys = %v, want [%s]", got, key)
		}
		if _, ok := readState(t, s, key).Members["a"]; !ok {
			t.Errorf("the record does not list the replica")
		}
	})
	t.Run("replicas share the gate and the rate through the record", func(t *testing.T) {
		s := newMemStore()
		clock := newFakeClock()
		a, b := storePacer(clock, s, "a"), storePacer(clock, s, "b")
		mustSync(t, a, b)
		a.Reserve().Delay()
		a.Throttled(5 * time.Second)
		mustSync(t, a, b)
		if !b.ThrottledUntil().Equal(a.ThrottledUntil()) {
			t.Errorf("b's gate %v, want a's %v", b.ThrottledUntil(), a.ThrottledUntil())
		}
		if d := b.Reserve().Delay(); d < 5*time.Second {
			t.Errorf("b lets a call leave in %v, inside a's 5s Retry-After", d)
		}
		if a.FleetRate() != b.FleetRate() || a.Rate() != b.FleetRate()/2 {
			t.Errorf("fleet rates %v and %v, a's share %v: want one fleet rate, halved", a.FleetRate(), b.FleetRate(), a.Rate())
		}
	})
	t.Run("a compare-and-swap lost to another replica is retried", func(t *testing.T) {
		s := newMemStore()
		p := storePacer(newFakeClock(), s, "a")
		mustSync(t, p)
		raced := false
		s.beforeUpdate = func() {
			if !raced {
				raced = true
				s.put(key, []byte(`{"curve":{"mode":"open"},"members":{"b":{"seen":"2026-11-23T10:00:00Z"}}}`))
			}
		}
		mustSync(t, p)
		st := readState(t, s, key)
		if _, ok := st.Members["b"]; !ok {
			t.Errorf("the other replica's write was lost: %+v", st.Members)
		}
		if _, ok := st.Members["a"]; !ok {
			t.Errorf("the retried write is missing: %+v", st.Members)
		}
	})
	t.Run("a record that never stops changing gives ErrContention", func(t *testing.T) {
		s := newMemStore()
		p := storePacer(newFakeClock(), s, "a")
		mustSync(t, p)
		s.beforeUpdate = func() { s.put(key, []byte(`{}`)) }
		if err := p.Sync(t.Context()); !errors.Is(err, pacer.ErrContention) {
			t.Errorf("Sync = %v, want ErrContention", err)
		}
	})
	t.Run("a store error is returned wrapped", func(t *testing.T) {
		s := newMemStore()
		boom := errors.New("boom")
		s.fail = boom
		if err := storePacer(newFakeClock(), s, "a").Sync(t.Context()); !errors.Is(err, boom) {
			t.Errorf("Sync = %v, want it to wrap the store's error", err)
		}
	})
	t.Run("a record that does not decode is replaced", func(t *testing.T) {
		s := newMemStore()
		s.put(key, []byte("not json"))
		mustSync(t, storePacer(newFakeClock(), s, "a"))
		if _, ok := readState(t, s, key).Members["a"]; !ok {
			t.Errorf("the record was not rewritten")
		}
	})
}

// TestStoreFleetOnJetStream runs two replicas on a real JetStream KV store.
func TestStoreFleetOnJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs an embedded JetStream server")
	}
	_, _, js := natstest.Start(t)
	s, err := kvstore.New(t.Context(), js, kvstore.Config{Bucket: "pacer-test", Retention: time.Hour})
	if err != nil {
		t.Fatalf("kvstore.New: %v", err)
	}
	clock := newFakeClock()
	a, b := storePacer(clock, s, "a"), storePacer(clock, s, "b")
	mustSync(t, a, b, a)
	a.Reserve().Delay()
	a.Throttled(3 * time.Second)
	mustSync(t, a, b)
	if !b.ThrottledUntil().Equal(a.ThrottledUntil()) {
		t.Errorf("b's gate %v, want a's %v", b.ThrottledUntil(), a.ThrottledUntil())
	}
	if got, want := b.Rate(), b.FleetRate()/2; got != want {
		t.Errorf("b's Rate() = %v, want half the fleet's (%v)", got, want)
	}
}
