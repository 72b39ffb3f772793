package pacer_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/pacer"
)

const op = "resume"

// newPacer is a pacer on the fake clock with jitter draws of u.
func newPacer(clock *fakeClock, fleet pacer.Fleet, id string, u float64) *pacer.Pacer {
	cfg := pacer.Config{Operation: op, Clock: clock, Rand: func() float64 { return u }, ReplicaID: id}
	if fleet != nil {
		cfg.Fleet = fleet
	}
	return mustNew(cfg)
}

// holdAt puts a fleet on a steady law of rate calls/s, as a throttle long
// ago would have.
func holdAt(f *memFleet, clock *fakeClock, rate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.states[op]
	st.Curve = pacer.Curve{Mode: pacer.ModeHold, From: clock.Now().Add(-time.Hour), Rate: rate, Limit: rate, Burst: 10, Hold: 10 * time.Hour}
	f.states[op] = st
}

// closeGate closes the fleet's gate for d, as another replica's throttle
// would, without touching the law.
func closeGate(f *memFleet, clock *fakeClock, d time.Duration) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.states[op]
	st.Until = clock.Now().Add(d)
	f.states[op] = st
	return st.Until
}

func mustSync(t *testing.T, ps ...*pacer.Pacer) {
	t.Helper()
	for _, p := range ps {
		if err := p.Sync(t.Context()); err != nil {
			t.Fatalf("Sync: %v", err)
		}
	}
}

func TestOpenPacerLetsEveryCallLeaveAtOnce(t *testing.T) {
	clock := newFakeClock()
	p := newPacer(clock, nil, "a", 0)
	// The slow start: one call in flight, one more per success, until
	// 1,024.
	for i := range 1024 {
		r := p.Reserve()
		if d := r.Delay(); d != 0 {
			t.Fatalf("call %d of the slow start: Delay %v, want 0", i, d)
		}
		p.Succeeded()
	}
	for i := range 5000 {
		if d := p.Reserve().Delay(); d != 0 {
			t.Fatalf("call %d after the slow start: Delay %v, want 0", i, d)
		}
	}
	if r := p.Rate(); !math.IsInf(r, 1) {
		t.Errorf("Rate() = %v, want +Inf before any throttle", r)
	}
	if n := clock.pending(); n != 0 {
		t.Errorf("%d timers started, want none", n)
	}
}

func TestSlowStartHoldsCallsUntilEarlierOnesLand(t *testing.T) {
	clock := newFakeClock()
	p := newPacer(clock, nil, "a", 0)
	first, second := p.Reserve(), p.Reserve()
	if first.Delay() != 0 {
		t.Fatalf("the first call waits")
	}
	if _, ok := second.Ready(); ok {
		t.Fatalf("a second call left with the first still in flight")
	}
	p.Succeeded() // the window grows to 2
	third := p.Reserve()
	if _, ok := second.Ready(); !ok {
		t.Errorf("the second call still waits after the first landed")
	}
	if _, ok := third.Ready(); !ok {
		t.Errorf("the third call waits with a window of two and one in flight")
	}
	if _, ok := p.Reserve().Ready(); ok {
		t.Errorf("a fourth call left with two in flight and a window of two")
	}
}

func TestThrottleClosesTheGateUntilRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter time.Duration
		want       time.Duration
	}{
		{"a Retry-After of 3s closes it for 3s", 3 * time.Second, 3 * time.Second},
		{"a fraction of a second is kept exactly", 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"no Retry-After closes it for 1s", 0, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			p := newPacer(clock, nil, "a", 0)
			booked := p.Reserve() // leaves at once
			queued := p.Reserve() // held by the slow start
			if booked.Delay() != 0 {
				t.Fatalf("the first call waits")
			}
			p.Throttled(tc.retryAfter)
			until := clock.Now().Add(tc.want)
			if got := p.ThrottledUntil(); !got.Equal(until) {
				t.Errorf("ThrottledUntil() = %v, want %v", got, until)
			}
			for name, r := range map[string]*pacer.Reservation{"booked before": queued, "booked after": p.Reserve()} {
				if d := r.Delay(); d < tc.want {
					t.Errorf("a call %s the throttle may leave after %v, before the gate (%v)", name, d, tc.want)
				}
			}
			clock.Advance(tc.want - time.Millisecond)
			if _, ok := queued.Ready(); ok {
				t.Errorf("a call left 1ms before the Retry-After instant")
			}
		})
	}
}

// waitSettled waits for Wait to return (true, and it returned nil) or to
// sleep on a new timer.
func waitSettled(clock *fakeClock, done <-chan error) bool {
	select {
	case err := <-done:
		return err == nil
	case <-clock.added:
		return false
	}
}

func TestWaitHoldsACallBookedBeforeTheThrottle(t *testing.T) {
	clock := newFakeClock()
	fleet := newMemFleet()
	holdAt(fleet, clock, 10) // one call every 100ms
	p := newPacer(clock, fleet, "a", 0)
	mustSync(t, p)
	if p.Reserve().Delay() != 0 {
		t.Fatalf("the first paced call waits")
	}
	r := p.Reserve()
	if d := r.Delay(); d != 100*time.Millisecond {
		t.Fatalf("Delay() = %v, want 100ms", d)
	}
	done := make(chan error, 1)
	go func() { done <- r.Wait(context.Background()) }()
	if waitSettled(clock, done) {
		t.Fatalf("Wait returned before its instant")
	}
	p.Throttled(2 * time.Second) // answered now: gate until +2s
	gate := p.ThrottledUntil()
	returned := false
	for !returned {
		clock.Advance(100 * time.Millisecond)
		returned = waitSettled(clock, done)
		if returned && clock.Now().Before(gate) {
			t.Fatalf("Wait returned at %v, before the Retry-After instant %v", clock.Now(), gate)
		}
		if !returned && clock.Now().After(gate.Add(200*time.Millisecond)) {
			t.Fatalf("Wait still waits at %v, well after the gate opened at %v", clock.Now(), gate)
		}
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	clock := newFakeClock()
	fleet := newMemFleet()
	holdAt(fleet, clock, 10)
	p := newPacer(clock, fleet, "a", 0)
	mustSync(t, p)
	p.Reserve()
	r, next := p.Reserve(), p.Reserve()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Wait(ctx) }()
	<-clock.added
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if d := next.Delay(); d != 100*time.Millisecond {
		t.Errorf("the call behind a canceled wait leaves in %v, want its slot (100ms)", d)
	}
	if err := r.Wait(context.Background()); !errors.Is(err, pacer.ErrCanceled) {
		t.Errorf("Wait on a canceled reservation = %v, want ErrCanceled", err)
	}
}

func TestCancelGivesTheSlotBack(t *testing.T) {
	clock := newFakeClock()
	fleet := newMemFleet()
	holdAt(fleet, clock, 10)
	p := newPacer(clock, fleet, "a", 0)
	mustSync(t, p)
	p.Reserve()
	second, third := p.Reserve(), p.Reserve()
	if d := third.Delay(); d != 200*time.Millisecond {
		t.Fatalf("third Delay() = %v, want 200ms", d)
	}
	second.Cancel()
	if d := third.Delay(); d != 100*time.Millisecond {
		t.Errorf("after the second call gave its slot back the third leaves in %v, want 100ms", d)
	}
}

func TestCallsLeaveSpacedWhenTheGateOpens(t *testing.T) {
	clock := newFakeClock()
	fleet := newMemFleet()
	holdAt(fleet, clock, 10)
	p := newPacer(clock, fleet, "a", 0.5)
	mustSync(t, p)
	gate := closeGate(fleet, clock, time.Second)
	mustSync(t, p)
	var instants []time.Time
	for range 16 {
		instants = append(instants, clock.Now().Add(p.Reserve().Delay()))
	}
	// Jitter 0.5 and a draw of 0.5: the first leaves a quarter of an
	// interval after the gate, the others one interval apart.
	if want := gate.Add(25 * time.Millisecond); !instants[0].Equal(want) {
		t.Errorf("the first call leaves at %v, want %v", instants[0], want)
	}
	for i := 1; i < len(instants); i++ {
		if gap := instants[i].Sub(instants[i-1]); (gap - 100*time.Millisecond).Abs() > time.Microsecond {
			t.Errorf("calls %d and %d leave %v apart, want 100ms", i-1, i, gap)
		}
	}
}

func TestReplicasLeaveStaggeredWhenTheFleetGateOpens(t *testing.T) {
	clock := newFakeClock()
	fleet := newMemFleet()
	holdAt(fleet, clock, 30) // 10/s per replica: 100ms apart each
	ps := []*pacer.Pacer{newPacer(clock, fleet, "a", 0.5), newPacer(clock, fleet, "b", 0.5), newPacer(clock, fleet, "c", 0.5)}
	mustSync(t, ps...)
	mustSync(t, ps...) // every replica knows the three
	gate := closeGate(fleet, clock, time.Second)
	mustSync(t, ps...)
	var firsts []time.Time
	for _, p := range ps {
		if !p.ThrottledUntil().Equal(gate) {
			t.Fatalf("the fleet's gate did not reach every replica")
		}
		firsts = append(firsts, clock.Now().Add(p.Reserve().Delay()))
	}
	for i, f := range firsts {
		if f.Before(gate) || !f.Before(gate.Add(100*time.Millisecond)) {
			t.Errorf("replica %d leaves first at %v, want within one interval after the gate %v", i, f, gate)
		}
		if i > 0 && f.Sub(firsts[i-1]) < 100*time.Millisecond/6 {
			t.Errorf("replicas %d and %d leave %v apart, want them spread over the interval", i-1, i, f.Sub(firsts[i-1]))
		}
	}
}

func TestRateLaw(t *testing.T) {
	t.Run("the throttle that ends the open phase holds under the limit its burst suggests", func(t *testing.T) {
		clock := newFakeClock()
		p := newPacer(clock, nil, "a", 0)
		for range 5 { // Graph let 5 calls through at once: its bucket
			p.Reserve().Delay()
			p.Succeeded()
		}
		p.Reserve().Delay()
		p.Throttled(time.Second)
		clock.Advance(time.Second)
		want := 50 * (1 - pacer.DefaultMargin) // a bucket of a tenth of a second
		if got := p.FleetRate(); math.Abs(got-want) > 0.01 {
			t.Errorf("FleetRate() at the gate = %v, want %v (the margin under 10 buckets/s)", got, want)
		}
		clock.Advance(30 * time.Second)
		if got := p.FleetRate(); math.Abs(got-want) > 0.01 {
			t.Errorf("FleetRate() 30s later = %v, want it held at %v", got, want)
		}
	})
	t.Run("a success answered while the gate is closed counts in the burst", func(t *testing.T) {
		clock := newFakeClock()
		p := newPacer(clock, nil, "a", 0)
		rs := make([]*pacer.Reservation, 6)
		for i := range rs {
			rs[i] = p.Reserve()
			if i < 4 {
				p.Succeeded()
			}
		}
		clock.Advance(time.Millisecond)
		p.Throttled(time.Second) // overtook the fifth call's answer
		p.Succeeded()
		clock.Advance(time.Second)
		if got, want := p.FleetRate(), 50*(1-pacer.DefaultMargin); math.Abs(got-want) > 0.01 {
			t.Errorf("FleetRate() at the gate = %v, want %v (a burst of 5, not 4)", got, want)
		}
	})
	t.Run("successes spread over longer than a burst start a ramp from them per second", func(t *testing.T) {
		clock := newFakeClock()
		p := newPacer(clock, nil, "a", 0)
		for range 5 {
			p.Reserve().Delay()
			p.Succeeded()
			clock.Advance(100 * time.Millisecond)
		}
		p.Reserve().Delay()
		p.Throttled(time.Second)
		clock.Advance(time.Second)
		if got := p.FleetRate(); math.Abs(got-5) > 0.01 {
			t.Errorf("FleetRate() at the gate = %v, want 5 (the successes, per second)", got)
		}
		clock.Advance(time.Second)
		if got := p.FleetRate(); math.Abs(got-5*pacer.DefaultRampGrowth) > 0.1 {
			t.Errorf("FleetRate() a second later = %v, want %v", got, 5*pacer.DefaultRampGrowth)
		}
	})
	t.Run("a throttle cuts the rate to just under the limit the episode reveals", func(t *testing.T) {
		clock := newFakeClock()
		fleet := newMemFleet()
		p := newPacer(clock, fleet, "a", 0)
		mustSync(t, p)
		// Graph's bucket holds 11 calls; the fleet sends 100/s from now;
		// it runs dry after 1s: the limit is 90/s.
		fleet.mu.Lock()
		fleet.states[op] = pacer.FleetState{Curve: pacer.Curve{Mode: pacer.ModeHold, From: clock.Now(), Rate: 100, Limit: 100, Burst: 11, Hold: time.Hour}}
		fleet.mu.Unlock()
		mustSync(t, p)
		clock.Advance(time.Second)
		p.Reserve()
		if _, ok := p.Reserve().Ready(); ok { // the rate holds this one back
			t.Fatalf("two calls left at once at 100/s")
		}
		p.Throttled(time.Second)
		clock.Advance(time.Second)
		want := 90 * (1 - pacer.DefaultMargin)
		if got := p.FleetRate(); math.Abs(got-want) > 0.02*want {
			t.Errorf("FleetRate() = %.2f, want %.2f (1%% under the 90/s limit)", got, want)
		}
	})
	t.Run("a throttle while the fleet used little of its rate cuts from what it sent", func(t *testing.T) {
		clock := newFakeClock()
		fleet := newMemFleet()
		holdAt(fleet, clock, 1000)
		p := newPacer(clock, fleet, "a", 0)
		mustSync(t, p)
		for range 20 { // 20 calls over the last second, never held back
			p.Reserve().Delay()
			p.Succeeded()
			clock.Advance(50 * time.Millisecond)
		}
		p.Throttled(time.Second)
		clock.Advance(time.Second)
		if got := p.FleetRate(); got < 20*pacer.DefaultDecrease || got > 20 {
			t.Errorf("FleetRate() = %v, want under the 20 calls/s sent, by Decrease at most", got)
		}
	})
	t.Run("the rate holds, then probes upward", func(t *testing.T) {
		clock := newFakeClock()
		fleet := newMemFleet()
		p := newPacer(clock, fleet, "a", 0)
		fleet.states[op] = pacer.FleetState{Curve: pacer.Curve{Mode: pacer.ModeHold, From: clock.Now(), Rate: 50, Limit: 51, Burst: 5, Hold: 10 * time.Second}}
		mustSync(t, p)
		clock.Advance(10 * time.Second)
		if got := p.FleetRate(); got != 50 {
			t.Errorf("FleetRate() at the end of the hold = %v, want 50", got)
		}
		clock.Advance(pacer.DefaultProbeScale)
		if got := p.FleetRate(); math.Abs(got-100) > 0.01 {
			t.Errorf("FleetRate() one ProbeScale into the probe = %v, want 100", got)
		}
		clock.Advance(pacer.DefaultProbeScale)
		if got := p.FleetRate(); !math.IsInf(got, 1) {
			t.Errorf("FleetRate() once the probe passed OpenAbove times the limit = %v, want +Inf (open)", got)
		}
	})
	t.Run("throttles never take the rate under MinRate", func(t *testing.T) {
		clock := newFakeClock()
		p := mustNew(pacer.Config{Operation: op, Clock: clock, MinRate: 3, Rand: func() float64 { return 0 }})
		for i := range 20 {
			r := p.Reserve()
			clock.Advance(r.Delay())
			if _, ok := r.Ready(); !ok {
				t.Fatalf("throttle %d: the call still waits at its instant", i)
			}
			p.Throttled(time.Second)
			if got := p.FleetRate(); got < 3 {
				t.Fatalf("after throttle %d FleetRate() = %v, under MinRate 3", i, got)
			}
		}
	})
}

func TestReplicasShareTheFleetRate(t *testing.T) {
	clock := newFakeClock()
	fleet := newMemFleet()
	holdAt(fleet, clock, 90)
	a, b, c := newPacer(clock, fleet, "a", 0), newPacer(clock, fleet, "b", 0), newPacer(clock, fleet, "c", 0)
	mustSync(t, a, b, c, a, b) // the first ones learn of the later ones
	for _, p := range []*pacer.Pacer{a, b, c} {
		if got := p.Rate(); got != 30 {
			t.Errorf("Rate() = %v, want 30 (a third of 90)", got)
		}
	}

	t.Run("a replica that stops syncing is dropped after its lease", func(t *testing.T) {
		clock.Advance(pacer.DefaultMemberLease + time.Second)
		mustSync(t, a, b)
		for _, p := range []*pacer.Pacer{a, b} {
			if got := p.Rate(); got != 30 {
				t.Errorf("Rate() = %v, want 30: after everyone was silent, the others get a round to come back", got)
			}
		}
		mustSync(t, a, b)
		for _, p := range []*pacer.Pacer{a, b} {
			if got := p.Rate(); got != 45 {
				t.Errorf("Rate() = %v, want 45 (half of 90)", got)
			}
		}
		if _, ok := fleet.state(op).Members["c"]; ok {
			t.Errorf("the record still lists the dead replica")
		}
	})
}

func TestRunRemovesTheReplicaWhenItEnds(t *testing.T) {
	clock := newFakeClock()
	fleet := newMemFleet()
	holdAt(fleet, clock, 90)
	a, b := newPacer(clock, fleet, "a", 0), newPacer(clock, fleet, "b", 0)
	var rates []float64
	a = mustNew(pacer.Config{Operation: op, Clock: clock, Fleet: fleet, ReplicaID: "a",
		OnChange: func(rate float64, _ time.Time) { rates = append(rates, rate) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	<-clock.added // the first round is done, Run waits for the next
	mustSync(t, b)
	if got := b.Rate(); got != 45 {
		t.Fatalf("b's Rate() = %v with a running, want 45", got)
	}
	cancel()
	<-done
	if _, ok := fleet.state(op).Members["a"]; ok {
		t.Errorf("a is still a member after its Run ended")
	}
	mustSync(t, b)
	if got := b.Rate(); got != 90 {
		t.Errorf("b's Rate() = %v after a left, want 90 at once", got)
	}
	if len(rates) == 0 || rates[0] != 90 {
		t.Errorf("OnChange saw %v, want the rate of a's first round (90, alone then)", rates)
	}
}

func TestPacingGoesOnWithoutTheStore(t *testing.T) {
	t.Run("a store that fails", func(t *testing.T) {
		clock := newFakeClock()
		fleet := newMemFleet()
		holdAt(fleet, clock, 10)
		p := newPacer(clock, fleet, "a", 0)
		mustSync(t, p)
		boom := errors.New("boom")
		fleet.fail = boom
		if err := p.Sync(t.Context()); !errors.Is(err, boom) {
			t.Fatalf("Sync = %v, want the store's error", err)
		}
		p.Reserve()
		if d := p.Reserve().Delay(); d != 100*time.Millisecond {
			t.Errorf("Delay() = %v with the store failing, want 100ms (the last known rate)", d)
		}
		p.Throttled(2 * time.Second)
		if d := p.Reserve().Delay(); d < 2*time.Second {
			t.Errorf("Delay() = %v after a throttle with the store failing, want at least the 2s gate", d)
		}
	})
	t.Run("a store that hangs", func(t *testing.T) {
		clock := newFakeClock()
		fleet := newMemFleet()
		fleet.block = make(chan struct{})
		p := newPacer(clock, fleet, "a", 0)
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() { p.Run(ctx); close(ran) }()
		defer func() { cancel(); close(fleet.block); <-ran }()

		calls := make(chan struct{})
		go func() {
			defer close(calls)
			for range 100 {
				p.Reserve().Delay()
				p.Succeeded()
			}
			p.Throttled(time.Second)
			p.Reserve().Delay()
			p.Rate()
			p.ThrottledUntil()
		}()
		guard := time.NewTimer(10 * time.Second)
		defer guard.Stop()
		select {
		case <-calls:
		case <-guard.C:
			t.Fatalf("calls blocked while the store hangs")
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   pacer.Config
		field string
	}{
		{"an operation is required", pacer.Config{}, "Operation"},
		{"a negative MinRate is refused", pacer.Config{Operation: op, MinRate: -1}, "MinRate"},
		{"a Decrease of 1 would never decrease", pacer.Config{Operation: op, Decrease: 1}, "Decrease"},
		{"a Margin of a half is refused", pacer.Config{Operation: op, Margin: 0.5}, "Margin"},
		{"a RampGrowth under 1 would not grow", pacer.Config{Operation: op, RampGrowth: 0.5}, "RampGrowth"},
		{"a negative HoldFor is refused", pacer.Config{Operation: op, HoldFor: -time.Second}, "HoldFor"},
		{"an OpenAbove under 1 is refused", pacer.Config{Operation: op, OpenAbove: 0.5}, "OpenAbove"},
		{"a lease shorter than the sync is refused", pacer.Config{Operation: op, MemberLease: 100 * time.Millisecond}, "MemberLease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.field)
			}
			// New reports the same error instead of panicking.
			p, err := pacer.New(tc.cfg)
			if p != nil || err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("New() = %v, %v, want no pacer and an error naming %s", p, err, tc.field)
			}
		})
	}
	t.Run("zero fields take the defaults", func(t *testing.T) {
		cfg := pacer.Config{Operation: op}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Validate() = %v", err)
		}
		if cfg.MinRate != pacer.DefaultMinRate || cfg.Margin != pacer.DefaultMargin || cfg.SyncInterval != pacer.DefaultSyncInterval ||
			cfg.ReplicaID == "" || cfg.Clock == nil || cfg.Rand == nil || cfg.Log == nil {
			t.Errorf("defaults not filled in: %+v", cfg)
		}
	})
}

// TestALateSuccessCountsInTheBurstOnlyIfItLeftWithTheThrottledCall: Graph
// answers in 40ms (under slowGraph, so the slow start sends as answers
// come; against a slower Graph it holds a slack, and a jittery one can
// still overtake it).
func TestALateSuccessCountsInTheBurstOnlyIfItLeftWithTheThrottledCall(t *testing.T) {
	clock := newFakeClock()
	p := mustNew(pacer.Config{Operation: op, Clock: clock, Rand: func() float64 { return 0 }, InitialWindow: 6})
	leave := func(n int) {
		for range n {
			if _, ok := p.Reserve().Ready(); !ok {
				t.Fatal("a call of the slow start's window was held")
			}
		}
	}
	// Six calls leave at once; Graph lets five through (a bucket of 5,
	// the guess 50/s) and throttles the sixth.
	leave(6)
	clock.Advance(40 * time.Millisecond)
	for range 4 {
		p.Succeeded()
	}
	leave(4) // the slow start sends its next calls as the answers come
	p.Throttled(time.Second)
	p.Succeeded() // the fifth, overtaken by the throttle: Graph's burst
	clock.Advance(40 * time.Millisecond)
	for range 4 {
		p.Succeeded() // left after the throttled call: Graph's refill
	}
	clock.Advance(time.Second)
	want := 50 * (1 - pacer.DefaultMargin)
	if got := p.FleetRate(); math.Abs(got-want) > 0.01 {
		t.Errorf("FleetRate() after the gate = %v, want %v (the guess from a bucket of 5)", got, want)
	}
}

// TestTheSlowStartAgainstASlowGraph: the first answer that took 50ms or
// more opens a window of 16 calls, and each success after it adds three
// (four-fold per round trip); the places an answer frees are used a slack
// after it (a tenth of the latency, at least 25ms), not at once. Answered
// at once, each success adds one (two-fold).
func TestTheSlowStartAgainstASlowGraph(t *testing.T) {
	for _, tc := range []struct {
		name    string
		latency time.Duration
		hold    time.Duration
		windows []int // after each round trip of a window of 2
	}{
		{"answers in 300ms", 300 * time.Millisecond, 30 * time.Millisecond, []int{16 + 3, 4 * 19}},
		{"answers at once", time.Millisecond, 0, []int{4, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			p := mustNew(pacer.Config{Operation: op, Clock: clock, InitialWindow: 2})
			leave := func() int {
				n := 0
				for range 200 {
					r := p.Reserve()
					if _, ok := r.Ready(); !ok {
						r.Cancel()
						break
					}
					n++
				}
				return n
			}
			if n := leave(); n != 2 {
				t.Fatalf("%d calls of an initial window of 2 left", n)
			}
			inFlight := 2
			for round, want := range tc.windows {
				clock.Advance(tc.latency)
				for range inFlight {
					p.Succeeded()
				}
				if tc.hold > 0 {
					if n := leave(); n != 0 {
						t.Errorf("round %d: %d calls left as the answers came, want none before the slack", round+1, n)
					}
					clock.Advance(tc.hold)
				}
				if inFlight = leave(); inFlight != want {
					t.Errorf("round %d: %d calls left, want a window of %d", round+1, inFlight, want)
				}
			}
		})
	}
}

// TestASlowWindowWaitsForA429OfTheSameWindow: the answers to one window
// come back together; a 429 a few milliseconds after the first success
// closes the gate before the places that success freed are used, so no
// call leaves into Graph's empty bucket to draw a 429 whose Retry-After
// would hold the gate a round trip longer.
func TestASlowWindowWaitsForA429OfTheSameWindow(t *testing.T) {
	clock := newFakeClock()
	p := mustNew(pacer.Config{Operation: op, Clock: clock, Rand: func() float64 { return 0 }, InitialWindow: 4})
	for range 4 {
		if _, ok := p.Reserve().Ready(); !ok {
			t.Fatal("a call of the initial window was held")
		}
	}
	clock.Advance(300 * time.Millisecond)
	p.Succeeded()
	p.Succeeded()
	r := p.Reserve() // a place is free and the window has grown
	if _, ok := r.Ready(); ok {
		t.Fatal("a call left as the first answers came")
	}
	clock.Advance(10 * time.Millisecond)
	p.Throttled(time.Second)
	p.Succeeded()
	for _, step := range []time.Duration{0, 30 * time.Millisecond, 500 * time.Millisecond} {
		clock.Advance(step)
		if _, ok := r.Ready(); ok {
			t.Fatalf("a call left %v after the 429, before its Retry-After", step)
		}
	}
	if d, _ := r.Ready(); d <= 0 || clock.Now().Add(d).Before(p.ThrottledUntil()) {
		t.Errorf("Ready() waits %v, want until the gate at %v", d, p.ThrottledUntil())
	}
}
