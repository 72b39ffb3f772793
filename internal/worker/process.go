package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/retry"
)

// process decides what becomes of the message, in the order of
// docs/DESIGN.md: parse, the request's turn in this process, the
// claim in the ledger, then the call loop. It settles nothing: settle does.
func (j *job) process() Outcome {
	p := j.p
	cmd, err := command.Parse(j.m.Data(), p.cfg.Command)
	if err != nil {
		var ce *command.Error
		if !errors.As(err, &ce) {
			ce = &command.Error{Reason: command.ReasonInvalidMessage, Detail: err.Error(), Type: command.TypeUnknown}
		}
		j.setType(ce.Type)
		j.unparsed = ce
		j.describe("type", string(ce.Type), "command_id", ce.ID, "source", ce.Source, "request_id", ce.RequestID)
		j.info("received")
		reason := dlq.ReasonInvalidMessage
		if ce.Reason == command.ReasonValidationFailed {
			reason = dlq.ReasonValidationFailed
		}
		if p.cfg.DryRun {
			j.warn("dry run: would dead-letter", "reason", reason, "description", ce.Error())
			return Outcome{kind: kindDryRun}
		}
		return deadLetter(reason, ce.Error())
	}
	j.cmd = cmd
	j.setType(cmd.Type)
	j.describe("type", string(cmd.Type), "command_id", cmd.ID, "source", cmd.Source, "request_id", cmd.RequestID())
	j.replay = j.m.Header(dlq.HeaderReplay) != ""
	if j.replay {
		j.info("received", "replay_of_dead_letter", j.m.Header(dlq.HeaderReplay))
	} else {
		j.info("received")
	}

	if p.cfg.DryRun {
		return j.dryRun()
	}
	// A command past its deadline is claimed too: the ledger may know it
	// (a duplicate, or a resume whose earlier write must be read first), and
	// its dead letter is recorded there (execute).
	if o := j.enterGate(); o != nil {
		return *o
	}
	if o := j.claimCommand(); o != nil {
		return *o
	}
	return j.execute()
}

// enterGate waits for the request id's turn in this process. A command
// that waits longer than the hand-back threshold goes back to the broker
// (unless it may not: a last delivery, or a session's message, which keeps
// its place).
func (j *job) enterGate() *Outcome {
	ctx, cancel := j.ctx, func() {}
	if j.mayHandBack() {
		ctx, cancel = context.WithTimeout(j.ctx, j.p.cfg.HandbackAfter-j.p.Now().Sub(j.received)) // already over when negative
	}
	defer cancel()
	key := requestOf(j.cmd)
	if j.p.requests.Held(key) {
		j.info("waiting", "wait", "busy", "why", "request id busy in this process: queued behind the command before it")
	}
	leave, err := j.p.requests.Enter(ctx, key)
	if err == nil {
		j.leaveGate = leave
		return nil
	}
	if j.ctx.Err() != nil {
		return j.interrupted()
	}
	o := handBack(jitter(time.Second), "request id busy in this process longer than the hand-back threshold")
	return &o
}

// claimCommand claims the command in the ledger, which also locks its
// request id across the fleet. Another replica's live claim is waited for
// briefly, then handed back until its lease ends.
func (j *job) claimCommand() *Outcome {
	p, cmd := j.p, j.cmd
	id := identityOf(cmd)
	busy := retry.Policy{Initial: 50 * time.Millisecond, Max: time.Second}.Backoff()
	for {
		d, claim, err := p.Ledger.Begin(p.stop, id, j.replay)
		if err != nil {
			o := storeTrouble("claim", err)
			return &o
		}
		switch d {
		case ledger.Duplicate:
			o := duplicate(claim.Record)
			return &o
		case ledger.Conflict:
			o := deadLetter(dlq.ReasonConflict, fmt.Sprintf(
				"callout instance %s already has a different decision from command %s (source %s, %s)",
				cmd.Resume.StageInstanceID, claim.Record.ID, claim.Record.Source, claim.Record.State))
			return &o
		case ledger.Busy:
			why := "request id busy with command " + claim.Record.ID + " on another replica"
			if claim.Record.SameCommand(id) {
				why = "command claimed by another delivery"
			}
			wait := busy.NextBackOff()
			if p.Now().Sub(j.received)+wait > p.cfg.HandbackAfter && j.mayHandBack() {
				o := handBack(claim.Record.LeaseUntil.Sub(p.Now())+jitter(time.Second), why)
				return &o
			}
			if o := j.wait(wait, "busy", why); o != nil {
				return o
			}
			continue
		}
		args := []any{"attempts_before", claim.Record.Attempts}
		if claim.Previous != nil {
			args = append(args, "taken_over_from", claim.Previous.Owner)
		}
		j.mu.Lock() // from here the renewal timer writes the claim too
		j.claim = claim
		j.mu.Unlock()
		j.info("claimed", args...)
		return nil
	}
}

// dryRun logs what the ledger would decide and the call the command would
// make, and writes nothing.
func (j *job) dryRun() Outcome {
	method, path := callOf(j.cmd)
	args := []any{"method", method, "path", path, "body_bytes", len(j.cmd.Body)}
	id := identityOf(j.cmd)
	d, rec, found, err := j.p.Ledger.Predict(j.p.stop, id, j.replay)
	switch {
	case err != nil:
		args = append(args, "ledger", "unknown", "ledger_err", err)
	case !found:
		args = append(args, "ledger", "first try")
	case d == ledger.Claimed:
		args = append(args, "ledger", "retry", "earlier_state", rec.State, "attempts_before", rec.Attempts)
	default:
		args = append(args, "ledger", d.String(), "earlier_command", rec.ID, "earlier_source", rec.Source,
			"earlier_state", rec.State)
	}
	if j.expired() {
		args = append(args, "would_dead_letter", dlq.ReasonExpired)
	}
	j.info("dry run: would call Graph", args...)
	return Outcome{kind: kindDryRun}
}
