package worker

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/retry"
)

// graphTimeoutMargin is how long before a lease runs out a call may still
// start; renewals happen well before.
const graphTimeoutMargin = 5 * time.Second

// execute is the paced retry loop of a claimed command: the one retry loop
// of docs/SPEC.md §3.
func (j *job) execute() Outcome {
	p, cmd := j.p, j.cmd
	op := cmd.Type
	var bo backoff.BackOff // made at the first failure that needs it
	reauthed := false
	// A claim taken over from a dead or departed owner may have been sent
	// already: for a resume, read before anything else, even past the
	// deadline (docs/SPEC.md §3).
	reconcile := cmd.Type == command.TypeResume && j.claim.Previous != nil
	if reconcile {
		j.settleUntil = settleAfterTakeover(*j.claim.Previous, p.cfg.SettleAfterNoAnswer)
	}
	var readBackoff backoff.BackOff // of the reconciling read, made at its first failure

	for {
		if rec := j.record(); !rec.FirstAttempt.IsZero() && p.Now().Sub(rec.FirstAttempt) > p.cfg.RetryMaxElapsed {
			return deadLetter(dlq.ReasonRetriesExhausted, fmt.Sprintf("retry budget %s spent after %d attempts: %s",
				p.cfg.RetryMaxElapsed, rec.Attempts, j.lastFailure()))
		}
		if reconcile {
			if wait := j.settleUntil.Sub(p.Now()); wait > 0 {
				if o := j.wait(wait, "settle", "a write got no answer; Graph may still apply it"); o != nil {
					return *o
				}
			}
			o, retryAfter, failed := j.reconcile()
			if o != nil {
				return *o
			}
			if failed {
				if readBackoff == nil {
					readBackoff = retry.Policy{Initial: p.cfg.BackoffInitial, Max: p.cfg.BackoffMax}.Backoff()
				}
				wait := max(retryAfter, readBackoff.NextBackOff())
				if o := j.wait(wait, "backoff", "the reconciling read failed"); o != nil {
					return *o
				}
				continue
			}
			reconcile, readBackoff = false, nil
		}
		// Checked after the read: a resume that may have taken effect is
		// recorded as applied, not dead-lettered as expired.
		if j.expired() {
			return deadLetter(dlq.ReasonExpired, "deadline "+cmd.Deadline.UTC().Format(time.RFC3339)+" passed")
		}

		// Pace: no call of this operation leaves before the throttle gate
		// opens and the rate allows.
		res := j.pacerOf(op).Reserve()
		if delay := res.Delay(); delay > 0 {
			if j.pastDeadline(delay) {
				res.Cancel()
				return deadLetter(dlq.ReasonExpired, fmt.Sprintf("deadline %s falls inside the throttle wait of %s",
					cmd.Deadline.UTC().Format(time.RFC3339), delay.Round(time.Millisecond)))
			}
			if o := j.waitFor(delay, res, j.pacerOf(op).ThrottledUntil()); o != nil {
				return *o
			}
		}
		// Never start a call on a claim another replica could take over
		// while it runs.
		if o := j.holdClaim(2 * graphTimeoutMargin); o != nil {
			res.Cancel()
			return *o
		}

		crashPoint("holding-lease")
		j.mu.Lock()
		j.claim.Attempted(p.Now())
		attempt := j.claim.Record.Attempts
		j.mu.Unlock()
		if attempt > 1 {
			p.Metrics.Retry(string(op))
		}
		start := p.Now()
		result, err := j.call()
		j.logAttempt(attempt, result, err, p.Now().Sub(start))
		j.mu.Lock()
		j.claim.Answered(answerOf(result, err))
		j.mu.Unlock()
		if err == nil {
			j.lastClient = result.ClientRequestID
			j.pacerOf(op).SucceededWithUsage(result.Throttling.LimitUsage) // Graph's early warning, when sent
			return applied(result.Status, result.GraphRequestID, false)
		}
		v := graphops.Classify(err)
		j.noteFailure(err)
		if v.MaybeApplied && cmd.Type == command.TypeResume {
			reconcile = true
			if unanswered(err) {
				j.settleUntil = p.Now().Add(p.cfg.SettleAfterNoAnswer)
			}
		}
		switch v.Class {
		case graphops.ClassThrottled:
			p.Metrics.Throttled(string(op))
			j.pacerOf(op).Throttled(v.RetryAfter)
			// The pacer's gate holds the next try until Retry-After; the
			// wait is logged when the reservation waits.
		case graphops.ClassUnauthorized:
			j.pacerOf(op).Failed()
			if reauthed {
				return j.graphRejected("Graph refused the fresh token too")
			}
			reauthed = true
			p.Graph.InvalidateToken()
			j.info("decided", "decision", "retry with a fresh token", "attempt", attempt)
		case graphops.ClassRetryable:
			j.pacerOf(op).Failed()
			if bo == nil {
				bo = retry.Policy{Initial: p.cfg.BackoffInitial, Max: p.cfg.BackoffMax}.Backoff()
			}
			wait := bo.NextBackOff()
			if j.pastDeadline(wait) {
				return deadLetter(dlq.ReasonExpired, fmt.Sprintf("deadline %s falls inside the backoff after: %s",
					cmd.Deadline.UTC().Format(time.RFC3339), j.lastFailure()))
			}
			if o := j.wait(wait, "backoff", j.lastFailure()); o != nil {
				return *o
			}
		default:
			j.pacerOf(op).Failed()
			if cmd.Type == command.TypeRoleRequestUpdate && graphops.SaysRetired(err) {
				return j.graphRejected(graphops.RoleRequestRetired)
			}
			return j.graphRejected("")
		}
	}
}

// settleAfterTakeover is when a resume taken over from prev may first be
// read. An owner whose lease ran out (it crashed, or lost the store) may
// have sent a write the ledger does not know of yet (an attempt is recorded
// at the claim's next write). It sends only while it holds the claim, and
// it renews the claim before a call when little is left, so its last write
// began before the lease it last wrote ended: Graph is given settle after
// that (docs/SPEC.md §3). A claim given up (Owner empty: a hand-back, which
// keeps others off until Graph is done, or a settled record) needs no wait.
func settleAfterTakeover(prev ledger.Record, settle time.Duration) time.Time {
	if prev.State != ledger.StateClaimed || prev.Owner == "" {
		return time.Time{}
	}
	return prev.LeaseUntil.Add(settle)
}

// record is the claim's record as this process knows it; the renewal
// timer rewrites it, so it is read under the job's lock.
func (j *job) record() ledger.Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.claim.Record
}

// answerOf is what the ledger's history keeps of a write call's answer.
func answerOf(r graphops.Result, err error) ledger.Answer {
	if err == nil {
		return ledger.Answer{ClientRequestID: r.ClientRequestID, GraphStatus: r.Status, GraphRequestID: r.GraphRequestID}
	}
	var ge *graphops.Error
	if errors.As(err, &ge) {
		return ledger.Answer{ClientRequestID: ge.ClientRequestID, GraphStatus: ge.Status, GraphCode: ge.Code, GraphRequestID: ge.GraphRequestID}
	}
	var te *graphops.TransportError
	if errors.As(err, &te) {
		return ledger.Answer{ClientRequestID: te.ClientRequestID}
	}
	return ledger.Answer{}
}

// call makes the command's write call.
func (j *job) call() (graphops.Result, error) {
	cmd := j.cmd
	ctx := j.p.stop
	switch cmd.Type {
	case command.TypeResume:
		return j.p.Graph.Resume(ctx, cmd.Resume.AssignmentRequestID, cmd.Body, cmd.Headers)
	case command.TypeRoleRequestUpdate:
		return j.p.Graph.UpdateRoleRequest(ctx, cmd.RoleUpdate.PrivilegedAccessID, cmd.RoleUpdate.RequestID, cmd.Body, cmd.Headers)
	}
	return graphops.Result{}, fmt.Errorf("worker: no call for type %q", cmd.Type)
}

// graphRejected is the dead letter of a command Graph refused for good.
func (j *job) graphRejected(context string) Outcome {
	desc := j.lastFailure()
	if context != "" {
		desc = context + ": " + desc
	}
	return deadLetter(dlq.ReasonGraphRejected, desc)
}

// noteFailure keeps what Graph said last, for logs, the dead letter and
// the outcome event.
func (j *job) noteFailure(err error) {
	var ge *graphops.Error
	if errors.As(err, &ge) {
		j.lastErr = ge
		j.lastClient = ge.ClientRequestID
		return
	}
	var te *graphops.TransportError
	if errors.As(err, &te) {
		j.lastClient = te.ClientRequestID
	}
	j.lastTransp = err
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
	if j.lastTransp != nil {
		return "no answer from Graph: " + j.lastTransp.Error()
	}
	if j.claim != nil {
		// An earlier delivery called, then handed the command back.
		if a, ok := j.record().LastCall(); ok {
			if a.GraphStatus == 0 {
				return "no answer from Graph to the last call (client-request-id " + a.ClientRequestID + ")"
			}
			msg := fmt.Sprintf("Graph answered %d", a.GraphStatus)
			if a.GraphCode != "" {
				msg += " " + a.GraphCode
			}
			if a.GraphRequestID != "" {
				msg += " (request-id " + a.GraphRequestID + ")"
			}
			return msg
		}
	}
	return "no call made"
}

// unanswered reports a write whose fate Graph has not told: no response at
// all after the request was sent, or a gateway timeout (Graph's front door
// gave up; the service behind it may not have).
func unanswered(err error) bool {
	var te *graphops.TransportError
	if errors.As(err, &te) {
		return te.Sent
	}
	var ge *graphops.Error
	return errors.As(err, &ge) && ge.Status == http.StatusGatewayTimeout
}
