package pacer

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"math"
	randv2 "math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultMinRate       = 1.0
	DefaultDecrease      = 0.7
	DefaultMargin        = 0.01
	DefaultRampGrowth    = 16.0
	DefaultHoldFor       = 2 * time.Minute
	DefaultProbeScale    = 30 * time.Second
	DefaultOpenAbove     = 4.0
	DefaultJitter        = 0.5
	DefaultInitialWindow = 1
	DefaultSyncInterval  = 250 * time.Millisecond
	DefaultSyncTimeout   = time.Second
	DefaultMemberLease   = 3 * time.Second
)

// Config of a Pacer. Zero fields take their defaults.
type Config struct {
	// Operation names what is paced ("resume", "role_request_update"); it
	// keys the fleet's shared record. Required.
	Operation string

	// MinRate is the floor of the fleet rate, calls/s; default 1.
	MinRate float64
	// Decrease multiplies the fleet rate on a throttle that allows no
	// estimate of the limit; default 0.7.
	Decrease float64
	// Margin is how far under the estimated limit the fleet holds, as a
	// fraction; default 0.01.
	Margin float64
	// RampGrowth is the factor by which the fleet rate grows every second
	// after the throttle that ends the open phase; default 16.
	RampGrowth float64
	// HoldFor is how long the fleet rate holds under an estimate before
	// probing upward; default 2m. A rough estimate (from a short drain)
	// holds for less, down to an eighth.
	HoldFor time.Duration
	// ProbeScale sets the probe's pace: the rate is multiplied by
	// 1+(t/ProbeScale)³, t counted from the end of the hold, so it has
	// doubled after one ProbeScale; default 30s.
	ProbeScale time.Duration
	// OpenAbove: a probe that reaches this multiple of the estimated limit
	// without a throttle opens the pacer again; default 4.
	OpenAbove float64
	// Jitter spreads the first call of each replica after a gate: replica
	// i of n leaves (i + Jitter·u)/n of its departure interval after the
	// gate opens, u uniform in [0, 1); default 0.5.
	Jitter float64
	// InitialWindow is the slow start's number of calls in flight when the
	// process starts; default 1.
	InitialWindow int

	// SyncInterval is the period of the fleet sync; default 250ms.
	SyncInterval time.Duration
	// SyncTimeout bounds one sync with the store; default 1s.
	SyncTimeout time.Duration
	// MemberLease is how long a replica that stopped syncing still counts
	// in the fleet; default 3s.
	MemberLease time.Duration

	// Clock is the time source; default the system clock.
	Clock Clock
	// Rand returns numbers in [0, 1) for jitter; default math/rand/v2.
	Rand func() float64
	// Fleet is the state shared with the other replicas; nil paces this
	// process alone.
	Fleet Fleet
	// ReplicaID names this process in the fleet, unique per process;
	// default hostname-pid-random.
	ReplicaID string
	// Log receives the pacer's few logs; default discard.
	Log *slog.Logger
	// OnChange is called with the process's rate (calls/s, +Inf when open)
	// and the gate after every throttle and every round of Run, for the
	// gauges graphops_pacer_rate and graphops_throttled_until_seconds. It
	// may be called from several goroutines at once and must not block.
	OnChange func(rate float64, throttledUntil time.Time)
}

// Validate fills in the defaults of zero fields, then checks every field;
// the error names the bad one.
func (c *Config) Validate() error {
	setDefault(&c.MinRate, DefaultMinRate)
	setDefault(&c.Decrease, DefaultDecrease)
	setDefault(&c.Margin, DefaultMargin)
	setDefault(&c.RampGrowth, DefaultRampGrowth)
	setDefault(&c.HoldFor, DefaultHoldFor)
	setDefault(&c.ProbeScale, DefaultProbeScale)
	setDefault(&c.OpenAbove, DefaultOpenAbove)
	setDefault(&c.Jitter, DefaultJitter)
	setDefault(&c.InitialWindow, DefaultInitialWindow)
	setDefault(&c.SyncInterval, DefaultSyncInterval)
	setDefault(&c.SyncTimeout, DefaultSyncTimeout)
	setDefault(&c.MemberLease, DefaultMemberLease)
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Rand == nil {
		c.Rand = randv2.Float64
	}
	if c.ReplicaID == "" {
		c.ReplicaID = defaultReplicaID()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Operation == "":
		return fmt.Errorf("pacer: Operation: required")
	case !(c.MinRate > 0) || math.IsInf(c.MinRate, 1):
		return fmt.Errorf("pacer: MinRate %v: must be a positive number", c.MinRate)
	case !(c.Decrease > 0 && c.Decrease < 1):
		return fmt.Errorf("pacer: Decrease %v: must be between 0 and 1", c.Decrease)
	case !(c.Margin >= 0 && c.Margin < 0.5):
		return fmt.Errorf("pacer: Margin %v: must be in [0, 0.5)", c.Margin)
	case !(c.RampGrowth > 1) || math.IsInf(c.RampGrowth, 1):
		return fmt.Errorf("pacer: RampGrowth %v: must be above 1", c.RampGrowth)
	case c.HoldFor < 0:
		return fmt.Errorf("pacer: HoldFor %s: must not be negative", c.HoldFor)
	case c.ProbeScale < 0:
		return fmt.Errorf("pacer: ProbeScale %s: must be positive", c.ProbeScale)
	case !(c.OpenAbove > 1):
		return fmt.Errorf("pacer: OpenAbove %v: must be above 1", c.OpenAbove)
	case !(c.Jitter >= 0 && c.Jitter <= 10):
		return fmt.Errorf("pacer: Jitter %v: must be in [0, 10]", c.Jitter)
	case c.InitialWindow < 0:
		return fmt.Errorf("pacer: InitialWindow %d: must be positive", c.InitialWindow)
	case c.SyncInterval < 0:
		return fmt.Errorf("pacer: SyncInterval %s: must be positive", c.SyncInterval)
	case c.SyncTimeout < 0:
		return fmt.Errorf("pacer: SyncTimeout %s: must be positive", c.SyncTimeout)
	case c.MemberLease <= c.SyncInterval:
		return fmt.Errorf("pacer: MemberLease %s: must be longer than SyncInterval %s", c.MemberLease, c.SyncInterval)
	}
	return nil
}

func setDefault[T cmp.Ordered](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// defaultReplicaID is hostname-pid-random.
func defaultReplicaID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Pacer paces the calls of one operation in this process. It is safe for
// concurrent use.
type Pacer struct {
	cfg   Config
	law   law
	clock Clock
	kick  chan struct{}

	mu sync.Mutex
	// view is what this process believes of the fleet: the record as of
	// the last sync, with this process's later throttles applied.
	view    FleetState
	members int     // replicas sharing the fleet rate, at least 1
	rank    int     // this replica's place among them, from 0
	events  []event // throttles not yet written to the fleet
	seq     uint64  // of the last event

	queue      []*Reservation
	prev       time.Time     // slot of the last departure
	gateJitter float64       // in [0, 1), drawn when the gate moves
	limitedAt  time.Time     // the rate last held a call back
	departures ring          // calls that left, over the last second
	flight     []time.Time   // departures awaiting their outcome, oldest first
	latency    time.Duration // smoothed time from departure to outcome
	changed    chan struct{} // closed when waiters should look again

	// The open phase.
	open         bool
	window       int       // slow start: calls allowed in flight
	held         []held    // slow start against a slow Graph: places answers freed, not yet usable
	slowStartAt  time.Time // first departure of the open phase
	successes    ring
	burstTaken   bool      // this open phase's burst is measured
	firstSuccess time.Time // first success of the open phase
	burst        float64
	burstSpan    float64 // seconds
	burstAt      time.Time
	burstSent    time.Time   // departure of the call whose throttle ended the open phase
	okAt         []time.Time // answers of the successes of the last second, oldest first
	bucket       float64     // the share of Graph's bucket okAt shows (bucketShare)

	// Graph's early warnings (SucceededWithUsage): the law the first
	// warning was seen under, and the lowest usage seen under it since.
	warnLaw time.Time
	warnLow float64

	syncFailing bool
}

// event is a throttle: answered at `at`, gate closed until `until`. The
// call left about `sent` (one latency earlier): that is when the fleet had
// sent enough to run Graph's bucket dry. law is the Cut of the curve the
// replica paced by; self is its own entry then (whether it used its share,
// what it sent).
type event struct {
	seq             uint64
	at, sent, until time.Time
	law             time.Time
	self            Member
	// warn: not a throttle but Graph's early warning (SucceededWithUsage),
	// at usage; it closes no gate.
	warn  bool
	usage float64
}

// maxEvents bounds the throttles kept for the fleet while the store is
// unreachable; the latest ones carry what matters.
const maxEvents = 32

// New returns a Pacer, or the error of cfg.Validate.
func New(cfg Config) (*Pacer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pacer{
		cfg: cfg,
		law: law{
			minRate:    cfg.MinRate,
			decrease:   cfg.Decrease,
			margin:     cfg.Margin,
			growth:     cfg.RampGrowth,
			openAbove:  cfg.OpenAbove,
			holdFor:    cfg.HoldFor,
			probeScale: cfg.ProbeScale,
		},
		clock:   cfg.Clock,
		kick:    make(chan struct{}, 1),
		view:    FleetState{Curve: Curve{Mode: ModeOpen}},
		members: 1,
		changed: make(chan struct{}),
		open:    true,
		window:  cfg.InitialWindow,
	}
	return p, nil
}

// Succeeded reports that a call Graph answered with success.
func (p *Pacer) Succeeded() {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	sent := p.landLocked(now)
	if math.IsInf(p.fleetRateLocked(now), 1) {
		p.successes.add(now)
		p.noteSuccessLocked(now)
		first := p.firstSuccess.IsZero()
		if first {
			p.firstSuccess = now
		}
		if p.slowStartLocked(now) {
			grow := 1
			if p.latency >= slowGraph {
				// Each doubling costs a round trip that Graph, at its
				// limit, would have answered R × latency calls in.
				grow = slowGraphGrowth - 1
				if first {
					grow = max(grow, slowGraphFirstWindow-p.window)
				}
				p.held = append(p.held, held{at: now.Add(p.slackLocked()), n: grow + 1})
			}
			p.window += grow
			p.signalLocked()
		}
		return
	}
	if c := p.view.Curve; p.burstTaken && c.fromBurst() && now.Before(c.From) && c.Cut.Sub(p.burstAt).Abs() <= burstMatch &&
		p.leftWithBurstLocked(sent) {
		// A success answered while the gate that ended the open phase is
		// closed, of a call that left with the throttled one, belongs to
		// Graph's burst. Answers overtake each other, and a burst counted
		// short makes the law start low (a call short is a tenth of a
		// second of Graph's rate short) and every estimate after it
		// wrong. A call that left later (against a slow Graph the slow
		// start sends its next window as the throttle is answered)
		// succeeded on Graph's refill: counted, it doubled the guess and
		// spent a second throttle on refuting it (issue 15).
		p.burst++
		p.burstSpan = p.spanLocked(now)
		p.noteSuccessLocked(now)
		p.bucket = bucketShare(p.okAt, p.burstAt)
		p.setSelfLocked(p.memberLocked(now))
		p.law.rebase(&p.view)
	}
}

// Failed reports a call that failed otherwise than by a throttle: it
// neither raises nor lowers the rate.
func (p *Pacer) Failed() {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.landLocked(now)
	if p.open && p.slowStartLocked(now) {
		p.signalLocked() // a place in the window is free
	}
}

// Throttled reports a call Graph throttled (429, or 503/504 with
// Retry-After), with the Retry-After counted from now, when the answer
// arrived. It closes the gate until now+retryAfter at once in this process
// (and in the fleet at the next sync) and, unless the gate was already
// closed when the answer came, cuts the rate. A retryAfter that is not
// positive closes the gate for one second.
func (p *Pacer) Throttled(retryAfter time.Duration) {
	if retryAfter <= 0 {
		retryAfter = time.Second
	}
	now := p.clock.Now()
	p.mu.Lock()
	sent := p.landLocked(now)
	if math.IsInf(p.fleetRateLocked(now), 1) && !p.burstTaken {
		p.takeBurstLocked(now, sent, now)
	}
	p.seq++
	e := event{seq: p.seq, at: now, sent: now.Add(-p.latency), until: now.Add(retryAfter),
		law: p.view.Curve.Cut, self: p.memberLocked(now)}
	p.events = append(p.events, e)
	if len(p.events) > maxEvents {
		p.events = slices.Delete(p.events, 0, len(p.events)-maxEvents)
	}
	p.setSelfLocked(e.self)
	before := p.view.Until
	cut := p.applyEvent(&p.view, e)
	if p.view.Until.After(before) {
		p.gateJitter = p.cfg.Rand()
	}
	rate, until, curve, latency, members := p.rateLocked(now), p.view.Until, p.view.Curve, p.latency, p.members
	p.mu.Unlock()

	if cut {
		p.cfg.Log.Info("pacer: throttled, rate cut", "operation", p.cfg.Operation,
			"retry_after", retryAfter, "throttled_until", until, "mode", curve.Mode,
			"fleet_rate", curve.Rate, "limit_estimate", curve.Limit, "latency", latency, "members", members)
	} else {
		p.cfg.Log.Debug("pacer: throttled while the gate was closed", "operation", p.cfg.Operation,
			"retry_after", retryAfter, "throttled_until", until)
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	p.changedHook(rate, until)
}

// Rate is the rate this process may call at now, calls/s: its share of
// the fleet rate; +Inf while open.
func (p *Pacer) Rate() float64 {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rateLocked(now)
}

// FleetRate is the rate of the whole fleet now, calls/s; +Inf while open.
func (p *Pacer) FleetRate() float64 {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fleetRateLocked(now)
}

// ThrottledUntil is the gate: no call leaves before it. It may be in the
// past (the gate is open).
func (p *Pacer) ThrottledUntil() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.view.Until
}

func (p *Pacer) rateLocked(now time.Time) float64 {
	return p.fleetRateLocked(now) / float64(p.members)
}

// fleetRateLocked is the fleet rate at now; it notices the pacer opening
// and closing, for the slow start and the burst measure.
func (p *Pacer) fleetRateLocked(now time.Time) float64 {
	f := p.law.rate(p.view.Curve, now)
	open := math.IsInf(f, 1)
	if open && !p.open {
		p.window = p.cfg.InitialWindow
		p.held = p.held[:0]
		p.slowStartAt = time.Time{}
		p.successes = ring{}
		p.burstTaken = false
		p.firstSuccess = time.Time{}
		p.okAt = p.okAt[:0]
	}
	p.open = open
	return f
}

// landLocked notes an outcome at now: the oldest call in flight landed
// (outcomes come back about in departure order), a latency sample. It
// returns that departure, zero when none was in flight.
func (p *Pacer) landLocked(now time.Time) time.Time {
	if len(p.flight) == 0 {
		return time.Time{}
	}
	sent := p.flight[0]
	d := now.Sub(sent)
	p.flight = p.flight[1:]
	if p.latency == 0 {
		p.latency = d
	} else {
		p.latency += (d - p.latency) / 8
	}
	return sent
}

// leftWithBurstLocked reports whether a call that left at sent left with
// the one whose throttle ended the open phase, or before it: within
// burstSlack of the latency (departures are matched to answers in order,
// and calls of one slow-start window leave together). A call not known to
// have left (zero) is not counted.
func (p *Pacer) leftWithBurstLocked(sent time.Time) bool {
	if sent.IsZero() {
		return false
	}
	return !sent.After(p.burstSent.Add(p.slackLocked()))
}

// slackLocked is how far apart calls that left together, or the answers
// to them, may be: burstSlackShare of the latency, at least minBurstSlack.
func (p *Pacer) slackLocked() time.Duration {
	return max(minBurstSlack, time.Duration(float64(p.latency)*burstSlackShare))
}

// slowGraphGrowth is how many fold the slow start's window grows per round
// trip against a slow Graph (an answer took slowGraph or more): each
// success adds slowGraphGrowth-1 calls instead of one. In the simulation of
// issue 15 (TestSlowGraphShortBacklog, 300ms), at 100 writes/s 1,500
// commands took 17.2s with four-fold (0.40 % answered 429), 17.95s with
// doubling, 16.9s with a window of 16 at once; but at 20 writes/s (a bucket
// of two calls) the 429s of the start-up's throttle, the window's calls
// over Graph's burst, were 0.66 % of 300 with four-fold and 4.5 % with 16
// at once.
const slowGraphGrowth = 4

// slowGraphFirstWindow is the slow start's window once its first answer
// shows a slow Graph: that answer gives the latency, and skipping the
// window of 4 brings the throttle that ends the open phase (a window over
// Graph's bucket) a round trip sooner. Measured with `worker bench pacing`
// (one replica, R = 100, 300ms, 1,500 commands), with the hold of a slack
// after each answer (held): 16.66-16.67s in 6 runs, 0.33 % answered 429,
// against 16.99s from a window of one growing four-fold and 17.06s
// without the hold. The price is the window's calls over Graph's bucket:
// at R = 20 (a bucket of 2 calls) 14 429s, 4.5 % of a backlog of 300
// (0.9 % of 1,500), against 2 to 4.
const slowGraphFirstWindow = 16

// A late success counts in the burst when it left no later than
// burstSlackShare of the latency (at least minBurstSlack) after the
// throttled call. Against a fast Graph on a loaded machine the answers of
// one burst come back several milliseconds apart and out of order: with a
// slack of 2ms, 2 of 3 runs of three replicas at zero latency guessed 90
// instead of 100.
const (
	burstSlackShare = 0.1
	minBurstSlack   = 25 * time.Millisecond
)

// takeBurstLocked measures this replica's share of Graph's burst at the
// throttle that ends the open phase, answered at `at`, its call sent at
// `sent` (zero when unknown: the fleet told of it; now is the present).
func (p *Pacer) takeBurstLocked(at, sent, now time.Time) {
	p.burstTaken = true
	p.burst = float64(p.successes.sum(now))
	p.burstAt = at
	p.burstSent = sent
	if sent.IsZero() {
		p.burstSent = at.Add(-p.latency) // learnt from the fleet: about a round trip before
	}
	// The successes count Graph's refill while they were sent: from the
	// first answer to the throttle's (answers lag departures alike).
	p.burstSpan = p.spanLocked(at)
	p.trimSuccessesLocked(now)
	p.bucket = bucketShare(p.okAt, at)
}

// spanLocked is how long the successes of the open phase's last second
// took until `at`, seconds, less what the slow start explains: its window
// doubles every round trip, so that against a slow Graph (hundreds of ms)
// the successes of a burst come spread over several round trips, and
// would read as a rate seen rather than a bucket. The bucket measure
// (bucketShare) already counts Graph's refill while they came.
func (p *Pacer) spanLocked(at time.Time) float64 {
	if p.firstSuccess.IsZero() {
		return 0
	}
	span := min(1, max(0, at.Sub(p.firstSuccess).Seconds()))
	return max(0, span-slowStartRounds*p.latency.Seconds())
}

// slowStartRounds is how many round trips of the slow start a burst's
// successes may spread over and still count as a burst.
const slowStartRounds = 4

// setSelfLocked puts this replica's entry into its own view of the fleet
// record, ahead of the next sync.
func (p *Pacer) setSelfLocked(m Member) {
	if p.view.Members == nil {
		p.view.Members = map[string]Member{}
	}
	p.view.Members[p.cfg.ReplicaID] = m
}

// memberLocked is this replica's entry in the fleet record.
func (p *Pacer) memberLocked(now time.Time) Member {
	return Member{Seen: now, Limited: now.Sub(p.limitedAt) <= time.Second, Sent: float64(p.departures.sum(now)),
		Burst: p.burst, BurstSpan: p.burstSpan, BurstAt: p.burstAt, Bucket: p.bucket}
}

// noteSuccessLocked keeps the answer of a success of the open phase for
// the bucket measure, the latest maxFlight at least. The older half goes
// at once when twice as many are kept: an open phase may last long, at
// thousands of calls a second, and the measure needs the last second only.
func (p *Pacer) noteSuccessLocked(now time.Time) {
	if len(p.okAt) >= 2*maxFlight {
		p.okAt = slices.Delete(p.okAt, 0, len(p.okAt)-maxFlight)
	}
	p.okAt = append(p.okAt, now)
}

// trimSuccessesLocked keeps the successes answered in the last second:
// the burst's.
func (p *Pacer) trimSuccessesLocked(now time.Time) {
	i := 0
	for i < len(p.okAt) && now.Sub(p.okAt[i]) > time.Second {
		i++
	}
	p.okAt = slices.Delete(p.okAt, 0, i)
}

// applyEvent folds a throttle into st and reports whether it cut the rate.
func (p *Pacer) applyEvent(st *FleetState, e event) bool {
	// Answered while the gate was closed: the call left before the
	// throttle was known here, so it is the same throttle. Sent by a
	// replica that did not pace by the law in force (it had just joined,
	// or lost the store): the law is not to blame. Either way the gate
	// holds until the Retry-After; the rate stays.
	if e.warn {
		// A warning under the law in force while the gate is open cuts
		// it, once: the others of the same law find it replaced.
		if e.at.Before(st.Until) || !e.law.Equal(st.Curve.Cut) {
			return false
		}
		st.Curve = p.law.warnCut(st.Curve, e.at, p.capsOf(st, members(st), e.self))
		return true
	}
	if e.at.Before(st.Until) || (st.Curve.Mode != ModeOpen && !e.law.Equal(st.Curve.Cut)) {
		if e.until.After(st.Until) {
			st.Until = e.until
			if st.Curve.Mode != ModeOpen && st.Curve.From.Before(st.Until) {
				st.Curve.From = st.Until
			}
		}
		return false
	}
	alive := members(st)
	drained := e.sent
	if drained.Before(st.Curve.From) {
		drained = st.Curve.From
	}
	st.Curve = p.law.cut(st.Curve, drained, e.until, burstOf(st, e.at), p.capsOf(st, alive, e.self))
	st.Curve.Cut = e.at
	st.Until = e.until
	return true
}

// capsOf is what each member could send, calls/s: unbounded for a member
// the rate held back, what it sent over the last second for the others
// (they are held back by their own demand or concurrency, not by the rate).
// A member not seen for a whole second since the gate opened is taken to
// use its share: what it sent in the second before counts the gate, not
// its demand, and a throttle soon after the opening would otherwise be
// explained by a fleet sending next to nothing, and cut the rate to that.
// This replica is taken as it was at the throttle (self).
func (p *Pacer) capsOf(st *FleetState, alive []string, self Member) []float64 {
	caps := make([]float64, len(alive))
	for i, id := range alive {
		m := st.Members[id]
		if id == p.cfg.ReplicaID {
			m = self
		}
		caps[i] = math.Inf(1)
		if !m.Limited && !m.Seen.Before(st.Curve.From.Add(time.Second)) {
			caps[i] = m.Sent
		}
	}
	return caps
}

// burstMatch is how far a replica's burst measure may lie from a throttle
// and still describe it.
const burstMatch = 5 * time.Second

// burstOf estimates the fleet's burst at a throttle answered at `at` from
// the members' measures, scaled up for the members that did not report one.
func burstOf(st *FleetState, at time.Time) burst {
	var b burst
	n := 0
	alive := members(st)
	for _, id := range alive {
		m := st.Members[id]
		if !m.BurstAt.IsZero() && m.BurstAt.Sub(at).Abs() <= burstMatch {
			b.calls += m.Burst
			b.bucket += m.Bucket
			b.span = max(b.span, m.BurstSpan)
			n++
		}
	}
	if n > 0 {
		b.calls *= float64(len(alive)) / float64(n)
		b.bucket *= float64(len(alive)) / float64(n)
	}
	return b
}

// members lists the members of st, sorted (sums over them must not
// depend on map order). The record is pruned of dead members at each sync.
func members(st *FleetState) []string {
	return slices.Sorted(maps.Keys(st.Members))
}

func (p *Pacer) changedHook(rate float64, until time.Time) {
	if p.cfg.OnChange != nil {
		p.cfg.OnChange(rate, until)
	}
}

// ring counts events per tenth of a second over the last second.
type ring struct {
	slot [10]int64 // which tenth each count is for
	n    [10]int
}

const tenth = int64(100 * time.Millisecond)

func (r *ring) add(t time.Time) {
	k := t.UnixNano() / tenth
	i := (k%int64(len(r.n)) + int64(len(r.n))) % int64(len(r.n))
	if r.slot[i] != k {
		r.slot[i], r.n[i] = k, 0
	}
	r.n[i]++
}

func (r *ring) sum(t time.Time) int {
	k := t.UnixNano() / tenth
	s := 0
	for i, slot := range r.slot {
		if slot > k-int64(len(r.n)) && slot <= k {
			s += r.n[i]
		}
	}
	return s
}
