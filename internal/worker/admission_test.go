package worker_test

import (
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
		pacers[ty] = pacer.New(pacer.Config{Operation: string(ty)})
	}
	p := worker.New(worker.Config{HandbackAfter: 30 * time.Second}, worker.Deps{Pacers: pacers}, t.Context(), t.Context())
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
