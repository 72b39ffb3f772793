package pacer_test

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
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
	concurrency int
	latency     time.Duration // round trip of a Graph call
	duration    time.Duration
	syncEvery   time.Duration
	syncDelay   time.Duration // from a throttle to its sync with the store
	seed        uint64
	config      func(*pacer.Config) // tuning under test; nil: defaults
	joinAt      time.Duration       // last replica joins then (0: at start)
	leaveAt     time.Duration       // replica 0 stops (crashes) then (0: never)
	log         bool                // log the pacers' cuts
	trace       bool
}

type simResult struct {
	applied, throttled int
	early              int           // departures before the replica's own Retry-After instant
	waited             time.Duration // total Ready delay seen by calls (unlimited case)
	calls              int
	perSecond          []string
}

func (r simResult) appliedRate(d time.Duration) float64 { return float64(r.applied) / d.Seconds() }
func (r simResult) throttledShare() float64 {
	return float64(r.throttled) / float64(r.applied+r.throttled)
}

type simEvent struct {
	at      time.Time
	seq     int
	kind    int
	replica int
	slot    int
	ok      bool
	ra      time.Duration
}

const (
	evTry = iota
	evArrive
	evAnswer
	evSync
	evKick
)

type eventQueue []simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
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

func simulate(t *testing.T, sp simParams) simResult {
	t.Helper()
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := &simClock{now: start}
	fleet := newMemFleet()
	graph := newStandIn(sp.limit, start)
	rng := rand.New(rand.NewPCG(sp.seed, 7))

	type slot struct {
		res *pacer.Reservation
	}
	type replica struct {
		p      *pacer.Pacer
		slots  []slot
		gate   time.Time // its own latest Retry-After instant
		alive  bool
		joined bool
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
		if sp.log {
			cfg.Log = slog.New(slog.NewTextHandler(tWriter{t, clock}, nil))
		}
		r := &replica{p: pacer.New(cfg), slots: make([]slot, sp.concurrency), alive: true}
		reps[i] = r
		at := start
		if sp.joinAt > 0 && i == sp.replicas-1 {
			at = start.Add(sp.joinAt)
		}
		offset := time.Duration(float64(sp.syncEvery) * float64(i) / float64(sp.replicas))
		push(simEvent{at: at.Add(offset), kind: evSync, replica: i})
		for s := range r.slots {
			push(simEvent{at: at, kind: evTry, replica: i, slot: s})
		}
	}

	var res simResult
	end := start.Add(sp.duration)
	var secApplied, secThrottled int
	nextSec := start.Add(time.Second)
	ctx := context.Background()
	for q.Len() > 0 {
		e := heap.Pop(q).(simEvent)
		if !e.at.Before(end) {
			break
		}
		for !e.at.Before(nextSec) {
			res.perSecond = append(res.perSecond, fmt.Sprintf("%d/%d@%.0f", secApplied, secThrottled, reps[len(reps)-1].p.FleetRate()))
			secApplied, secThrottled = 0, 0
			nextSec = nextSec.Add(time.Second)
		}
		clock.now = e.at
		r := reps[e.replica]
		if sp.leaveAt > 0 && e.replica == 0 && !e.at.Before(start.Add(sp.leaveAt)) {
			r.alive = false // crashed: no more calls, no more syncs
			continue
		}
		switch e.kind {
		case evTry:
			sl := &r.slots[e.slot]
			if sl.res == nil {
				sl.res = r.p.Reserve()
			}
			d, ok := sl.res.Ready()
			if !ok {
				push(simEvent{at: e.at.Add(min(d, 100*time.Millisecond)), kind: evTry, replica: e.replica, slot: e.slot})
				continue
			}
			if e.at.Before(r.gate) {
				res.early++
			}
			res.calls++
			push(simEvent{at: e.at.Add(sp.latency / 2), kind: evArrive, replica: e.replica, slot: e.slot})
		case evArrive:
			ok, ra := graph.take(e.at)
			if sp.trace && e.at.Sub(start) < 2400*time.Millisecond {
				t.Logf("%s r%d ok=%v tokens=%.2f fleet=%.1f until=%s", e.at.Format("15:04:05.000"), e.replica, ok, graph.tokens, r.p.FleetRate(), r.p.ThrottledUntil().Format("05.000"))
			}
			push(simEvent{at: e.at.Add(sp.latency / 2), kind: evAnswer, replica: e.replica, slot: e.slot, ok: ok, ra: ra})
		case evAnswer:
			if ok := e.ok; ok {
				r.p.Succeeded()
				res.applied++
				secApplied++
			} else {
				r.p.Throttled(e.ra)
				res.throttled++
				secThrottled++
				if g := e.at.Add(e.ra); g.After(r.gate) {
					r.gate = g
				}
				push(simEvent{at: e.at.Add(sp.syncDelay), kind: evKick, replica: e.replica})
			}
			r.slots[e.slot].res = nil
			push(simEvent{at: e.at, kind: evTry, replica: e.replica, slot: e.slot})
		case evSync, evKick:
			if err := r.p.Sync(ctx); err != nil {
				t.Fatalf("sync: %v", err)
			}
			if e.kind == evSync {
				push(simEvent{at: e.at.Add(sp.syncEvery), kind: evSync, replica: e.replica})
			}
		}
	}
	return res
}

type tWriter struct {
	t     *testing.T
	clock *simClock
}

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s %s", w.clock.now.Format("15:04:05.000"), b)
	return len(b), nil
}

func TestSimTrace(t *testing.T) {
	if os.Getenv("PACER_TUNE") == "" {
		t.Skip("set PACER_TUNE=1 to trace")
	}
	sp := simParams{limit: 20, replicas: 3, concurrency: 16, latency: 4 * time.Millisecond,
		duration: 120 * time.Second, syncEvery: 250 * time.Millisecond, syncDelay: 20 * time.Millisecond, seed: 1, log: true}
	r := simulate(t, sp)
	t.Logf("%.3f %.2f%% %s", r.appliedRate(sp.duration)/sp.limit, 100*r.throttledShare(), strings.Join(r.perSecond, " "))
}

func TestSimulationTuning(t *testing.T) {
	if os.Getenv("PACER_TUNE") == "" {
		t.Skip("set PACER_TUNE=1 to explore the tuning")
	}
	type knob struct {
		margin float64
		hold   time.Duration
		growth float64
	}
	var knobs []knob
	for _, m := range []float64{0.01, 0.015, 0.02} {
		for _, h := range []time.Duration{60 * time.Second, 90 * time.Second, 120 * time.Second} {
			for _, g := range []float64{8, 16} {
				knobs = append(knobs, knob{m, h, g})
			}
		}
	}
	for _, k := range knobs {
		worst, worst429 := 10.0, 0.0
		var line []string
		for _, lat := range []time.Duration{0, 4 * time.Millisecond} {
			for _, limit := range []float64{20, 100, 500} {
				for _, n := range []int{1, 3} {
					for seed := range uint64(3) {
						sp := simParams{limit: limit, replicas: n, concurrency: 16, latency: lat,
							duration: 120 * time.Second, syncEvery: 250 * time.Millisecond, syncDelay: 20 * time.Millisecond, seed: seed,
							config: func(c *pacer.Config) { c.Margin, c.HoldFor, c.RampGrowth = k.margin, k.hold, k.growth }}
						r := simulate(t, sp)
						a := r.appliedRate(sp.duration) / limit
						if a < 0.93 || r.throttledShare() > 0.02 {
							t.Logf("  bad: lat=%v R=%v n=%d seed=%d: %.3f %.2f%%", lat, limit, n, seed, a, 100*r.throttledShare())
						}
						worst = min(worst, a)
						worst429 = max(worst429, r.throttledShare())
						if seed == 0 && lat == 4*time.Millisecond {
							line = append(line, fmt.Sprintf("%.3f", a))
						}
					}
				}
			}
		}
		t.Logf("margin=%v hold=%v growth=%v: worst applied %.3fR, worst 429s %.2f%% [%s]", k.margin, k.hold, k.growth, worst, 100*worst429, strings.Join(line, " "))
	}
}
