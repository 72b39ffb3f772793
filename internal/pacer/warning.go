package pacer

import (
	"math"
	"time"
)

// Graph's early warning. Graph's identity and access throttling answers
// with x-ms-throttle-limit-percentage once an application has spent more
// than 0.8 of its limit (the value runs from 0.8 to 1.8: "returned only
// when the application consumed more than 0.8 of its limit",
// https://learn.microsoft.com/graph/throttling-limits, "Regular responses
// requests"). The pacer uses it to slow down before the first 429 instead of
// after it:
//
//   - Open (no throttle yet), the first warning ends the open phase without
//     a gate: the fleet holds at Decrease times what it was sending.
//   - Paced, a warning cuts the same way only when the usage has risen by
//     warnRise since the first warning of a call that left under the law in
//     force: the fleet sends faster than Graph refills. A usage that holds
//     or falls (the fleet sits at the limit, or under it and Graph's window
//     recovers) cuts nothing: at a steady rate near its limit Graph warns on
//     every answer, and cutting on each would saw the rate down.
//
// A cut by a warning starts a short hold (HoldFor/8) and probes after it,
// as after a throttle that allows no estimate; it closes no gate, so no
// second of Graph's capacity is lost. Answers without the header change
// nothing.
const (
	// warnFrom is the least usage that counts as a warning.
	warnFrom = 0.8
	// warnRise is how far the usage must rise under one law to cut it.
	warnRise = 0.02
)

// SucceededWithUsage reports a success whose answer said how much of
// Graph's limit the application has spent (x-ms-throttle-limit-percentage,
// 0.8 to 1.8; 0 when the header was absent). Under warnFrom it is Succeeded.
func (p *Pacer) SucceededWithUsage(usage float64) {
	p.Succeeded()
	if !(usage >= warnFrom) || math.IsInf(usage, 0) {
		return
	}
	now := p.clock.Now()
	p.mu.Lock()
	c := p.view.Curve
	sent := now.Add(-p.latency)
	switch {
	case now.Before(p.view.Until):
		// The gate is closed: a throttle already slowed the fleet.
		p.mu.Unlock()
		return
	case c.Mode == ModeOpen:
	case sent.Before(c.From):
		// The call left before the law in force: its usage says what the
		// last law did, and that law is already cut.
		p.mu.Unlock()
		return
	case p.warnLow == 0 || !p.warnLaw.Equal(c.Cut):
		// The first warning under this law: the level to rise from.
		p.warnLaw, p.warnLow = c.Cut, usage
		p.mu.Unlock()
		return
	case usage < p.warnLow+warnRise:
		p.warnLow = min(p.warnLow, usage)
		p.mu.Unlock()
		return
	}
	p.seq++
	e := event{seq: p.seq, at: now, sent: sent, until: now, warn: true, usage: usage,
		law: c.Cut, self: p.memberLocked(now)}
	p.events = append(p.events, e)
	if len(p.events) > maxEvents {
		p.events = p.events[len(p.events)-maxEvents:]
	}
	p.setSelfLocked(e.self)
	cut := p.applyEvent(&p.view, e)
	rate, until, curve := p.rateLocked(now), p.view.Until, p.view.Curve
	p.mu.Unlock()
	if !cut {
		return
	}
	p.cfg.Log.Info("pacer: Graph warns of its limit, rate cut", "operation", p.cfg.Operation,
		"limit_usage", usage, "fleet_rate", curve.Rate)
	select {
	case p.kick <- struct{}{}:
	default:
	}
	p.changedHook(rate, until)
}

// warnCut is the law after a warning answered at `at` under curve c: a hold
// at Decrease times what the fleet sent (caps, as for a throttle), from
// `at`, with no gate. It has no burst: Graph's bucket was not full when it
// started, so a throttle under it is not a drain from full (cut estimates
// nothing from it, and decreases).
func (l law) warnCut(c Curve, at time.Time, caps []float64) Curve {
	f := l.rate(c, at)
	sentAt := sent(f, caps)
	if math.IsInf(sentAt, 1) {
		// Open, and some member reported nothing yet: count what the
		// others sent.
		sentAt = 0
		for _, x := range caps {
			if !math.IsInf(x, 1) {
				sentAt += x
			}
		}
	}
	sentAt = max(sentAt, l.minRate)
	return Curve{Mode: ModeHold, From: at, Rate: max(l.minRate, l.decrease*sentAt), Limit: sentAt,
		Hold: time.Duration(float64(l.holdFor) * minHoldShare), Cut: at, NoGuess: c.NoGuess}
}
