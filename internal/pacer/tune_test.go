package pacer_test

import (
	"os"
	"testing"
	"time"
)

func TestRobustness(t *testing.T) {
	if os.Getenv("PACER_TUNE") == "" {
		t.Skip()
	}
	w1, w2, w3, w429 := 10.0, 10.0, 10.0, 0.0
	for _, lat := range []time.Duration{0, 2 * time.Millisecond, 4 * time.Millisecond, 10 * time.Millisecond} {
		for _, limit := range []float64{20, 100, 500} {
			for _, n := range []int{1, 3} {
				for seed := range uint64(5) {
					sp := simBase(limit, n, 120*time.Second)
					sp.latency, sp.seed = lat, seed
					a := simulate(t, sp)
					sp.duration = 300 * time.Second
					b := simulate(t, sp)
					x, y, z := a.rate(5, 120)/limit, b.rate(0, 300)/limit, a.rate(0, 120)/limit
					if x < 0.96 || y < 0.96 || z < 0.953 {
						t.Logf("lat=%v R=%v n=%d seed=%d: after5 %.3f whole300 %.3f whole120 %.3f 429 %.2f%%", lat, limit, n, seed, x, y, z, 100*a.throttledShare())
					}
					w1, w2, w3 = min(w1, x), min(w2, y), min(w3, z)
					w429 = max(w429, a.throttledShare(), b.throttledShare())
				}
			}
		}
	}
	t.Logf("worst: after5 %.3f whole300 %.3f whole120 %.3f 429 %.2f%%", w1, w2, w3, 100*w429)
}
