package pacer_test

import (
	"math"
	"testing"
	"time"
)

func TestInFlightFollowsRateAndLatency(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rate    float64       // fleet rate held (one replica)
		latency time.Duration // of every call
		want    float64       // rate × (2 × latency + 0.25 s)
	}{
		{"Graph at 100/s answering in 300ms", 100, 300 * time.Millisecond, 85},
		{"Graph at 100/s answering at once", 100, 0, 25},
		{"Graph at 5/s answering in 450ms", 5, 450 * time.Millisecond, 5.75},
		{"Graph at 20/s answering in 1s", 20, time.Second, 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			fleet := newMemFleet()
			holdAt(fleet, clock, tc.rate)
			p := newPacer(clock, fleet, "a", 0)
			mustSync(t, p)
			// Calls of a steady latency, one after the other: the
			// smoothed latency converges on it.
			for range 100 {
				r := p.Reserve()
				clock.Advance(r.Delay())
				if _, ok := r.Ready(); !ok {
					t.Fatal("a reservation was not taken at its instant")
				}
				clock.Advance(tc.latency)
				p.Succeeded()
			}
			if got := p.Latency(); (got - tc.latency).Abs() > time.Millisecond {
				t.Errorf("Latency() = %v, want %v", got, tc.latency)
			}
			if got := p.InFlight(); math.Abs(got-tc.want) > 0.01*tc.want {
				t.Errorf("InFlight() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInFlightWhileOpen(t *testing.T) {
	clock := newFakeClock()
	p := newPacer(clock, nil, "a", 0)
	if got := p.InFlight(); got != 2 {
		t.Fatalf("InFlight() of a fresh pacer = %v, want 2 (twice the slow start's window of 1)", got)
	}
	// The window grows by one per success until 1,024 calls are in
	// flight, and the slow start ends.
	for range 1024 {
		r := p.Reserve()
		if _, ok := r.Ready(); !ok {
			// The window is full: land the oldest call.
			p.Succeeded()
			if _, ok := r.Ready(); !ok {
				t.Fatal("a success did not free a place in the window")
			}
		}
	}
	for range 1024 {
		p.Succeeded()
	}
	if got := p.InFlight(); !math.IsInf(got, 1) {
		t.Errorf("InFlight() after the slow start = %v, want +Inf (only the caller's cap bounds it)", got)
	}
}
