package pacer_test

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/pacer"
)

// This file is a deterministic simulation of a fleet of workers against a
// model of the project's Graph stand-in (internal/graphsim): a token bucket
// per operation of R tokens/s and burst max(1, ceil(R/10)); a call with no
// token is answered 429 with Retry-After = ceil(seconds until a token), at
// least 1, and is charged a token too (down to -10 bursts). Time is
// simulated: no goroutines, no sleeps; the replicas call Reserve/Ready, the
// outcomes and Sync exactly when the model says.

// standIn is the stand-in's token bucket.
type standIn struct {
	rate, burst, tokens float64
	last                time.Time
}

func newStandIn(rate float64, now time.Time) *standIn {
	if rate <= 0 {
		return nil
	}
	b := math.Max(1, math.Ceil(rate/10))
	return &standIn{rate: rate, burst: b, tokens: b, last: now}
}

// take answers one write call at now: ok, or the Retry-After of the 429.
func (s *standIn) take(now time.Time) (bool, time.Duration) {
	if s == nil {
		return true, 0
	}
	if el := now.Sub(s.last); el > 0 {
		s.tokens = math.Min(s.burst, s.tokens+el.Seconds()*s.rate)
		s.last = now
	}
	if s.tokens >= 1 {
		s.tokens--
		return true, 0
	}
	s.tokens = math.Max(-10*s.burst, s.tokens-1)
	wait := (1 - s.tokens) / s.rate
	return false, time.Duration(math.Max(1, math.Ceil(wait))) * time.Second
}

// simClock is the simulation's time, shared by every replica.
type simClock struct{ now time.Time }

func (c *simClock) Now() time.Time { return c.now }
func (c *simClock) NewTimer(time.Duration) pacer.Timer {
	panic("the simulation drives Ready and Sync itself")
}

type simParams struct {
	limit       float64 // stand-in rate R, calls/s; 0 means unlimited
	replicas    int
	concurrency int           // calls in flight per replica
	latency     time.Duration // round trip of a Graph call
	jitter      time.Duration // each leg of a call takes up to this much longer (uniform), so answers can overtake each other
	duration    time.Duration
	syncEvery   time.Duration // each replica's Sync period (Run's SyncInterval)
	syncDelay   time.Duration // from a throttle to its sync (Run's kick)
	seed        uint64
	config      func(*pacer.Config) // tuning under test; nil: defaults
	joinAt      time.Duration       // the last replica starts then (0: at start)
	crashAt     time.Duration       // replica 0 stops dead then (0: never)
	storeDown   bool                // every Sync fails
	newLimit    float64             // Graph's limit from newLimitAt on
	newLimitAt  time.Duration
	bucket      float64 // Graph's burst, calls; 0: the stand-in's max(1, ceil(R/10))
	// admit makes concurrency the cap only: a free slot takes a command
	// only while fewer than InFlight are busy, as the broker adapters'
	// fetch loop does with the worker's Admissible.
	admit bool
}

type simResult struct {
	applied, throttled []int // per second
	early              int   // departures before the replica's own Retry-After instant
	open               bool  // the last replica's pacer was open at the end
	sent               []int // departures per tenth of a second
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// rate is the applied calls per second over seconds [from, to).
func (r simResult) rate(from, to int) float64 {
	return float64(sum(r.applied[from:to])) / float64(to-from)
}

// window is the load harness's measure: applied/s over the n seconds from
// the first second with an applied write, and that second.
func (r simResult) window(n int) (float64, int) {
	first := 0
	for first < len(r.applied) && r.applied[first] == 0 {
		first++
	}
	return r.rate(first, first+n), first
}

// throttledShare is the share of write calls answered 429, whole run.
func (r simResult) throttledShare() float64 {
	a, t := sum(r.applied), sum(r.throttled)
	return float64(t) / float64(a+t)
}

func (r simResult) String() string {
	var b strings.Builder
	for i := range r.applied {
		fmt.Fprintf(&b, "%d/%d ", r.applied[i], r.throttled[i])
	}
	return b.String()
}

// simEvent holds no pointer (times are offsets from the start), so that
// the heap moves it cheaply.
type simEvent struct {
	at      time.Duration
	seq     int
	ra      time.Duration
	kind    int8
	ok      bool
	replica int32
	slot    int32
}

const (
	evTry int8 = iota
	evArrive
	evAnswer
	evSync
	evKick
)

type eventQueue []simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// simulate runs replicas with a backlog that never ends: each of a
// replica's slots reserves, waits (Ready at the instant it names, or within
// 100ms, as Wait does), calls the stand-in, reports the outcome and starts
// the next call. Each replica syncs every syncEvery, and syncDelay after
// each throttle.
func simulate(t *testing.T, sp simParams) simResult {
	t.Helper()
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := &simClock{now: start}
	fleet := newMemFleet()
	if sp.storeDown {
		fleet.fail = errors.New("store unreachable")
	}
	graph := newStandIn(sp.limit, start)
	if graph != nil && sp.bucket > 0 {
		graph.burst, graph.tokens = sp.bucket, sp.bucket
	}
	rng := rand.New(rand.NewPCG(sp.seed, 7))

	type replica struct {
		p     *pacer.Pacer
		slots []*pacer.Reservation
		gate  time.Time // its own latest Retry-After instant
	}
	reps := make([]*replica, sp.replicas)
	q := &eventQueue{}
	seq := 0
	push := func(e simEvent) {
		seq++
		e.seq = seq
		heap.Push(q, e)
	}
	for i := range reps {
		cfg := pacer.Config{
			Operation: "resume",
			Clock:     clock,
			Rand:      rng.Float64,
			Fleet:     fleet,
			ReplicaID: fmt.Sprintf("replica-%d", i),
		}
		if sp.config != nil {
			sp.config(&cfg)
		}
		reps[i] = &replica{p: mustNew(cfg), slots: make([]*pacer.Reservation, sp.concurrency)}
		var at time.Duration
		if sp.joinAt > 0 && i == sp.replicas-1 {
			at = sp.joinAt
		}
		// Run syncs at once when it starts, then every syncEvery; the
		// replicas that start together are spread over the period.
		phase := time.Duration(float64(sp.syncEvery) * float64(i) / float64(sp.replicas))
		if at > 0 {
			phase = 0
		}
		push(simEvent{at: at + phase, kind: evSync, replica: int32(i)})
		for s := range sp.concurrency {
			push(simEvent{at: at, kind: evTry, replica: int32(i), slot: int32(s)})
		}
	}

	// leg is the time of one leg of a call (to Graph, or back).
	leg := func() time.Duration {
		d := sp.latency / 2
		if sp.jitter > 0 {
			d += time.Duration(rng.Float64() * float64(sp.jitter))
		}
		return d
	}
	seconds := int(sp.duration / time.Second)
	res := simResult{applied: make([]int, seconds), throttled: make([]int, seconds)}
	ctx := context.Background()
	for q.Len() > 0 {
		e := heap.Pop(q).(simEvent)
		if e.at >= sp.duration {
			break
		}
		now := start.Add(e.at)
		clock.now = now
		sec := int(e.at / time.Second)
		r := reps[e.replica]
		if sp.crashAt > 0 && e.replica == 0 && e.at >= sp.crashAt {
			continue // crashed: no more calls, no more syncs, no goodbye
		}
		switch e.kind {
		case evTry:
			if r.slots[e.slot] == nil && sp.admit {
				busy := 0
				for _, s := range r.slots {
					if s != nil {
						busy++
					}
				}
				if float64(busy) >= math.Ceil(r.p.InFlight()) {
					// The fetch loop looks again when a slot frees, or
					// every 100ms while the limit holds it.
					push(simEvent{at: e.at + 20*time.Millisecond, kind: evTry, replica: e.replica, slot: e.slot})
					continue
				}
			}
			if r.slots[e.slot] == nil {
				r.slots[e.slot] = r.p.Reserve()
			}
			d, ok := r.slots[e.slot].Ready()
			if !ok {
				push(simEvent{at: e.at + min(d, 100*time.Millisecond), kind: evTry, replica: e.replica, slot: e.slot})
				continue
			}
			if now.Before(r.gate) {
				res.early++
			}
			if k := int(e.at / (100 * time.Millisecond)); k < 10*seconds {
				if res.sent == nil {
					res.sent = make([]int, 10*seconds)
				}
				res.sent[k]++
			}
			push(simEvent{at: e.at + leg(), kind: evArrive, replica: e.replica, slot: e.slot})
		case evArrive:
			if sp.newLimitAt > 0 && e.at >= sp.newLimitAt && graph.rate != sp.newLimit {
				graph.take(now) // settle the bucket at the old rate
				graph.tokens++
				graph.rate, graph.burst = sp.newLimit, math.Max(1, math.Ceil(sp.newLimit/10))
				graph.tokens = math.Min(graph.tokens, graph.burst)
			}
			ok, ra := graph.take(now)
			push(simEvent{at: e.at + leg(), kind: evAnswer, replica: e.replica, slot: e.slot, ok: ok, ra: ra})
		case evAnswer:
			if e.ok {
				r.p.Succeeded()
				res.applied[sec]++
			} else {
				r.p.Throttled(e.ra)
				res.throttled[sec]++
				if g := now.Add(e.ra); g.After(r.gate) {
					r.gate = g
				}
				push(simEvent{at: e.at + sp.syncDelay, kind: evKick, replica: e.replica})
			}
			r.slots[e.slot] = nil
			push(simEvent{at: e.at, kind: evTry, replica: e.replica, slot: e.slot})
		case evSync, evKick:
			err := r.p.Sync(ctx)
			if (err != nil) != sp.storeDown {
				t.Fatalf("Sync: %v", err)
			}
			if e.kind == evSync {
				push(simEvent{at: e.at + sp.syncEvery, kind: evSync, replica: e.replica})
			}
		}
	}
	res.open = math.IsInf(reps[len(reps)-1].p.FleetRate(), 1)
	return res
}

// simBase is the brief's setting: 16 calls in flight per replica, a Graph
// round trip of 2ms, syncs every 250ms and 20ms after a throttle.
func simBase(limit float64, n int, d time.Duration) simParams {
	return simParams{limit: limit, replicas: n, concurrency: 16, latency: 2 * time.Millisecond,
		duration: d, syncEvery: 250 * time.Millisecond, syncDelay: 20 * time.Millisecond, seed: 1}
}

// TestFleetSimulation is the acceptance test of the rate law: against the
// stand-in's bucket, N replicas with a backlog apply at least 95% of Graph's
// rate and see at most 2% of their write calls answered 429.
//
// The 429s are counted over the whole run. The applied rate is counted
// over the whole of a 300s run (which includes the discovery and the
// probes), and over a 120s run less its first 5s (the discovery): the
// pacer starts open, as it must cost nothing while Graph does not limit,
// so the throttle that ends the open phase closes the gate for a
// Retry-After of at least a second, Graph's capacity that no pacer can
// save (its burst guesses the limit, so that finding it costs no second
// throttle; TestStartUp). The whole-run figures of the 120s run are
// logged: 0.974-0.977 here, 0.964-0.977 over seeds and Graph latencies
// of 0-10ms.
func TestFleetSimulation(t *testing.T) {
	for _, limit := range []float64{20, 100, 500} {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("R=%v N=%d", limit, n), func(t *testing.T) {
				t.Parallel()
				short := simulate(t, simBase(limit, n, 120*time.Second))
				long := simulate(t, simBase(limit, n, 300*time.Second))
				t.Logf("120s: applied %.3fR whole run, %.3fR after 5s, 429s %.2f%%; 300s: applied %.3fR, 429s %.2f%%",
					short.rate(0, 120)/limit, short.rate(5, 120)/limit, 100*short.throttledShare(),
					long.rate(0, 300)/limit, 100*long.throttledShare())
				for _, c := range []struct {
					name    string
					applied float64
					r       simResult
				}{
					{"120s run after discovery", short.rate(5, 120), short},
					{"300s run", long.rate(0, 300), long},
				} {
					if c.applied < 0.95*limit {
						t.Errorf("%s: applied %.1f/s, want at least %.1f/s (95%% of %v): %s", c.name, c.applied, 0.95*limit, limit, c.r)
					}
					if sh := c.r.throttledShare(); sh > 0.02 {
						t.Errorf("%s: %.2f%% of write calls answered 429, want at most 2%%", c.name, 100*sh)
					}
					if c.r.early > 0 {
						t.Errorf("%s: %d calls left before their replica's Retry-After instant", c.name, c.r.early)
					}
				}
			})
		}
	}
}

// TestFleetSimulationWithoutGraphLatency is the same fleet when Graph
// answers at once: the only spacing of calls is the pacer's.
func TestFleetSimulationWithoutGraphLatency(t *testing.T) {
	t.Parallel()
	for _, limit := range []float64{20, 100} {
		sp := simBase(limit, 3, 120*time.Second)
		sp.latency = 0
		r := simulate(t, sp)
		t.Logf("R=%v: applied %.3fR whole run, %.3fR after 5s, 429s %.2f%%", limit, r.rate(0, 120)/limit, r.rate(5, 120)/limit, 100*r.throttledShare())
		if a := r.rate(5, 120); a < 0.95*limit || r.throttledShare() > 0.02 || r.early > 0 {
			t.Errorf("R=%v: applied %.1f/s (want >= %.1f), 429s %.2f%% (want <= 2%%), %d early calls", limit, a, 0.95*limit, 100*r.throttledShare(), r.early)
		}
	}
}

// TestGraphNotLimiting: with no limit, a fleet doing thousands of calls a
// second runs at its own concurrency, the pacer costing only the slow start
// of a few round trips.
func TestGraphNotLimiting(t *testing.T) {
	t.Parallel()
	sp := simBase(0, 3, 10*time.Second)
	sp.latency = 5 * time.Millisecond
	r := simulate(t, sp)
	ideal := float64(sp.replicas*sp.concurrency) / sp.latency.Seconds() // 9600/s
	got := r.rate(0, 10)
	t.Logf("applied %.0f/s of %.0f/s", got, ideal)
	if got < 0.99*ideal {
		t.Errorf("applied %.0f/s, want at least 99%% of the fleet's %.0f/s", got, ideal)
	}
	if !r.open {
		t.Errorf("the pacer closed without a throttle")
	}
}

// TestReplicaJoins: a third replica joining a paced fleet takes its share
// out of the fleet rate instead of adding to it.
func TestReplicaJoins(t *testing.T) {
	t.Parallel()
	sp := simBase(100, 3, 120*time.Second)
	sp.joinAt = 40 * time.Second
	r := simulate(t, sp)
	t.Logf("applied %.3fR after the join, 429s %.2f%%: %s", r.rate(41, 120)/100, 100*r.throttledShare(), r)
	if got := sum(r.throttled[40:]); got > 3 {
		t.Errorf("%d 429s after the join, want at most 3 (the joiner's slow start meets a paced fleet)", got)
	}
	if a := r.rate(41, 120); a < 0.95*100 {
		t.Errorf("applied %.1f/s after the join, want at least 95/s", a)
	}
}

// TestReplicaCrashes: a replica that stops dead keeps its share for its
// lease, then the others take it over.
func TestReplicaCrashes(t *testing.T) {
	t.Parallel()
	sp := simBase(100, 3, 120*time.Second)
	sp.crashAt = 40 * time.Second
	r := simulate(t, sp)
	t.Logf("applied %.3fR in the lease, %.3fR after: %s", r.rate(40, 43)/100, r.rate(45, 120)/100, r)
	if a := r.rate(40, 43); a > 0.8*100 {
		t.Errorf("applied %.1f/s during the dead replica's lease, want its share (a third) missing", a)
	}
	if a := r.rate(45, 120); a < 0.95*100 {
		t.Errorf("applied %.1f/s once the lease ran out, want at least 95/s", a)
	}
}

// TestStoreUnreachable: without the fleet's store every replica paces
// alone on its own throttles: more 429s than together, but no call before
// a Retry-After instant, few 429s still, and most of Graph's rate used.
func TestStoreUnreachable(t *testing.T) {
	t.Parallel()
	sp := simBase(100, 3, 120*time.Second)
	sp.storeDown = true
	r := simulate(t, sp)
	t.Logf("applied %.3fR, 429s %.2f%%: %s", r.rate(0, 120)/100, 100*r.throttledShare(), r)
	if r.early > 0 {
		t.Errorf("%d calls left before their replica's Retry-After instant", r.early)
	}
	if sh := r.throttledShare(); sh > 0.05 {
		t.Errorf("%.2f%% of write calls answered 429, want at most 5%%", 100*sh)
	}
	if a := r.rate(0, 120); a < 0.8*100 {
		t.Errorf("applied %.1f/s, want at least 80/s", a)
	}
}

// TestGraphChangesItsLimit: when Graph lowers its limit (other clients
// take their part of a shared budget) the fleet follows within a throttle
// or two; when it raises it, the next probe finds it.
func TestGraphChangesItsLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		from, to  float64
		checkFrom int
	}{
		{"the limit halves", 100, 50, 70},
		{"the limit doubles", 50, 100, 240},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := simBase(tc.from, 3, 300*time.Second)
			sp.newLimit, sp.newLimitAt = tc.to, 60*time.Second
			r := simulate(t, sp)
			t.Logf("applied %.3f of the new limit from %ds, 429s %.2f%%: %s", r.rate(tc.checkFrom, 300)/tc.to, tc.checkFrom, 100*r.throttledShare(), r)
			if got := sum(r.throttled[60:]); got > 30 {
				t.Errorf("%d 429s after the change, want few", got)
			}
			if a := r.rate(tc.checkFrom, 300); a < 0.95*tc.to || a > tc.to+1 {
				t.Errorf("applied %.1f/s from %ds, want about the new limit %v", a, tc.checkFrom, tc.to)
			}
		})
	}
}

// TestStartUp is the load harness's goal (issue 4) in the simulation:
// over the 60s from the first applied write, applied/s of at least 95% of
// R and at most 2% of write calls answered 429, from a cold start, with
// Graph answers that keep their order and answers that overtake each
// other. A 60s window tolerates 3s of Graph's capacity unused; the margin
// under the limit takes 0.6s of it, so the start-up (the open phase's
// throttle and its gate, and finding the limit) must cost well under 2s.
// The pacer guesses the limit from the burst and holds under it, so it
// costs about the first throttle's gate: 0.9-1.1s.
func TestStartUp(t *testing.T) {
	for _, limit := range []float64{20, 100, 500} {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("R=%v N=%d", limit, n), func(t *testing.T) {
				t.Parallel()
				for _, net := range []struct{ latency, jitter time.Duration }{{2 * time.Millisecond, 0}, {time.Millisecond, time.Millisecond}} {
					for seed := uint64(1); seed <= 3; seed++ {
						sp := simBase(limit, n, 70*time.Second)
						sp.latency, sp.jitter, sp.seed = net.latency, net.jitter, seed
						r := simulate(t, sp)
						applied, first := r.window(60)
						startUp := 0.0 // seconds of Graph's capacity unused
						for _, a := range r.applied[first : first+5] {
							startUp += 1 - float64(a)/limit
						}
						t.Logf("latency %v+%v seed %d: applied %.3fR over 60s, start-up %.2fs, 429s %.2f%%",
							net.latency, net.jitter, seed, applied/limit, startUp, 100*r.throttledShare())
						if applied < 0.95*limit || startUp > 1.5 || r.throttledShare() > 0.02 || r.early > 0 {
							t.Errorf("latency %v+%v seed %d: applied %.1f/s over 60s (want >= %.1f), start-up %.2fs of R (want <= 1.5s), 429s %.2f%% (want <= 2%%), %d early calls: %s",
								net.latency, net.jitter, seed, applied, 0.95*limit, startUp, 100*r.throttledShare(), r.early, r)
						}
					}
				}
			})
		}
	}
}

// TestNoThrottleSpiral is the spiral seen with the real harness at R=20
// and one replica: settled at 3-5 applied/s with a 429 almost every second.
// Answers overtake each other, the throttle's answer came before a
// success's, and the burst was counted one call short (1, not 2); the
// estimate from a bucket of one call is what the fleet sent, each cut was
// the margin only, and the fleet stayed over the limit, throttled at every
// opening of the gate. Now a success answered while the gate is closed
// counts in the burst, and a bucket of one call gives no estimate (the
// cut is the plain decrease).
func TestNoThrottleSpiral(t *testing.T) {
	t.Parallel()
	for _, jitter := range []time.Duration{500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond} {
		for seed := uint64(1); seed <= 15; seed++ {
			sp := simBase(20, 1, 65*time.Second)
			sp.latency, sp.jitter, sp.seed = time.Millisecond, jitter, seed
			r := simulate(t, sp)
			applied, first := r.window(60)
			if late := sum(r.throttled[first+3:]); applied < 0.95*20 || late > 2 {
				t.Errorf("jitter %v seed %d: applied %.1f/s over 60s (want >= 19), %d 429s after the start-up (want at most 2): %s",
					jitter, seed, applied, late, r)
			}
		}
	}
}

// TestAGuessRefutedLowIsNotMadeAgain: against a Graph whose bucket holds
// far less of its rate than the guess assumes (here 0.02s, a fifth of the
// stand-in's), the guess from the first burst is a fifth of R. The probe
// after its hold finds no limit within OpenAbove of it and opens the
// pacer; the next burst would give the same low guess, over and over.
// Once refuted, the law ramps instead and the fleet finds R: the first
// two minutes pay for the wrong guess, the three after run at R.
func TestAGuessRefutedLowIsNotMadeAgain(t *testing.T) {
	t.Parallel()
	for _, limit := range []float64{500, 1000} {
		for _, n := range []int{1, 3} {
			sp := simBase(limit, n, 300*time.Second)
			sp.bucket = limit * 0.02
			r := simulate(t, sp)
			t.Logf("R=%v N=%d: %.3f %.3f %.3f", limit, n, r.rate(0, 60)/limit, r.rate(60, 120)/limit, r.rate(120, 300)/limit)
			if got := r.rate(120, 300); got < 0.95*limit {
				t.Errorf("R=%v N=%d: %.1f/s over seconds 120-300, want at least %.1f: %s", limit, n, got, 0.95*limit, r)
			}
		}
	}
}

// TestALateReplicaDoesNotInflateTheBurst: replicas never start at the
// same instant. One that joins after the throttle that ended the open
// phase (or had sent nothing before it) took no part in Graph's burst, and
// says so; were it left out, the fleet would scale the others' shares up
// to it, guess the limit half as high again as it is at R = 20 (a bucket
// of 2 taken for 3), be throttled as the gate opens, and hold an estimate
// near 0.8 R for half a minute.
func TestALateReplicaDoesNotInflateTheBurst(t *testing.T) {
	t.Parallel()
	for _, limit := range []float64{20, 100, 500} {
		for _, join := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
			for seed := uint64(1); seed <= 3; seed++ {
				sp := simBase(limit, 3, 65*time.Second)
				sp.latency, sp.joinAt, sp.seed = time.Millisecond, join, seed
				r := simulate(t, sp)
				if applied, _ := r.window(60); applied < 0.95*limit {
					t.Errorf("R=%v, last replica joins at %v, seed %d: %.1f/s over 60s, want at least %.1f: %s", limit, join, seed, applied, 0.95*limit, r)
				}
			}
		}
	}
}

// backlogTime is how long from the first applied write the fleet took to
// apply n writes, to the second: the last second counts in part.
func (r simResult) backlogTime(n int) float64 {
	first := 0
	for first < len(r.applied) && r.applied[first] == 0 {
		first++
	}
	done := 0
	for i := first; i < len(r.applied); i++ {
		if done+r.applied[i] >= n {
			return float64(i-first) + float64(n-done)/float64(r.applied[i])
		}
		done += r.applied[i]
	}
	return math.Inf(1)
}

// throttledUntil counts the 429s until n writes were applied.
func (r simResult) throttledUntil(n int) int {
	done, t := 0, 0
	for i := range r.applied {
		t += r.throttled[i]
		done += r.applied[i]
		if done >= n {
			break
		}
	}
	return t
}

// TestSlowGraphShortBacklog is issue 15's case: Graph at R answering in
// latency, concurrency following the pacer (InFlight) under a cap of 256,
// a backlog of 15s of R. The target is N/R + 1s + 5 % with at most
// 2 % of the calls answered 429; slack is what the case may miss it by
// (the slow start's round trips before the first throttle cost most of
// it).
func TestSlowGraphShortBacklog(t *testing.T) {
	for _, tc := range []struct {
		limit           float64
		replicas        int
		latency, jitter time.Duration
		slack           float64 // seconds over the target allowed
		maxShare        float64 // of the calls answered 429
	}{
		{100, 1, 300 * time.Millisecond, 0, 0.5, 0.02},
		{100, 3, 2 * time.Millisecond, 0, 0, 0.02},
		// The start-up's window of 16 (slowGraphFirstWindow) over a
		// bucket of 2: 14 429s, 4.5 % of this backlog of 300 (0.9 % of
		// the 1,500).
		{20, 1, 300 * time.Millisecond, 0, 1, 0.05},
		{500, 1, 300 * time.Millisecond, 0, 2, 0.02},
		// Not met (issue 15): calls paced just under Graph's rate reach a
		// bucket of 10 calls with up to 300ms of random delay, bunched
		// enough to drain it now and then; 18-20s and 3.5-4 % answered
		// 429 here. The bound guards against worse.
		{100, 1, 300 * time.Millisecond, 150 * time.Millisecond, 6, 0.06},
	} {
		t.Run(fmt.Sprintf("R=%v N=%d latency %v+%v", tc.limit, tc.replicas, tc.latency, 2*tc.jitter), func(t *testing.T) {
			t.Parallel()
			n := int(15 * tc.limit)
			target := float64(n)/tc.limit*1.05 + 1
			for seed := uint64(1); seed <= 3; seed++ {
				sp := simBase(tc.limit, tc.replicas, 25*time.Second)
				sp.concurrency, sp.admit, sp.latency, sp.jitter, sp.seed = 256, true, tc.latency, tc.jitter, seed
				r := simulate(t, sp)
				took, throttled := r.backlogTime(n), r.throttledUntil(n)
				share := float64(throttled) / float64(n+throttled)
				t.Logf("seed %d: %d applied in %.2fs (target %.2fs), %d 429s (%.2f %%)", seed, n, took, target, throttled, 100*share)
				if took > target+tc.slack || share > tc.maxShare {
					t.Errorf("seed %d: %d applied in %.2fs (want <= %.2fs + %.1fs), %.2f %% answered 429 (want <= %.0f %%): %s",
						seed, n, took, target, tc.slack, 100*share, 100*tc.maxShare, r)
				}
			}
		})
	}
}
