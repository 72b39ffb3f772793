package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/memstore"
)

// Predict answers what Begin then does, for every decision, and writes
// nothing: a dry run must neither claim nor lie.
func TestPredictSaysWhatBeginWouldDecide(t *testing.T) {
	ctx := context.Background()
	cmd := func(id, key, hash string) ledger.Identity {
		return ledger.Identity{Source: "urn:s", ID: id, Request: ledger.RequestOf("resume", "r1"), Key: key, BodyHash: hash}
	}
	applied, other, sameBody, conflict := cmd("c1", "k1", "h1"), cmd("c2", "k2", "h2"), cmd("c3", "k1", "h1"), cmd("c4", "k1", "h9")
	cases := []struct {
		name      string
		setup     func(t *testing.T, l *ledger.Ledger)
		id        ledger.Identity
		want      ledger.Decision
		wantFound bool
	}{
		{"nothing recorded is a first try", func(*testing.T, *ledger.Ledger) {}, applied, ledger.Claimed, false},
		{"an applied command again is a duplicate", applyOne(applied), applied, ledger.Duplicate, true},
		{"another command with a JSON-equal body is a duplicate", applyOne(applied), sameBody, ledger.Duplicate, true},
		{"another decision for the key is a conflict", applyOne(applied), conflict, ledger.Conflict, true},
		{"another command's live claim keeps the request busy", claimOne(other), applied, ledger.Busy, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := memstore.New(0)
			clk := &clock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
			l := replica(t, s, "replica-1", clk)
			c.setup(t, l)
			before := s.Keys()
			d, _, found, err := l.Predict(ctx, c.id, false)
			if err != nil || d != c.want || found != c.wantFound {
				t.Fatalf("Predict = %s (found %v, %v), want %s (found %v)", d, found, err, c.want, c.wantFound)
			}
			if after := s.Keys(); len(after) != len(before) {
				t.Fatalf("Predict wrote: keys %v, then %v", before, after)
			}
			if got, _, err := l.Begin(ctx, c.id, false); err != nil || got != c.want {
				t.Fatalf("Begin then decided %s (%v), Predict said %s", got, err, c.want)
			}
		})
	}
}

func applyOne(id ledger.Identity) func(*testing.T, *ledger.Ledger) {
	return func(t *testing.T, l *ledger.Ledger) {
		t.Helper()
		_, c, err := l.Begin(context.Background(), id, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Applied(context.Background(), 204, "g-1", false); err != nil {
			t.Fatal(err)
		}
	}
}

func claimOne(id ledger.Identity) func(*testing.T, *ledger.Ledger) {
	return func(t *testing.T, l *ledger.Ledger) {
		t.Helper()
		if _, _, err := l.Begin(context.Background(), id, false); err != nil {
			t.Fatal(err)
		}
	}
}
