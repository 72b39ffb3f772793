package worker_test

import (
	"testing"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/pacer"
	"github.com/graphops/worker/internal/worker"
)

func TestAdmissionFollowsThePacers(t *testing.T) {
	pacers := map[command.Type]*pacer.Pacer{}
	for _, ty := range command.Types() {
		pacers[ty] = mustPacer(t, pacer.Config{Operation: string(ty)})
	}
	p := mustNew(t, worker.Config{HandbackAfter: 30 * time.Second}, worker.Deps{Pacers: pacers}, t.Context(), t.Context())
	// Fresh pacers are in their slow start: one call each in flight, one
	// more ready to leave; the floor of 16 is above.
	if n := p.Admissible(); n != 16 {
		t.Fatalf("fresh pacers admit %d, want the floor of 16", n)
	}
	// Throttled with a short Retry-After and nothing learnt of Graph's
	// burst, both ramp from 1 call/s, and no latency is measured yet:
	// Little's law asks for a quarter of a call each (the lead time); the
	// floor of 16, bounded by what leaves within half the hand-back
	// threshold (2 calls/s × 15s = 30), gives 16.
	pacers[command.TypeResume].Throttled(500 * time.Millisecond)
	pacers[command.TypeRoleRequestUpdate].Throttled(500 * time.Millisecond)
	if n := p.Admissible(); n != 16 {
		t.Fatalf("paced at 1/s each with no latency measured, %d admitted, want 16", n)
	}
	// With resume gated for 10s, role updates alone at 1/s: 15 leave
	// within half the hand-back threshold.
	pacers[command.TypeResume].Throttled(10 * time.Second)
	if n := p.Admissible(); n != 15 {
		t.Fatalf("with resume gated for 10s, %d admitted, want 15", n)
	}
	pacers[command.TypeRoleRequestUpdate].Throttled(10 * time.Second)
	if n := p.Admissible(); n != 0 {
		t.Fatalf("every gate closed for 10s, yet %d admitted", n)
	}
}

// mustPacer is pacer.New for a configuration the test knows to be valid.
func mustPacer(tb testing.TB, cfg pacer.Config) *pacer.Pacer {
	tb.Helper()
	p, err := pacer.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
