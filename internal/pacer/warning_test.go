package pacer_test

import (
	"math"
	"testing"
	"time"

	"github.com/graphops/worker/internal/pacer"
)

// callWith makes one call through p on the fake clock: reserve, wait for
// the slot, latency, then a success reporting usage.
func callWith(t *testing.T, clock *fakeClock, p *pacer.Pacer, latency time.Duration, usage float64) {
	t.Helper()
	r := p.Reserve()
	clock.Advance(r.Delay())
	if _, ok := r.Ready(); !ok {
		t.Fatal("a reservation was not taken at its instant")
	}
	clock.Advance(latency)
	p.SucceededWithUsage(usage)
}

func TestGraphsEarlyWarning(t *testing.T) {
	const latency = 10 * time.Millisecond
	t.Run("open: the first warning ends the open phase without a gate", func(t *testing.T) {
		clock := newFakeClock()
		p := newPacer(clock, nil, "a", 0)
		// 20 calls one after the other: 20 sent in the last second.
		for range 20 {
			callWith(t, clock, p, latency, 0)
		}
		if got := p.FleetRate(); !math.IsInf(got, 1) {
			t.Fatalf("answers without the header changed the rate to %v", got)
		}
		callWith(t, clock, p, latency, 0.85)
		// What the replica sent in the last second (21 calls, 10ms
		// apart), times Decrease.
		if got, want := p.FleetRate(), pacer.DefaultDecrease*21; math.Abs(got-want) > 0.01 {
			t.Errorf("FleetRate() after the first warning = %v, want %v", got, want)
		}
		if until := p.ThrottledUntil(); until.After(clock.Now()) {
			t.Errorf("a warning closed the gate until %v", until)
		}
	})
	t.Run("paced: a steady usage cuts nothing, a rising one cuts once per law", func(t *testing.T) {
		clock := newFakeClock()
		fleet := newMemFleet()
		holdAt(fleet, clock, 90)
		p := newPacer(clock, fleet, "a", 0)
		mustSync(t, p)
		for range 200 {
			callWith(t, clock, p, latency, 0.85)
		}
		if got := p.FleetRate(); got != 90 {
			t.Fatalf("FleetRate() under a steady warning = %v, want 90", got)
		}
		callWith(t, clock, p, latency, 0.86)
		if got := p.FleetRate(); got != 90 {
			t.Fatalf("FleetRate() after a rise under warnRise = %v, want 90", got)
		}
		callWith(t, clock, p, latency, 0.87)
		want := pacer.DefaultDecrease * 90
		if got := p.FleetRate(); math.Abs(got-want) > 0.01 {
			t.Fatalf("FleetRate() after the usage rose by 0.02 = %v, want %v", got, want)
		}
		// Further warnings under the new law: the first sets the level,
		// a steady usage cuts nothing more.
		for range 50 {
			callWith(t, clock, p, latency, 0.9)
		}
		if got := p.FleetRate(); math.Abs(got-want) > 0.01 {
			t.Errorf("FleetRate() under a steady warning after the cut = %v, want %v", got, want)
		}
		// The fleet shares the cut.
		q := newPacer(clock, fleet, "b", 0)
		mustSync(t, p, q)
		if got := q.FleetRate(); math.Abs(got-want) > 0.01 {
			t.Errorf("another replica's FleetRate() = %v, want the cut %v", got, want)
		}
	})
}
