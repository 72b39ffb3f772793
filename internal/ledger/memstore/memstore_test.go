package memstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/memstore"
	"github.com/graphops/worker/internal/ledger/storetest"
)

// The in-memory store passes the conformance suite of the real stores, so
// tests that use it see their behaviour. The race between processes does
// not apply: the store lives in one process.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) ledger.Store {
		return memstore.New(o.Retention)
	}, storetest.Features{MinTTL: 200 * time.Millisecond})
}

func TestFailMakesEveryOperationFailUntilCleared(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(0)
	rev, err := s.Create(ctx, "k", []byte("v"), 0)
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("connection refused")
	s.Fail(down)
	_, errGet := s.Get(ctx, "k")
	_, errCreate := s.Create(ctx, "other", nil, 0)
	_, errUpdate := s.Update(ctx, "k", []byte("w"), rev, 0)
	errDelete := s.Delete(ctx, "k", rev)
	for op, err := range map[string]error{"Get": errGet, "Create": errCreate, "Update": errUpdate, "Delete": errDelete} {
		if !errors.Is(err, down) {
			t.Errorf("%s while failing: %v, want the injected error", op, err)
		}
	}
	s.Fail(nil)
	if e, err := s.Get(ctx, "k"); err != nil || string(e.Value) != "v" || e.Revision != rev {
		t.Errorf("after Fail(nil): %+v, %v; want the value untouched", e, err)
	}
}
