package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/metrics"
)

// The order of settling is what makes every crash point safe:
//
//	applied:       ledger says applied (which frees the request id) → ack
//	dead-lettered: dead letter stored (deduplicated by delivery) → ledger
//	               says dead-lettered → ack
//
// A crash before the ledger write leaves the claim to expire; whoever takes
// it over reconciles a resume by reading Graph. A crash after it finds the
// final record on redelivery and acks as a duplicate.

// applied records the command as applied and acknowledges it.
func (j *job) applied(status int, graphRequestID string, reconciled bool) {
	crashPoint("after-graph")
	err := j.retryStore(func(ctx context.Context) error {
		return j.claim.Applied(ctx, status, graphRequestID, reconciled)
	})
	if err != nil {
		// Graph took the call but the ledger cannot say so. Do not ack:
		// the message comes back after the claim's lease and its next
		// owner reconciles (resume) or resends the same PATCH.
		j.logError("applied but not recorded; leaving the message to redelivery", "err", err)
		return
	}
	crashPoint("after-ledger")
	j.ack()
	j.info("applied", "graph_request_id", graphRequestID, "status", status,
		"reconciled", reconciled, "attempt", j.claim.Record.Attempts)
	j.done(metrics.OutcomeApplied)
}

// graphRejected dead-letters a command Graph refused for good.
func (j *job) graphRejected(context string) {
	desc := j.lastFailure()
	if context != "" {
		desc = context + ": " + desc
	}
	j.deadLetter(dlq.ReasonGraphRejected, desc)
}

// deadLetter stores a dead letter for the command, records it and acks.
func (j *job) deadLetter(reason dlq.Reason, description string) {
	e := dlq.Entry{Reason: reason, Description: description, Type: string(j.typ)}
	if c := j.cmd; c != nil {
		e.CommandID, e.CommandSource, e.RequestID = c.ID, c.Source, c.RequestID()
	}
	if j.claim != nil {
		r := j.claim.Record
		e.Attempts, e.FirstAttempt, e.LastAttempt = r.Attempts, r.FirstAttempt, r.LastAttempt
	}
	if ge := j.lastErr; ge != nil {
		e.GraphStatus, e.GraphCode, e.GraphRequestID, e.ClientRequestID = ge.Status, ge.Code, ge.GraphRequestID, ge.ClientRequestID
	}
	j.putDeadLetter(e)
}

// putDeadLetter has the broker store e and settle the message (the
// adapter adds the original bytes, subject and headers, and stores the same
// delivery once however often it is asked), then records it in the ledger.
func (j *job) putDeadLetter(e dlq.Entry) {
	if err := j.retryStore(func(ctx context.Context) error {
		return j.m.DeadLetter(ctx, e)
	}); err != nil {
		j.logError("cannot store dead letter; handing the message back", "reason", e.Reason, "err", err)
		j.handBack(j.p.cfg.BackoffMax, "dead-letter store unavailable")
		return
	}
	if j.claim != nil {
		if err := j.retryStore(func(ctx context.Context) error {
			return j.claim.DeadLettered(ctx, string(e.Reason))
		}); err != nil {
			// The dead letter is stored; a redelivery will store it again
			// (or deduplicate it) and try the record once more.
			j.logError("dead-lettered but not recorded", "err", err)
		}
	}
	j.p.Metrics.DeadLettered(e.Type, string(e.Reason))
	j.reason, j.description = string(e.Reason), e.Description
	args := []any{"reason", e.Reason, "description", e.Description, "attempt", e.Attempts}
	if e.GraphStatus != 0 { // as the headers: only a call Graph answered is described
		args = append(args, "graph_status", e.GraphStatus, "graph_code", e.GraphCode,
			"graph_request_id", e.GraphRequestID, "client_request_id", e.ClientRequestID)
	}
	j.warn("dead-lettered", args...)
	j.done(metrics.OutcomeDeadLettered)
}

// handBack returns the message to the broker for redelivery after delay,
// releasing what the job holds so another replica can continue at once.
// The last delivery cannot be handed back (the broker would drop it): it is
// dead-lettered instead, to be replayed.
func (j *job) handBack(delay time.Duration, why string) {
	if j.m.Last() {
		j.deadLetter(dlq.ReasonRetriesExhausted, fmt.Sprintf(
			"last delivery (%d) could not finish: %s; %s", j.m.Delivery(), why, j.lastFailure()))
		return
	}
	if wait := j.settleUntil.Sub(j.p.Now()); wait > 0 {
		// A write is still unanswered: keep everyone off the command and
		// its request id until Graph must have finished with it.
		j.holdUntil(j.settleUntil)
		delay = max(delay, wait+jitter(time.Second))
	} else {
		j.releaseAll()
	}
	delay = max(delay, 0)
	if err := j.m.HandBack(context.WithoutCancel(j.p.stop), delay); err != nil {
		j.warn("hand back failed; the broker redelivers after the ack wait", "err", err)
	}
	j.info("handed back", "why", why, "delay", delay.Round(time.Millisecond))
}

// abandon stops work on a message another owner has taken over; that owner
// settles it.
func (j *job) abandon(why string, err error) {
	j.warn("abandoning the message: "+why, "err", err)
}

// storeTrouble handles a ledger that cannot be reached: nothing is decided,
// the message goes back to the broker.
func (j *job) storeTrouble(what string, err error) {
	j.logError("ledger unavailable", "op", what, "err", err)
	if j.m.Last() {
		// Keep the message: let the ack wait run out rather than drop it.
		// (With MaxDeliver reached the broker will not redeliver; the
		// default MaxDeliver is large enough for this to need a long outage.)
		return
	}
	j.releaseAll()
	if herr := j.m.HandBack(context.WithoutCancel(j.p.stop), 5*time.Second+jitter(5*time.Second)); herr != nil {
		j.warn("hand back failed", "err", herr)
	}
}

// releaseAll gives the job's claim, and with it the request id, back.
func (j *job) releaseAll() {
	if j.claim == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.p.stop), 5*time.Second)
	defer cancel()
	if err := j.claim.Release(ctx); err != nil {
		j.warn("release claim", "err", err)
	}
}

// holdUntil releases the job's claim but keeps the command and its request
// id closed to others until until.
func (j *job) holdUntil(until time.Time) {
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

func (j *job) done(outcome string) {
	d := j.p.Now().Sub(j.received)
	j.p.Metrics.CommandDone(string(j.typ), outcome, d)
	if j.p.OnSettled == nil {
		return
	}
	s := Settled{Type: j.typ, Outcome: outcome, Reason: j.reason, Description: j.description, Duration: d}
	s.CommandID, s.Source = j.unparsedID, j.unparsedSource
	if j.cmd != nil {
		s.CommandID, s.Source = j.cmd.ID, j.cmd.Source
	}
	j.p.OnSettled(s)
}

// retryStore retries a store write a few times: settling must survive a
// blip, and must not wait forever.
func (j *job) retryStore(f func(ctx context.Context) error) error {
	var err error
	wait := 100 * time.Millisecond
	for range 5 {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(j.p.stop), 10*time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-time.After(wait):
		case <-j.p.stop.Done():
			return err
		}
		wait *= 2
	}
	return err
}

// noteFailure keeps what Graph said last, for logs and the dead letter.
func (j *job) noteFailure(err error) {
	var ge *graphops.Error
	if errors.As(err, &ge) {
		j.lastErr = ge
		j.lastClientReqID = ge.ClientRequestID
		return
	}
	var te *graphops.TransportError
	if errors.As(err, &te) {
		j.lastClientReqID = te.ClientRequestID
	}
	j.lastTransport = err
}

// lastFailure describes the last failed call for a dead letter.
func (j *job) lastFailure() string {
	if ge := j.lastErr; ge != nil {
		msg := fmt.Sprintf("Graph answered %d", ge.Status)
		if ge.Code != "" {
			msg += " " + ge.Code
		}
		if ge.Message != "" {
			msg += ": " + ge.Message
		}
		if ge.GraphRequestID != "" {
			msg += " (request-id " + ge.GraphRequestID + ")"
		}
		return msg
	}
	if j.lastTransport != nil {
		return "no answer from Graph: " + j.lastTransport.Error()
	}
	return "no call made"
}
