package pacer

import (
	"math"
	"time"
)

// Mode is the phase of an operation's rate law.
type Mode string

const (
	// ModeOpen: Graph has not throttled the operation (or not for long): no
	// rate limit, only the slow start of a fresh process.
	ModeOpen Mode = "open"
	// ModeRamp: the first throttle ended the open phase and Graph's limit is
	// unknown, not even guessed from its burst. The rate starts at the
	// burst Graph let through, per second, and grows by RampGrowth every
	// second until the next throttle.
	ModeRamp Mode = "ramp"
	// ModeHold: the rate holds just under the limit estimated at the last
	// throttle (or guessed from Graph's burst) for a while, then probes
	// upward, slowly at first.
	ModeHold Mode = "hold"
)

// Curve is an operation's fleet rate law since its last throttle: the fleet
// rate is a function of the time only, so every replica computes the same
// rate from the same Curve without talking to the others.
type Curve struct {
	Mode Mode `json:"mode"`
	// From is when the law starts: the opening of the gate the last
	// throttle closed. Graph's bucket is taken to be full then.
	From time.Time `json:"from,omitzero"`
	// Rate is the fleet rate at From, calls/s.
	Rate float64 `json:"rate,omitempty"`
	// Limit is the estimated fleet limit of Graph, calls/s (hold only).
	Limit float64 `json:"limit,omitempty"`
	// Guess (hold only) says Limit is guessed from the burst that ended
	// the open phase, not estimated from a drain: the throttle that
	// refutes it cuts as deep as its estimate says.
	Guess bool `json:"guess,omitempty"`
	// NoGuess says a guess was refuted low (its probe opened the pacer
	// without a throttle): Graph's bucket holds less of its rate than a
	// guess assumes, and the throttle that ends the next open phase
	// ramps instead of guessing. It carries over to every later law.
	NoGuess bool `json:"noGuess,omitempty"`
	// Burst is the estimated number of calls Graph lets through at once.
	Burst float64 `json:"burst,omitempty"`
	// Span (ramp only) is how long the successes counted in Burst took, in
	// seconds: once the ramp's throttle tells the limit, Graph's refill
	// during Span is taken out of the burst.
	Span float64 `json:"span,omitempty"`
	// Hold is how long the rate holds before it probes (hold only).
	Hold time.Duration `json:"hold,omitempty"`
	// Cut is when the throttle that set this law was answered.
	Cut time.Time `json:"cut,omitzero"`
}

// slowGraph is the round trip from which Graph counts as slow: the slow
// start's doubling per round trip then takes seconds (issue 15).
const slowGraph = 50 * time.Millisecond

// rampOpenFactor: a ramp that grew this far without a throttle means Graph
// is not limiting at all any more.
const rampOpenFactor = 1e4

// law holds the tuning of the rate law (from Config).
type law struct {
	minRate    float64
	decrease   float64
	margin     float64
	growth     float64
	openAbove  float64
	holdFor    time.Duration
	probeScale time.Duration
}

// rate is the fleet rate of curve c at t, in calls/s; +Inf when open.
func (l law) rate(c Curve, t time.Time) float64 {
	switch c.Mode {
	case ModeRamp:
		x := max(0, t.Sub(c.From).Seconds())
		f := c.Rate * math.Pow(l.growth, x)
		if f > rampOpenFactor*c.Rate {
			return math.Inf(1)
		}
		return f
	case ModeHold:
		f := c.Rate
		if x := t.Sub(c.From) - c.Hold; x > 0 {
			s := x.Seconds() / l.probeScale.Seconds()
			f *= 1 + s*s*s
		}
		if f > l.openAbove*max(c.Limit, c.Rate) {
			return math.Inf(1)
		}
		return f
	}
	return math.Inf(1)
}

// advance is when the fleet, sending at curve c's rate from `from`, has
// sent `calls` calls. Departures are scheduled with it rather than with the
// rate at one instant, so that a ramp's calls leave when the ramp allows
// them and not one stale interval later.
func (l law) advance(c Curve, from time.Time, calls float64) time.Time {
	switch c.Mode {
	case ModeRamp:
		if gap := c.From.Sub(from).Seconds(); gap > 0 {
			// Before the ramp starts its rate is c.Rate.
			if calls <= gap*c.Rate {
				return from.Add(seconds(calls / c.Rate))
			}
			calls -= gap * c.Rate
			from = c.From
		}
		lg := math.Log(l.growth)
		x := from.Sub(c.From).Seconds()
		// ∫ c.Rate·g^u du from x to y = calls
		y := math.Log(math.Pow(l.growth, x)+calls*lg/c.Rate) / lg
		if math.IsInf(y, 0) || math.IsNaN(y) || y-x > 3600 {
			return from
		}
		return from.Add(seconds(y - x))
	case ModeHold:
		// The probe rises slowly: the rate at `from` is good for the
		// next interval, and errs late.
		f := l.rate(c, from)
		if math.IsInf(f, 1) {
			return from
		}
		return from.Add(seconds(calls / f))
	}
	return from
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// cut is the law after a throttle answered at `at` that closed the gate
// until `until`. b is the fleet's measure of Graph's burst (used when the
// throttle ends the open phase). caps holds, per member, the most it was
// sending (+Inf for members the rate held back): the fleet sent at
// sent(c, caps), which is c's rate only when every member used its share.
func (l law) cut(c Curve, at, until time.Time, b burst, caps []float64) Curve {
	f := l.rate(c, at)
	if math.IsInf(f, 1) {
		// A guess open here was refuted low: its probe went far above it
		// without a throttle. The next burst would give the same guess.
		return l.afterOpen(b, at, until, c.NoGuess || (c.Mode == ModeHold && c.Guess))
	}
	next := Curve{Mode: ModeHold, From: until, Burst: c.Burst, Hold: l.holdFor, Cut: at, NoGuess: c.NoGuess}
	sentAt := sent(f, caps)
	est, ok := l.estimate(c, at, caps)
	floor := l.minRate
	if c.Mode == ModeRamp {
		c.Burst = burstGuess(c)
		if est, ok = l.estimate(c, at, caps); ok && c.Span <= burstSpan {
			// The burst was counted over Span seconds while Graph
			// refilled: take the refill out and estimate again (twice
			// is enough, Span is short).
			for range 2 {
				c.Burst = min(max(1, next.Burst-est.limit*c.Span), next.Burst)
				if est, ok = l.estimate(c, at, caps); !ok {
					break
				}
			}
		}
		next.Burst = c.Burst
	}
	if c.Mode == ModeHold {
		// An estimate cuts at most as deep as a plain decrease: a
		// throttle the model explains badly (Graph's bucket was not full
		// when the gate opened, someone else spends it, calls reached
		// Graph bunched) costs no more than the classic answer. A guess
		// too: the model would be exact if calls reached Graph as they
		// left, but on a loaded machine or network a guess that was right
		// drains a small bucket by bunching, and its estimate then cut to
		// 0.2-0.6 of Graph's limit (issue 15). A guess far too high takes
		// a few throttles more to come down. (A ramp overshoots by
		// design: its estimate may cut deeper.)
		floor = max(floor, l.decrease*sentAt)
	}
	if ok {
		next.Limit = min(max(est.limit, floor), sentAt)
		// An estimate from a short drain is rough: hold it for less time,
		// so that the probe, slow near the limit, soon measures it again.
		// A ramp's also errs high (the last calls before the throttle
		// come in steps the model smooths): hold further under it.
		sure := l.sureness(est)
		margin := l.margin
		if c.Mode == ModeRamp {
			margin *= min(maxMarginBoost, max(1, 1/sure))
		}
		next.Rate = max(l.minRate, (1-margin)*next.Limit)
		next.Hold = time.Duration(float64(l.holdFor) * min(1, max(minHoldShare, sure)))
		return next
	}
	// No estimate: classic multiplicative decrease, from what the fleet
	// really sent, held for a short while.
	next.Limit = sentAt
	next.Rate = max(l.minRate, l.decrease*sentAt)
	next.Hold = time.Duration(float64(l.holdFor) * minHoldShare)
	return next
}

// afterOpen is the law after the throttle that ended the open phase,
// answered at `at` and closing the gate until `until`; b is Graph's burst
// as the replicas measured it.
//
// A burst measured as one (the successes came within burstSpan) gives a
// guess of the limit: Graph's bucket is taken to hold guessBucket of its
// rate (the stand-in's shape). The fleet holds just under the guess: when
// the guess is right no second throttle is spent on finding the limit
// (a ramp's costs a second of Graph's capacity, the gate, plus the second
// it takes to climb); when it is high the first paced second drains the
// bucket, and that throttle's estimate is as good as any (a full bucket
// drained at a steady rate); when it is low the probe after the hold
// finds the limit. A burst spread over longer is a rate seen, not a
// bucket: the fleet ramps up from it, per second, fast.
//
// noGuess (a guess was refuted low before) always ramps.
func (l law) afterOpen(b burst, at, until time.Time, noGuess bool) Curve {
	if !noGuess && b.bucket > 0 && b.span <= burstSpan {
		bucket := wholeBucket(b.bucket)
		limit := bucket / guessBucket.Seconds()
		return Curve{Mode: ModeHold, Guess: true, From: until, Rate: max(l.minRate, (1-l.margin)*limit),
			Limit: limit, Burst: bucket, Hold: time.Duration(float64(l.holdFor) * guessHoldShare), Cut: at}
	}
	return Curve{Mode: ModeRamp, From: until, Rate: max(l.minRate, b.calls), Burst: b.calls, Span: b.span, Cut: at, NoGuess: noGuess}
}

// bucketShare is the bucket behind successes answered at ok (in answer
// order) before a throttle answered at `at`: the smallest bucket, full at
// the first success and refilled at the guessed limit (guessBucket of the
// bucket per guessBucket), that let every one of them through. A plain
// count of the successes counts Graph's refill while they came, but not
// all of it: while the slow start sends slower than Graph refills, the
// bucket stays full and its refill is lost. The true bucket is larger by
// less than a call (what the last success left), so the fleet rounds the
// sum of its members' up. A success answered after the throttle reached
// Graph before it.
func bucketShare(ok []time.Time, at time.Time) float64 {
	if len(ok) == 0 {
		return 0
	}
	fits := func(b float64) bool {
		level, last := b, ok[0]
		r := b / guessBucket.Seconds()
		for _, t := range ok {
			t = minTime(t, at)
			level = min(b, level+r*max(0, t.Sub(last).Seconds()))
			last = maxTime(last, t)
			if level < 1 {
				return false
			}
			level--
		}
		return true
	}
	// A bucket of every call fits them.
	return bisect(0, float64(len(ok)), fits)
}

// bisect is the least x in [lo, hi] where the monotone ok turns true, to
// a 2⁻⁵⁰th of the interval.
func bisect(lo, hi float64, ok func(float64) bool) float64 {
	for range 50 {
		mid := (lo + hi) / 2
		if ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// wholeBucket rounds the fleet's bucket measure up to whole calls: the
// measure is the least bucket that explains the successes, and a bucket
// holds whole calls (answers that came back a little more bunched than
// they reached Graph may lift the measure by up to bucketSlack).
func wholeBucket(b float64) float64 {
	return max(1, math.Ceil(b-bucketSlack))
}

// bucketSlack is how far over a whole number of calls a bucket measure
// may lie and still count as it.
const bucketSlack = 0.05

// guessBucket is how much of Graph's rate its bucket is guessed to hold.
// Graph's bucket is not published; a tenth of a second is the stand-in's,
// and a throttle corrects a guess that is wrong.
const guessBucket = 100 * time.Millisecond

// guessHoldShare is how long a guess holds, as a share of HoldFor. A
// guess the paced seconds did not refute bounds the limit from below only
// (Graph's bucket was full when the gate opened and has not run dry), so
// the probe that would find a higher limit comes sooner than after an
// estimate; but not within the first minute, which a right guess spends
// without a second throttle.
const guessHoldShare = 0.5

// rebase restarts st's law, set by the throttle that ended the open
// phase, from the burst its members reported for that throttle (they
// report it while its gate is closed, and a success answered late adds to
// it).
func (l law) rebase(st *FleetState) {
	if b := burstOf(st, st.Curve.Cut); b.calls > 0 {
		st.Curve = l.afterOpen(b, st.Curve.Cut, st.Curve.From, st.Curve.NoGuess)
	}
}

// fromBurst reports whether c was set by the throttle that ended the open
// phase, from Graph's burst.
func (c Curve) fromBurst() bool { return c.Mode == ModeRamp || c.Guess }

// minHoldShare is the shortest hold, as a share of HoldFor;
// maxMarginBoost the most a rough estimate widens the margin.
const (
	minHoldShare   = 1.0 / 8
	maxMarginBoost = 4.0
)

// burstSpan is the longest a burst measure may take and still count as a
// burst: successes spread over longer show a rate, not a burst.
const burstSpan = 0.25

// burstGuess is the burst of a ramp curve: what the open phase measured
// when it was a burst; otherwise guessBucket of the rate then seen.
func burstGuess(c Curve) float64 {
	if c.Span <= burstSpan {
		return c.Burst
	}
	return max(1, c.Burst/c.Span*guessBucket.Seconds())
}

// sent is the fleet's sending rate when the law allows f: each of the
// members sends its share of f, or what it can when that is less.
func sent(f float64, caps []float64) float64 {
	if len(caps) == 0 {
		return f
	}
	share := f / float64(len(caps))
	s := 0.0
	for _, c := range caps {
		s += min(share, c)
	}
	return s
}

// burst is Graph's burst as the replicas measured it out of the open phase:
// calls that succeeded within span seconds.
type burst struct {
	calls  float64
	span   float64
	bucket float64 // the bucket the calls show (bucketShare), summed
}

// estimateSteps is the resolution of the bucket model in estimate.
const estimateSteps = 2000

// estimate infers Graph's limit from the episode that ended with a
// throttle at `at`: from c.From (the gate opened, Graph's bucket full of
// c.Burst calls) the fleet sent at c's rate, and Graph's bucket ran dry at
// `at`. The estimate is the refill rate for which a bucket of c.Burst calls
// drained by c's rate runs dry exactly then. This is what makes a throttle
// informative: a fleet that creeps over the limit learns it to within a few
// percent and can sit just under it instead of sawing up and down.
func (l law) estimate(c Curve, at time.Time, caps []float64) (estimate, bool) {
	span := at.Sub(c.From)
	if span <= 0 || c.Burst < 2 {
		// A bucket of one call drains at the first call, whatever Graph's
		// rate: the throttle says only that the fleet sent faster than
		// Graph refills. (An estimate would be what the fleet sent; each
		// cut would be the margin only, and a fleet over the limit would
		// stay over it, throttled at every opening of the gate.)
		return estimate{}, false
	}
	dt := span.Seconds() / estimateSteps
	out := make([]float64, estimateSteps)
	hi := 0.0
	for i := range out {
		f := l.rate(c, c.From.Add(time.Duration((float64(i)+0.5)*dt*float64(time.Second))))
		if math.IsInf(f, 1) {
			return estimate{}, false
		}
		f = sent(f, caps)
		out[i] = f * dt
		hi = max(hi, f)
	}
	// Calls are whole: a call finds a token only while the level is at
	// least one, so the bucket holds Burst-1 calls above the level at
	// which the next one fails.
	room := c.Burst - 1
	drains := func(r float64) bool {
		level := room
		for _, s := range out {
			level = min(room, level+r*dt-s)
			if level < 0 {
				return true
			}
		}
		return false
	}
	if !drains(0) {
		// The fleet sent less than a burst: the throttle is not explained
		// by this episode (Graph's bucket was not full, or others use it).
		return estimate{}, false
	}
	lo := bisect(0, hi, func(r float64) bool { return !drains(r) })
	// The drain is the end of the episode where the fleet sent above the
	// estimate: the longer it lasted, the less one call more or less
	// (calls are whole, the model is not) moves the estimate.
	i := len(out)
	for i > 0 && out[i-1] > lo*dt {
		i--
	}
	return estimate{limit: lo, drain: float64(len(out)-i) * dt}, true
}

// estimate is a limit inferred from an episode, and how long Graph's
// bucket drained before the throttle, seconds.
type estimate struct {
	limit float64
	drain float64
}

// sureness is how much an estimate can be trusted to stay under the margin:
// one call's worth of error over the drain, relative to the margin's half.
// 1 or more is sure.
func (l law) sureness(e estimate) float64 {
	if e.limit <= 0 || e.drain <= 0 {
		return 0
	}
	u := 0.5 / (e.limit * e.drain)
	if l.margin <= 0 {
		return 1
	}
	return l.margin / 2 / u
}
