package worker_test

import (
	"context"
	"math"
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
	p := mustProcessor(t, worker.Config{HandbackAfter: 30 * time.Second}, worker.Deps{Pacers: pacers}, t.Context(), t.Context())
	if n := p.Admissible(); n != math.MaxInt32 {
		t.Fatalf("open pacers admit %d, want no limit", n)
	}
	pacers[command.TypeResume].Throttled(10 * time.Second)
	if n := p.Admissible(); n == 0 {
		t.Fatal("one throttled operation paused fetching for the other")
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

// mustProcessor is worker.New for a configuration the test knows to be valid.
func mustProcessor(tb testing.TB, cfg worker.Config, d worker.Deps, drain, stop context.Context) *worker.Processor {
	tb.Helper()
	p, err := worker.New(cfg, d, drain, stop)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
