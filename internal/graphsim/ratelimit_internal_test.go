package graphsim

import (
	"testing"
	"time"
)

func TestBucketArithmetic(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	type step struct {
		at       time.Duration // since t0
		wantOK   bool
		wantWait time.Duration // when refused
	}
	tests := []struct {
		name     string
		rate     float64
		burst    int
		penalize bool
		steps    []step
	}{
		{
			name: "a full bucket lets a burst through then refuses until a token refills",
			rate: 10, burst: 2,
			steps: []step{{0, true, 0}, {0, true, 0}, {0, false, 100 * time.Millisecond},
				{40 * time.Millisecond, false, 60 * time.Millisecond}, {100 * time.Millisecond, true, 0},
				{100 * time.Millisecond, false, 100 * time.Millisecond}},
		},
		{
			name: "refill never exceeds the burst",
			rate: 1, burst: 2,
			steps: []step{{0, true, 0}, {time.Hour, true, 0}, {time.Hour, true, 0}, {time.Hour, false, time.Second}},
		},
		{
			name: "without penalty refused calls cost nothing",
			rate: 1, burst: 1,
			steps: []step{{0, true, 0}, {0, false, time.Second}, {0, false, time.Second}, {0, false, time.Second},
				{time.Second, true, 0}},
		},
		{
			name: "with penalty each refused call is charged and the wait grows",
			rate: 1, burst: 1, penalize: true,
			steps: []step{{0, true, 0}, {0, false, 2 * time.Second}, {0, false, 3 * time.Second},
				{0, false, 4 * time.Second}, {3 * time.Second, false, 2 * time.Second}, {5 * time.Second, true, 0}},
		},
		{
			name: "the penalty stops at minus ten bursts",
			rate: 2, burst: 1, penalize: true,
			steps: append([]step{{0, true, 0}}, append(repeat(step{0, false, 0}, 10),
				step{0, false, 5500 * time.Millisecond}, step{0, false, 5500 * time.Millisecond})...),
		},
		{
			name: "a clock that steps back refills nothing",
			rate: 1, burst: 1,
			steps: []step{{time.Second, true, 0}, {0, false, time.Second}, {time.Second, false, time.Second}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBucket(tt.rate, tt.burst, tt.penalize, t0)
			for i, st := range tt.steps {
				ok, wait := b.take(t0.Add(st.at))
				if ok != st.wantOK {
					t.Fatalf("step %d at %v: ok = %v, want %v", i, st.at, ok, st.wantOK)
				}
				if !ok && st.wantWait != 0 && (wait-st.wantWait).Abs() > time.Microsecond {
					t.Fatalf("step %d at %v: wait = %v, want %v", i, st.at, wait, st.wantWait)
				}
			}
		})
	}
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestRetryAfterSecondsRoundsUpToWholeSecondsOfAtLeastOne(t *testing.T) {
	tests := []struct {
		wait time.Duration
		want int
	}{
		{0, 1},
		{time.Nanosecond, 1},
		{100 * time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{2500 * time.Millisecond, 3},
		{11 * time.Second, 11},
	}
	for _, tt := range tests {
		if got := retryAfterSeconds(tt.wait); got != tt.want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", tt.wait, got, tt.want)
		}
	}
}

func TestNewDefaultsTheBurstToATenthOfTheRate(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		want  float64
	}{
		{"a slow rate gets a burst of one", 0.5, 0, 1},
		{"a rate of 25/s gets a burst of three", 25, 0, 3},
		{"an explicit burst wins", 25, 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{WriteRate: tt.rate, Burst: tt.burst})
			if s.bucket.burst != tt.want || s.bucket.floor != -10*tt.want {
				t.Fatalf("burst, floor = %v, %v; want %v, %v", s.bucket.burst, s.bucket.floor, tt.want, -10*tt.want)
			}
		})
	}
}
