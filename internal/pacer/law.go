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
	// unknown. The rate starts at the burst Graph let through, per second,
	// and grows by RampGrowth every second until the next throttle.
	ModeRamp Mode = "ramp"
	// ModeHold: the rate holds just under the limit estimated at the last
	// throttle for HoldFor, then probes upward, slowly at first.
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
		// Out of the open phase nothing is known but the burst: start
		// from it, per second, and ramp up fast.
		return Curve{Mode: ModeRamp, From: until, Rate: max(l.minRate, b.calls), Burst: b.calls, Span: b.span, Cut: at}
	}
	next := Curve{Mode: ModeHold, From: until, Burst: c.Burst, Hold: l.holdFor, Cut: at}
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
		// when the gate opened, someone else spends it) costs no more
		// than the classic answer. (A ramp overshoots by design.)
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
// when it was a burst; otherwise a tenth of a second of the rate then seen.
// (Graph's bucket is not published; a tenth of a second is the stand-in's,
// and the rate law corrects the limit at later throttles anyway.)
func burstGuess(c Curve) float64 {
	if c.Span <= burstSpan {
		return c.Burst
	}
	return max(1, c.Burst/c.Span/10)
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
	calls float64
	span  float64
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
	if span <= 0 || c.Burst <= 0 {
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
	room := max(0, c.Burst-1)
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
	lo := 0.0
	for range 50 {
		mid := (lo + hi) / 2
		if drains(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
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
