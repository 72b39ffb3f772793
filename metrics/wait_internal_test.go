package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The wait gauge is tested from inside the package because its point, a
// value that expires on its own, needs a clock the test can move.
func TestAThrottleWaitReadsAsSetUntilItHasPassed(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	g := newWaitGauge(prometheus.NewDesc("wait_seconds", "test", []string{"operation"}, nil), func() time.Time { return now })
	reg := prometheus.NewRegistry()
	reg.MustRegister(g)
	read := func() float64 {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil || len(fams) != 1 || len(fams[0].GetMetric()) != 1 {
			t.Fatalf("Gather = %v, %v", fams, err)
		}
		return fams[0].GetMetric()[0].GetGauge().GetValue()
	}

	steps := []struct {
		name    string
		set     *float64 // nil: no call
		advance time.Duration
		want    float64
	}{
		{"a gate closed for 30s reads 30", ptr(30), 0, 30},
		{"it still reads 30 a moment before the wait ends", nil, 29*time.Second + 999*time.Millisecond, 30},
		{"it reads 0 once the wait has passed, with no call", nil, time.Millisecond, 0},
		{"a new throttle reads its own wait", ptr(12.5), 0, 12.5},
		{"an explicit 0 opens the gate at once", ptr(0), 0, 0},
		{"a negative wait reads 0", ptr(-5), 0, 0},
		{"a huge value does not overflow into the past", ptr(4102444800), 365 * 24 * time.Hour, 4102444800},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if s.set != nil {
			g.set("resume", *s.set)
		}
		if got := read(); got != s.want {
			t.Errorf("%s: reads %v, want %v", s.name, got, s.want)
		}
	}
}

func ptr(f float64) *float64 { return &f }
