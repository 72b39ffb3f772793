package bench

import (
	"testing"
	"time"

	"github.com/graphops/worker/internal/graphsim"
)

func TestMeasureCountsTheWindowFromTheFirstAppliedSecond(t *testing.T) {
	b := func(applied, throttled int) graphsim.Bucket {
		return graphsim.Bucket{Applied: applied, Throttled: throttled}
	}
	tests := []struct {
		name                   string
		timeline               []graphsim.Bucket
		window                 time.Duration
		wantApplied            int
		wantPerSec, wantSteady float64
		wantLate               float64
		wantSteadyFrom         time.Duration
		wantTimeline           int
	}{
		{
			name:     "seconds before the first applied write are not in the window, and the drain after it is not counted",
			timeline: []graphsim.Bucket{b(0, 0), b(0, 0), b(10, 0), b(20, 0), b(30, 0), b(40, 0), b(99, 0)},
			window:   4 * time.Second, wantApplied: 100, wantPerSec: 25, wantSteady: 25, wantLate: 35, wantTimeline: 5,
		},
		{
			name:     "the steady state starts the second after the first throttle",
			timeline: []graphsim.Bucket{b(10, 0), b(5, 3), b(20, 0), b(30, 1)},
			window:   4 * time.Second, wantApplied: 65, wantPerSec: 16.25, wantSteady: 25, wantLate: 25,
			wantSteadyFrom: 2 * time.Second, wantTimeline: 4,
		},
		{
			name:     "a throttle in the last second of the window leaves the whole window as the steady state",
			timeline: []graphsim.Bucket{b(10, 0), b(10, 4)},
			window:   2 * time.Second, wantApplied: 20, wantPerSec: 10, wantSteady: 10, wantLate: 10, wantTimeline: 2,
		},
		{
			name:     "a run shorter than the window is divided by the whole window",
			timeline: []graphsim.Bucket{b(6, 0), b(6, 0)},
			window:   4 * time.Second, wantApplied: 12, wantPerSec: 3, wantSteady: 3, wantLate: 0, wantTimeline: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pr PacingRun
			pr.measure(tt.timeline, tt.window)
			if pr.Applied != tt.wantApplied || pr.PerSec != tt.wantPerSec || pr.SteadyPerSec != tt.wantSteady ||
				pr.LatePerSec != tt.wantLate || pr.SteadyFrom != tt.wantSteadyFrom || len(pr.Timeline) != tt.wantTimeline {
				t.Errorf("got applied %d, %v/s, steady %v/s from %v, late %v/s, %d seconds; want %d, %v/s, steady %v/s from %v, late %v/s, %d seconds",
					pr.Applied, pr.PerSec, pr.SteadyPerSec, pr.SteadyFrom, pr.LatePerSec, len(pr.Timeline),
					tt.wantApplied, tt.wantPerSec, tt.wantSteady, tt.wantSteadyFrom, tt.wantLate, tt.wantTimeline)
			}
		})
	}
}

func TestPercentileIsTheNearestRank(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond // unsorted on purpose
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"p50 of 1..100 ms is 50 ms", ds, 50, 50 * time.Millisecond},
		{"p99 of 1..100 ms is 99 ms", ds, 99, 99 * time.Millisecond},
		{"p100 is the maximum", ds, 100, 100 * time.Millisecond},
		{"p99 of a single value is that value", []time.Duration{7}, 99, 7},
		{"no values give zero", nil, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("percentile sorted its argument in place")
	}
}

func TestRangeOfGivesMedianMinAndMax(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Range
	}{
		{"an odd count has a middle value", []float64{3, 1, 2}, Range{2, 1, 3}},
		{"an even count averages the two middle values", []float64{4, 1, 3, 2}, Range{2.5, 1, 4}},
		{"no values give zeros", nil, Range{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rangeOf(tt.in); got != tt.want {
				t.Errorf("rangeOf(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestLedgerSampleCostIsPerCommand(t *testing.T) {
	var s ledgerSample
	s.add(ledgerSample{commands: 10, count: map[string]float64{"claim": 10, "lease": 10, "read": 0},
		seconds: map[string]float64{"claim": 0.010, "lease": 0.030}})
	s.add(ledgerSample{commands: 10, count: map[string]float64{"claim": 10, "lease": 10},
		seconds: map[string]float64{"claim": 0.010, "lease": 0.030}})
	c := s.cost()
	if c.OpsPerCommand != 2 || c.TimePerCommand != 4*time.Millisecond {
		t.Errorf("got %.2f ops and %v per command, want 2 and 4ms", c.OpsPerCommand, c.TimePerCommand)
	}
	if got := c.ByOp["lease"]; got.PerCommand != 1 || got.Mean != 3*time.Millisecond {
		t.Errorf("lease: %+v, want 1 per command, 3ms mean", got)
	}
	if _, ok := c.ByOp["read"]; ok {
		t.Error("an operation that never ran is listed")
	}
}
