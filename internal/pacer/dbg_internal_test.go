package pacer

import (
	"math"
	"testing"
	"time"
)

func TestDbgRamp(t *testing.T) {
	l := law{minRate: 1, decrease: 0.7, margin: 0.02, growth: 8, openAbove: 4, holdFor: time.Minute, probeScale: 30 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	for _, R := range []float64{20, 100, 500} {
		B := math.Max(1, math.Ceil(R/10))
		c := Curve{Mode: ModeRamp, From: t0, Rate: B, Burst: B}
		// exact discrete: departures per advance
		tokens := B
		last := t0
		at := t0
		sent := 0.0
		for {
			next := l.advance(c, t0, sent+1)
			tokens = math.Min(B, tokens+next.Sub(last).Seconds()*R)
			last = next
			sent++
			if tokens < 1 {
				at = next
				break
			}
			tokens--
		}
		est, _ := l.estimate(c, at)
		t.Logf("R=%v throttle after %v at F=%.1f est=%.2f", R, at.Sub(t0), l.rate(c, at), est)
	}
}
