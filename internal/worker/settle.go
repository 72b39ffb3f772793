package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/outcome"
	"github.com/graphops/worker/internal/retry"
	"github.com/graphops/worker/metrics"
)

// Outcome is what processing decided for a message; settle carries it out.
type Outcome struct {
	kind kind
	// applied
	status         int
	graphRequestID string
	reconciled     bool
	// duplicate: the record found settled
	record ledger.Record
	// dead letter
	reason      dlq.Reason
	description string
	// hand back
	delay time.Duration
	why   string
	// leave
	err error
}

type kind int

const (
	kindApplied    kind = iota
	kindDuplicate       // settled before (a redelivery, or a JSON-equal resume)
	kindDeadLetter      // to the dead-letter store
	kindHandBack        // back to the broker, redelivered after a delay
	kindLeave           // left to the broker's redelivery: another owner settles it, or nothing can be decided now
	kindDryRun          // a dry run's message: acknowledged on its own consumer, nothing recorded
)

func applied(status int, graphRequestID string, reconciled bool) Outcome {
	return Outcome{kind: kindApplied, status: status, graphRequestID: graphRequestID, reconciled: reconciled}
}
func duplicate(r ledger.Record) Outcome { return Outcome{kind: kindDuplicate, record: r} }
func deadLetter(reason dlq.Reason, description string) Outcome {
	return Outcome{kind: kindDeadLetter, reason: reason, description: description}
}
func handBack(delay time.Duration, why string) Outcome {
	return Outcome{kind: kindHandBack, delay: delay, why: why}
}
func leave(why string, err error) Outcome { return Outcome{kind: kindLeave, why: why, err: err} }

// storeTrouble is the outcome when the ledger cannot be reached: nothing is
// decided, the message goes back to the broker (a last delivery is kept
// until its lease runs out rather than dropped).
func storeTrouble(what string, err error) Outcome {
	return Outcome{kind: kindHandBack, delay: 5*time.Second + jitter(5*time.Second),
		why: "ledger unavailable (" + what + ")", err: err}
}

// The order of settling is what makes every crash point safe:
//
//	applied:       ledger says applied (which frees the request id) →
//	               outcome event → ack
//	dead-lettered: ledger says dead-lettered → outcome event → dead letter
//	               stored, which settles the message (NATS: stored, then
//	               acked; Service Bus: moved to the entity's own queue)
//	duplicate:     outcome event (the recorded one again) → ack, or for a
//	               command recorded as dead-lettered, dead letter again
//	               (deduplicated by the store) → settled
//
// A crash before the ledger write leaves the claim to expire; whoever takes
// it over reconciles a resume by reading Graph. A crash after it finds the
// final record on redelivery, publishes the same event again, and settles
// the message as the record says.

// settle carries out o on the ledger, the outcome stream, the broker and
// the metrics, and lets the next command of the request id in.
func (j *job) settle(o Outcome) {
	defer func() {
		if j.leaveGate != nil {
			j.leaveGate()
		}
	}()
	j.mu.Lock()
	j.claimDone = true
	j.mu.Unlock()
	switch o.kind {
	case kindApplied:
		j.settleApplied(o)
	case kindDuplicate:
		j.settleDuplicate(o.record)
	case kindDeadLetter:
		j.settleDeadLetter(o.reason, o.description)
	case kindHandBack:
		j.settleHandBack(o)
	case kindLeave:
		j.warn("left to the broker's redelivery", "why", o.why, "err", o.err)
	case kindDryRun:
		j.ack()
	}
}

func (j *job) settleApplied(o Outcome) {
	crashPoint("after-graph")
	if err := j.retryStore(func(ctx context.Context) error {
		return j.claim.Applied(ctx, o.status, o.graphRequestID, o.reconciled)
	}); err != nil {
		// Graph took the call but the ledger cannot say so. Do not ack:
		// the message comes back after the claim's lease and its next
		// owner reconciles (resume) or resends the same PATCH.
		j.logError("applied but not recorded; leaving the message to redelivery", "err", err)
		return
	}
	crashPoint("after-ledger")
	d := j.eventData(metrics.OutcomeApplied)
	d.Reconciled = o.reconciled
	if !j.publish(d) {
		return
	}
	crashPoint("after-event")
	j.ack()
	j.info("applied", "graph_request_id", o.graphRequestID, "client_request_id", j.lastClient,
		"status", o.status, "reconciled", o.reconciled, "attempt", j.claim.Record.Attempts)
	j.done(metrics.OutcomeApplied, "", "")
}

// settleDuplicate settles a command the ledger has settled before: a
// redelivery of the same command (its recorded outcome is published again,
// docs/SPEC.md §9), or another command repeating an applied resume.
func (j *job) settleDuplicate(r ledger.Record) {
	same := r.Source == j.cmd.Source && r.ID == j.cmd.ID
	d := j.eventData(metrics.OutcomeDuplicate)
	switch {
	case !same:
		d.DuplicateOf = r.ID
	case r.State == ledger.StateApplied:
		d.Outcome, d.Reconciled, d.Attempts = metrics.OutcomeApplied, r.Reconciled, r.Attempts
		lastCall(&d, r)
	default: // dead-lettered, and not a replay
		d.Outcome, d.Reason, d.Description, d.Attempts = metrics.OutcomeDeadLettered, r.Reason, r.Description, r.Attempts
		lastCall(&d, r)
	}
	if !j.publish(d) {
		return
	}
	if same && r.State == ledger.StateDeadLettered && (r.BodyHash == "" || r.BodyHash == j.cmd.BodyHash) {
		// The first delivery may have stopped between the ledger and the
		// dead-letter store: store it again (the store keeps one copy).
		// (The same source+id with another body is acknowledged: its
		// earlier command's dead letter is the one to replay.)
		e := j.entry(dlq.Reason(r.Reason), r.Description)
		e.Attempts, e.FirstAttempt, e.LastAttempt = r.Attempts, r.FirstAttempt, r.LastAttempt
		lastCallOf(&e, r) // what the first delivery's dead letter said of the last call
		if !j.putDeadLetter(e) {
			return
		}
	} else {
		j.ack()
	}
	j.info("duplicate", "state", r.State, "duplicate_of", r.ID, "earlier_source", r.Source)
	j.done(metrics.OutcomeDuplicate, "", "")
}

func (j *job) settleDeadLetter(reason dlq.Reason, description string) {
	e := j.entry(reason, description)
	var record func(ctx context.Context) error // nil: nothing in the ledger to write
	switch u := j.unparsed; {
	case j.claim != nil:
		record = func(ctx context.Context) error { return j.claim.DeadLettered(ctx, string(reason), description) }
	case u != nil && u.ID != "" && u.RequestID != "":
		// A command refused by validation whose ids could be read: the
		// ledger keeps it for `worker history`.
		id := ledger.Identity{Source: u.Source, ID: u.ID, Request: ledger.RequestOf(string(u.Type), u.RequestID), RequestID: u.RequestID}
		record = func(ctx context.Context) error {
			return j.p.Ledger.Refused(ctx, id, string(reason), description, j.m.Header(dlq.HeaderReplay) != "")
		}
	}
	if record != nil {
		if err := j.retryStore(record); err != nil {
			j.logError("cannot record the dead letter in the ledger; handing the message back", "reason", reason, "err", err)
			// With the error, a last delivery is left to its lease rather
			// than dead-lettered again (which would need the same ledger).
			j.settleHandBack(Outcome{kind: kindHandBack, delay: j.p.cfg.BackoffMax, why: "ledger unavailable", err: err})
			return
		}
	}
	d := j.eventData(metrics.OutcomeDeadLettered)
	d.Reason, d.Description = string(reason), description
	if !j.publish(d) {
		return
	}
	if !j.putDeadLetter(e) {
		return
	}
	j.p.Metrics.DeadLettered(e.Type, string(e.Reason))
	args := []any{"reason", e.Reason, "description", e.Description, "attempt", e.Attempts}
	if e.GraphStatus != 0 { // as the headers: only a call Graph answered is described
		args = append(args, "graph_status", e.GraphStatus, "graph_code", e.GraphCode,
			"graph_request_id", e.GraphRequestID)
	}
	if e.ClientRequestID != "" {
		args = append(args, "client_request_id", e.ClientRequestID)
	}
	j.warn("dead-lettered", args...)
	j.done(metrics.OutcomeDeadLettered, string(reason), description)
}

// entry is the dead letter of the job's command.
func (j *job) entry(reason dlq.Reason, description string) dlq.Entry {
	e := dlq.Entry{Reason: reason, Description: description, Type: string(j.typ)}
	switch {
	case j.cmd != nil:
		e.CommandID, e.CommandSource, e.RequestID = j.cmd.ID, j.cmd.Source, j.cmd.RequestID()
	case j.unparsed != nil:
		e.CommandID, e.CommandSource, e.RequestID = j.unparsed.ID, j.unparsed.Source, j.unparsed.RequestID
	}
	if j.claim != nil {
		r := j.claim.Record
		e.Attempts, e.FirstAttempt, e.LastAttempt = r.Attempts, r.FirstAttempt, r.LastAttempt
		if j.lastErr == nil && j.lastClient == "" {
			// This delivery called nothing (an earlier one did, then
			// handed the command back): the ledger's history says what.
			lastCallOf(&e, r)
		}
	}
	if ge := j.lastErr; ge != nil {
		e.GraphStatus, e.GraphCode, e.GraphRequestID = ge.Status, ge.Code, ge.GraphRequestID
	}
	if j.lastClient != "" {
		e.ClientRequestID = j.lastClient
	}
	return e
}

// lastCallOf describes in e the last write call r's history keeps: its
// client-request-id, and Graph's answer when it came (docs/SPEC.md §4).
func lastCallOf(e *dlq.Entry, r ledger.Record) {
	a, ok := r.LastCall()
	if !ok {
		return
	}
	e.ClientRequestID = a.ClientRequestID
	if a.GraphStatus != 0 {
		e.GraphStatus, e.GraphCode, e.GraphRequestID = a.GraphStatus, a.GraphCode, a.GraphRequestID
	}
}

// putDeadLetter stores e and settles the message (the broker's verb: NATS
// stores it in the dead-letter stream, deduplicated by the message, and
// acks; Service Bus moves it to the entity's own dead-letter queue); false
// means the message was handed back instead.
func (j *job) putDeadLetter(e dlq.Entry) bool {
	if err := j.retryStore(func(ctx context.Context) error { return j.m.DeadLetter(ctx, e) }); err != nil {
		j.logError("cannot store dead letter; handing the message back", "reason", e.Reason, "err", err)
		if !j.m.Last() {
			j.handBackMessage(j.p.cfg.BackoffMax, "dead-letter store unavailable")
		}
		return false
	}
	return true
}

// settleHandBack returns the message to the broker for redelivery after a
// delay, releasing what the job holds so another replica can continue at
// once. The last delivery cannot be handed back (the broker would drop
// it): it is dead-lettered instead, to be replayed — except when the
// ledger is down, when it is left to its lease.
func (j *job) settleHandBack(o Outcome) {
	if j.m.Last() {
		if o.err != nil {
			j.logError("cannot settle the last delivery; leaving it to the broker", "why", o.why, "err", o.err)
			return
		}
		j.settleDeadLetter(dlq.ReasonRetriesExhausted, fmt.Sprintf(
			"last delivery (%d) could not finish: %s; %s", j.m.Delivery(), o.why, j.lastFailure()))
		return
	}
	if o.err != nil {
		j.logError("handing back", "why", o.why, "err", o.err)
	}
	delay := o.delay
	if wait := j.settleUntil.Sub(j.p.Now()); wait > 0 && j.claim != nil {
		// A write is still unanswered: keep everyone off the command and
		// its request id until Graph must have finished with it.
		j.releaseClaim(j.settleUntil)
		delay = max(delay, wait+jitter(time.Second))
	} else {
		j.releaseClaim(time.Time{})
	}
	j.handBackMessage(delay, o.why)
}

func (j *job) handBackMessage(delay time.Duration, why string) {
	delay = max(delay, 0)
	if err := j.m.HandBack(context.WithoutCancel(j.p.stop), delay); err != nil {
		j.warn("hand back failed; the broker redelivers after the ack wait", "err", err)
	}
	j.info("handed back", "why", why, "delay", delay.Round(time.Millisecond))
}

// releaseClaim gives the job's claim, and with it the request id, back;
// others stay off it until until (zero: at once).
func (j *job) releaseClaim(until time.Time) {
	if j.claim == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.p.stop), 5*time.Second)
	defer cancel()
	if err := j.claim.ReleaseUntil(ctx, until); err != nil {
		j.warn("release claim", "err", err)
	}
}

func (j *job) ack() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.p.stop), 10*time.Second)
	defer cancel()
	if err := j.m.Ack(ctx); err != nil {
		// The outcome is recorded: a redelivery is a duplicate.
		j.warn("ack failed; a redelivery will be recognised as a duplicate", "err", err)
	}
}

// eventData describes the job's command and its last write call for an
// outcome event.
func (j *job) eventData(o string) outcome.Data {
	d := outcome.Data{Type: string(j.typ), Outcome: o}
	switch {
	case j.cmd != nil:
		d.CommandID, d.CommandSource, d.RequestID = j.cmd.ID, j.cmd.Source, j.cmd.RequestID()
	case j.unparsed != nil:
		d.CommandID, d.CommandSource, d.RequestID = j.unparsed.ID, j.unparsed.Source, j.unparsed.RequestID
	}
	if d.CommandID == "" && d.CommandSource == "" {
		// Nothing of the command could be read: the delivery names it.
		d.CommandSource = "urn:graphops:message:" + j.m.Subject() + ":" + j.m.ID()
	}
	if j.claim != nil {
		d.Attempts = j.claim.Record.Attempts
		lastCall(&d, j.claim.Record)
	}
	return d
}

// lastCall describes the last write call the record's history keeps, so
// that the first publication and a redelivery's say the same.
func lastCall(d *outcome.Data, r ledger.Record) {
	if a, ok := r.LastCall(); ok {
		d.LastCall(a.GraphStatus, a.GraphRequestID, a.ClientRequestID)
	}
}

// publish publishes the outcome event of d before the message is settled
// (docs/SPEC.md §9). When it cannot, the message goes back to the broker: the
// ledger has its outcome, so the redelivery publishes the same event again.
func (j *job) publish(d outcome.Data) bool {
	if j.p.Outcomes == nil {
		return true
	}
	e, err := outcome.New(d, j.p.Now())
	if err == nil {
		err = retry.Do(j.p.stop, retry.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, PerTry: 10 * time.Second,
			Tries: 1 + int(j.p.cfg.HandbackAfter/(5*time.Second))},
			func(ctx context.Context) error { return j.p.Outcomes.Publish(ctx, e) })
	}
	if err != nil {
		why := err.Error()
		j.p.outcomesDown.Store(&why)
		j.logError("cannot publish the outcome event; the message goes back and its redelivery publishes it", "event_id", e.ID, "err", err)
		if !j.m.Last() {
			j.handBackMessage(j.p.cfg.BackoffMax, "outcome event not published")
		}
		return false
	}
	j.p.outcomesDown.Store(nil)
	j.info("outcome event published", "event_id", e.ID, "outcome", d.Outcome)
	return true
}

// retryStore retries a store write a few times: settling must survive a
// blip, and must not wait forever.
func (j *job) retryStore(f func(ctx context.Context) error) error {
	return retry.Do(context.WithoutCancel(j.p.stop), retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second,
		Tries: 5, PerTry: 10 * time.Second}, f)
}

func (j *job) done(o, reason, description string) {
	d := j.p.Now().Sub(j.received)
	j.p.Metrics.CommandDone(string(j.typ), o, d)
	if j.p.OnSettled == nil {
		return
	}
	s := Settled{Type: j.typ, Outcome: o, Reason: reason, Description: description, Duration: d}
	if j.cmd != nil {
		s.CommandID, s.Source = j.cmd.ID, j.cmd.Source
	} else if j.unparsed != nil {
		s.CommandID, s.Source = j.unparsed.ID, j.unparsed.Source
	}
	j.p.OnSettled(s)
}
