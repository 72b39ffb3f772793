package graphsim_test

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphops/worker/internal/graphsim"
)

// fakeClock is an injectable Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRateLimitOverHTTP(t *testing.T) {
	type step struct {
		advance        time.Duration
		call           call
		wantStatus     int
		wantRetryAfter string
	}
	write := func(i int) call {
		return call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i" + strconv.Itoa(i))}
	}
	patch := call{method: http.MethodPatch, path: roleURL("azureResources", "r1"), body: `{"reason":"x"}`}
	read := call{method: http.MethodGet, path: readURL("req")}
	tests := []struct {
		name          string
		cfg           graphsim.Config
		steps         []step
		wantThrottled int
	}{
		{
			name: "an empty bucket answers 429 TooManyRequests with a whole-second Retry-After until a token refills",
			cfg:  graphsim.Config{WriteRate: 1, Burst: 1},
			steps: []step{
				{0, write(1), 204, ""},
				{0, write(2), 429, "1"},
				{500 * time.Millisecond, write(2), 429, "1"},
				{500 * time.Millisecond, write(2), 204, ""},
			},
			wantThrottled: 2,
		},
		{
			name: "resumes and PATCHes share the bucket, reads never wait on it",
			cfg:  graphsim.Config{WriteRate: 0.5, Burst: 2},
			steps: []step{
				{0, write(1), 204, ""},
				{0, patch, 200, ""},
				{0, read, 200, ""},
				{0, read, 200, ""},
				{0, patch, 429, "2"},
				{0, write(2), 429, "2"},
			},
			wantThrottled: 2,
		},
		{
			name: "with PenalizeThrottled a 429 storm pushes the next token further away",
			cfg:  graphsim.Config{WriteRate: 1, Burst: 1, PenalizeThrottled: true},
			steps: []step{
				{0, write(1), 204, ""},
				{0, write(2), 429, "2"},
				{0, write(2), 429, "3"},
				{0, write(2), 429, "4"},
				{3 * time.Second, write(2), 429, "2"},
				{2 * time.Second, write(2), 204, ""},
			},
			wantThrottled: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.cfg.Now = clock.Now
			tt.cfg.AutoCreate = true
			f := newFixture(t, tt.cfg)
			for i, st := range tt.steps {
				clock.Advance(st.advance)
				a := f.do(t, st.call)
				code := ""
				if st.wantStatus == 429 {
					code = "TooManyRequests"
				}
				checkAnswer(t, a, st.wantStatus, code)
				if got := a.header.Get("Retry-After"); got != st.wantRetryAfter {
					t.Errorf("step %d: Retry-After = %q, want %q", i, got, st.wantRetryAfter)
				}
			}
			stats := f.sim.Stats()
			if stats.Throttled != tt.wantThrottled || stats.Status[429] != tt.wantThrottled {
				t.Errorf("Throttled = %d, Status[429] = %d; want %d", stats.Throttled, stats.Status[429], tt.wantThrottled)
			}
		})
	}
}

func TestAThrottledResumeAppliesNothing(t *testing.T) {
	f := newFixture(t, graphsim.Config{WriteRate: 1, Burst: 1, Now: newFakeClock().Now})
	f.sim.AddAssignmentRequest("req", "i1", "i2")
	checkAnswer(t, f.do(t, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i1")}), 204, "")
	checkAnswer(t, f.do(t, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i2")}), 429, "TooManyRequests")
	if got, _ := f.sim.Instance("req", "i2"); got != graphsim.StatusWaitingForCallback {
		t.Errorf("throttled instance = %q, want waitingForCallback", got)
	}
	if got := f.sim.AppliedCount("req"); got != 1 {
		t.Errorf("AppliedCount = %d, want 1", got)
	}
}

func TestRateLimitWithTheRealClock(t *testing.T) {
	// A small rate on the real clock: the second call, well within a second,
	// finds the bucket empty (no timing assertion beyond that).
	f := newFixture(t, graphsim.Config{WriteRate: 0.1, AutoCreate: true})
	checkAnswer(t, f.do(t, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i1")}), 204, "")
	a := f.do(t, call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i2")})
	checkAnswer(t, a, 429, "TooManyRequests")
	if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 || n > 10 {
		t.Errorf("Retry-After = %q, want whole seconds in [1, 10]", a.header.Get("Retry-After"))
	}
}

func TestLimitWarningHeaders(t *testing.T) {
	write := func(i int) call {
		return call{method: http.MethodPost, path: resumeURL("req"), body: resumeBody("i" + strconv.Itoa(i))}
	}
	for _, tc := range []struct {
		name string
		cfg  graphsim.Config
		// x-ms-throttle-limit-percentage of ten calls at once, then of one
		// a second later.
		want []string
	}{
		{"past 80 % of a bucket of 5, every answer says how much is spent, 429s too",
			graphsim.Config{WriteRate: 1, Burst: 5, LimitWarning: true},
			[]string{"", "", "", "", "1.00", "1.00", "1.00", "1.00", "1.00", "1.00", "1.00"}},
		{"with throttled calls charged the level goes into debt, up to 1.8",
			graphsim.Config{WriteRate: 1, Burst: 5, LimitWarning: true, PenalizeThrottled: true},
			[]string{"", "", "", "", "1.00", "1.20", "1.40", "1.60", "1.80", "1.80", "1.80"}},
		{"another application spending half the rate halves the refill",
			graphsim.Config{WriteRate: 2, Burst: 5, LimitWarning: true, OtherShare: 0.5},
			[]string{"", "", "", "", "1.00", "1.00", "1.00", "1.00", "1.00", "1.00", "1.00"}},
		{"without LimitWarning no header", graphsim.Config{WriteRate: 1, Burst: 5},
			[]string{"", "", "", "", "", "", "", "", "", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			tc.cfg.Now = clock.Now
			tc.cfg.AutoCreate = true
			f := newFixture(t, tc.cfg)
			var got []string
			var last answer
			for i := range 11 {
				if i == 10 {
					clock.Advance(time.Second)
				}
				last = f.do(t, write(i))
				got = append(got, last.header.Get("x-ms-throttle-limit-percentage"))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("x-ms-throttle-limit-percentage = %q, want %q", got, tc.want)
			}
			// The call a second later found one refilled token (two
			// charged refusals too many with the penalty: refused).
			scope := last.header.Get("x-ms-throttle-scope")
			if (last.status == 429) != (tc.cfg.LimitWarning && tc.cfg.PenalizeThrottled) {
				t.Errorf("the call a second later answered %d", last.status)
			}
			if last.status == 429 && (!strings.HasPrefix(scope, "Tenant_Application/Write/") ||
				last.header.Get("x-ms-throttle-information") != "WriteLimitExceeded") {
				t.Errorf("a 429 carries scope %q and information %q", scope, last.header.Get("x-ms-throttle-information"))
			}
		})
	}
}
