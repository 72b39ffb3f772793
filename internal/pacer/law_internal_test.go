package pacer

import (
	"math"
	"testing"
	"time"
)

// drainAt sends whole calls at the instants the curve allows (capped at
// cap calls/s) into a token bucket of rate r and burst b, full at c.From,
// and returns when a call first finds no token.
func drainAt(l law, c Curve, r, b, capRate float64) time.Time {
	tokens, last := b, c.From
	at := l.advance(c, c.From, 0.5) // the first call leaves half an interval in
	for {
		next := l.advance(c, at, 1)
		if capRate > 0 {
			next = maxTime(next, at.Add(seconds(1/capRate)))
		}
		at = next
		tokens = math.Min(b, tokens+at.Sub(last).Seconds()*r)
		last = at
		if tokens < 1 {
			return at
		}
		tokens--
		if at.Sub(c.From) > time.Hour {
			panic("the bucket never ran dry")
		}
	}
}

func TestEstimateRecoversTheLimit(t *testing.T) {
	l := law{minRate: 1, decrease: 0.7, margin: 0.01, growth: 16, openAbove: 4, holdFor: 2 * time.Minute, probeScale: 30 * time.Second}
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		curve     Curve
		limit     float64
		burst     float64
		cap       float64
		tolerance float64
	}{
		{"a fleet 5% over the limit at a steady rate", Curve{Mode: ModeHold, Rate: 105, Limit: 105, Hold: time.Hour}, 100, 10, 0, 0.01},
		{"a slow probe after a hold", Curve{Mode: ModeHold, Rate: 495, Limit: 500, Hold: 10 * time.Second}, 500, 50, 0, 0.01},
		{"a probe at a low limit", Curve{Mode: ModeHold, Rate: 19.8, Limit: 20, Hold: 10 * time.Second}, 20, 2, 0, 0.02},
		{"a fast ramp at a high limit", Curve{Mode: ModeRamp, Rate: 50}, 500, 50, 0, 0.02},
		{"a fleet sending less than its rate allows", Curve{Mode: ModeHold, Rate: 1000, Limit: 1000, Hold: time.Hour}, 100, 10, 105, 0.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.curve
			c.From, c.Burst = t0, tc.burst
			at := drainAt(l, c, tc.limit, tc.burst, tc.cap)
			var caps []float64
			if tc.cap > 0 {
				caps = []float64{tc.cap}
			}
			est, ok := l.estimate(c, at, caps)
			if !ok {
				t.Fatalf("no estimate for a throttle at %v", at.Sub(t0))
			}
			if math.Abs(est.limit-tc.limit) > tc.tolerance*tc.limit {
				t.Errorf("estimate %.2f after %v, want %v within %v%%", est.limit, at.Sub(t0), tc.limit, 100*tc.tolerance)
			}
		})
	}
}

func TestRoughEstimatesHoldLessAndFurtherUnder(t *testing.T) {
	l := law{minRate: 1, decrease: 0.7, margin: 0.01, growth: 16, openAbove: 4, holdFor: 2 * time.Minute, probeScale: 30 * time.Second}
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ramp := Curve{Mode: ModeRamp, From: t0, Rate: 2, Burst: 2}
	at := drainAt(l, ramp, 20, 2, 0)
	next := l.cut(ramp, at, at.Add(time.Second), burst{}, nil)
	if next.Hold >= l.holdFor {
		t.Errorf("a ramp's rough estimate holds %v, want less than HoldFor %v", next.Hold, l.holdFor)
	}
	if next.Rate >= (1-l.margin)*next.Limit {
		t.Errorf("a ramp's rough estimate holds at %.2f of %.2f, want further under than the margin", next.Rate, next.Limit)
	}

	steady := Curve{Mode: ModeHold, From: t0, Rate: 495, Limit: 500, Burst: 50, Hold: 10 * time.Second}
	at = drainAt(l, steady, 500, 50, 0)
	next = l.cut(steady, at, at.Add(time.Second), burst{}, nil)
	if next.Hold != l.holdFor {
		t.Errorf("a probe's sure estimate holds %v, want HoldFor %v", next.Hold, l.holdFor)
	}
	if got, want := next.Rate, (1-l.margin)*next.Limit; math.Abs(got-want) > 1e-9 {
		t.Errorf("a sure estimate holds at %v, want %v (the margin under it)", got, want)
	}
}

// slowStartBurst is what a fresh process sees of a stand-in bucket of b
// calls refilled at 10·b calls/s: a slow start doubling every round trip
// (at most 16 in flight) until the first call finds no token. It returns
// the answers of the successes and of that throttle.
func slowStartBurst(b float64, rtt time.Duration) ([]time.Time, time.Time) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tokens, last := b, t0
	var ok []time.Time
	for k := 0; ; k++ {
		w := min(1<<k, 16)
		for i := range w {
			arrive := t0.Add(time.Duration(k)*rtt + time.Duration(i)*rtt/time.Duration(w) + rtt/2)
			tokens = math.Min(b, tokens+arrive.Sub(last).Seconds()*10*b)
			last = arrive
			if tokens < 1 {
				return ok, arrive.Add(rtt / 2)
			}
			tokens--
			ok = append(ok, arrive.Add(rtt/2))
		}
	}
}

func TestBucketShareTakesTheRefillOut(t *testing.T) {
	for _, b := range []float64{1, 2, 10, 50} {
		for _, rtt := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond} {
			ok, at := slowStartBurst(b, rtt)
			got := wholeBucket(bucketShare(ok, at))
			if got != b {
				t.Errorf("bucket of %v, round trip %v: %d successes measure a bucket of %v (%.2f), want %v",
					b, rtt, len(ok), got, bucketShare(ok, at), b)
			}
			if b == 50 && rtt == 5*time.Millisecond && float64(len(ok)) <= b {
				t.Errorf("bucket of 50: %d successes, want more (the refill while they came): the case is not tested", len(ok))
			}
		}
	}
}

func TestABucketOfOneCallCutsByDecrease(t *testing.T) {
	// A bucket of one call drains at the first call whatever Graph's
	// rate. Taken for an estimate, the throttle would explain a limit
	// equal to what the fleet sent, the cut would be the margin only,
	// and a fleet over the limit would be throttled at every opening of
	// the gate (the spiral seen at R=20 when a burst was counted short).
	l := law{minRate: 1, decrease: 0.7, margin: 0.01, growth: 16, openAbove: 4, holdFor: 2 * time.Minute, probeScale: 30 * time.Second}
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	c := Curve{Mode: ModeHold, From: t0, Rate: 30, Limit: 30, Burst: 1, Hold: time.Hour}
	at := drainAt(l, c, 20, 1, 0)
	next := l.cut(c, at, at.Add(time.Second), burst{}, nil)
	if want := l.decrease * 30; next.Rate > want+1e-9 {
		t.Errorf("a throttle of a bucket of one call at 30/s cuts to %.2f/s, want %.2f at most (the plain decrease)", next.Rate, want)
	}
}
