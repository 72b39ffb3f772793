// Package worker turns one broker message into exactly one outcome: applied
// (one Graph call took effect), duplicate (settled before, no call) or
// dead-lettered (with a reason an operator can act on). It owns the order of
// the steps — parse, claim in the ledger (which also locks the request id), pace,
// call, classify, retry or hand back, record, acknowledge — and nothing of
// the broker, the store or Graph's wire format.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/pacer"
	"github.com/graphops/worker/metrics"
)

// Graph is what the processor needs of the Graph client.
type Graph interface {
	Resume(ctx context.Context, assignmentRequestID string, body []byte, headers map[string]string) (graphops.Result, error)
	UpdateRoleRequest(ctx context.Context, privilegedAccessID, requestID string, body []byte, headers map[string]string) (graphops.Result, error)
	GetAssignmentRequest(ctx context.Context, assignmentRequestID string) (graphops.AssignmentRequest, graphops.Result, error)
	InvalidateToken()
}

// DeadLetters stores dead letters.
type DeadLetters interface {
	Put(ctx context.Context, e dlq.Entry, dedupID string) (uint64, error)
}

// Config of a Processor; zero values take the documented defaults.
type Config struct {
	Command command.Options
	// RetryMaxElapsed is the retry budget from the first attempt
	// (RETRY_MAX_ELAPSED, default 10m).
	RetryMaxElapsed time.Duration
	// HandbackAfter: a wait longer than this hands the message back to
	// the broker instead of holding a slot (RETRY_HANDBACK_AFTER, 30s).
	HandbackAfter time.Duration
	// Backoff between non-throttle retries (exponential with jitter).
	BackoffInitial time.Duration // default 500ms
	BackoffMax     time.Duration // default 30s
	// SettleAfterNoAnswer: after a write that got no answer (or a 504),
	// Graph may still be working on it; the reconciling read waits this
	// long, and nobody else picks the command up before then
	// (GRAPH_UNANSWERED_SETTLE, default 2m).
	SettleAfterNoAnswer time.Duration
	// KeepAliveEvery: how often a waiting command renews its broker lease
	// and its ledger leases (default 10s; keep it under a third of the ack
	// wait and of the ledger lease).
	KeepAliveEvery time.Duration
	// DryRun validates and logs the call each command would make, and
	// records and calls nothing (WORKER_DRY_RUN).
	DryRun bool
}

func (c *Config) setDefaults() {
	if c.RetryMaxElapsed <= 0 {
		c.RetryMaxElapsed = 10 * time.Minute
	}
	if c.HandbackAfter <= 0 {
		c.HandbackAfter = 30 * time.Second
	}
	if c.BackoffInitial <= 0 {
		c.BackoffInitial = 500 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.KeepAliveEvery <= 0 {
		c.KeepAliveEvery = 10 * time.Second
	}
	if c.SettleAfterNoAnswer <= 0 {
		c.SettleAfterNoAnswer = 2 * time.Minute
	}
}

// Deps are the processor's collaborators.
type Deps struct {
	Graph       Graph
	Ledger      *ledger.Ledger
	DeadLetters DeadLetters
	// Pacers by operation; a missing one means unpaced.
	Pacers  map[command.Type]*pacer.Pacer
	Metrics *metrics.Metrics
	Log     *slog.Logger
	Now     func() time.Time
	// OnSettled, when set, sees every outcome (for `worker dev` and tests).
	OnSettled func(Settled)
}

// Settled describes the outcome of one message.
type Settled struct {
	Type                command.Type
	CommandID, Source   string
	Outcome             string // metrics.OutcomeApplied, OutcomeDuplicate, OutcomeDeadLettered
	Reason, Description string // for a dead letter
	Duration            time.Duration
}

// Processor handles messages. Handle is safe for concurrent use.
type Processor struct {
	cfg Config
	Deps
	// drain is done when the worker starts draining (SIGTERM): waiting
	// commands are handed back at once. stop is done when the grace period
	// is over: calls in flight are abandoned.
	drain, stop context.Context
}

// New returns a Processor. drain and stop are described on Processor.
func New(cfg Config, d Deps, drain, stop context.Context) (*Processor, error) {
	cfg.setDefaults()
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	pacers := make(map[command.Type]*pacer.Pacer, len(command.Types()))
	for _, t := range command.Types() {
		pacers[t] = d.Pacers[t]
		if pacers[t] == nil {
			pc, err := pacer.New(pacer.Config{Operation: string(t)})
			if err != nil {
				return nil, fmt.Errorf("worker: pacer of %s: %w", t, err)
			}
			pacers[t] = pc
		}
	}
	d.Pacers = pacers
	return &Processor{cfg: cfg, Deps: d, drain: drain, stop: stop}, nil
}

// Handle processes one message to its outcome and settles it with the
// broker. It implements consumer.Handler.
func (p *Processor) Handle(m consumer.Message) {
	j := &job{p: p, m: m, received: p.Now(), typ: command.TypeUnknown,
		logAttrs: []any{"message", m.ID(), "delivery", m.Delivery()}}
	p.Metrics.InFlight(string(j.typ), 1)
	defer func() { p.Metrics.InFlight(string(j.typ), -1) }()
	j.run()
}

// job is one delivery being processed.
type job struct {
	p        *Processor
	m        consumer.Message
	received time.Time
	typ      command.Type
	cmd      *command.Command
	// logAttrs describe the job in every log line (logAt).
	logAttrs []any

	// claim holds the command's key and, with it, its request id.
	claim *ledger.Claim
	// last Graph answer, for the dead letter.
	reason, description string // of the dead letter, for OnSettled
	unparsedID          string // what could be read of a command that did not parse
	unparsedSource      string
	lastErr             *graphops.Error
	lastTransport       error
	// settleUntil: a write got no answer; until then Graph may still
	// apply it, so it is neither read nor resent, nor handed to another
	// replica, before this instant.
	settleUntil     time.Time
	lastClientReqID string
}

// deadline is the command's deadline, zero when it has none.
func (j *job) deadline() time.Time { return j.cmd.Deadline }

// expired reports that the command's deadline has passed.
func (j *job) expired() bool {
	return !j.cmd.Deadline.IsZero() && !j.p.Now().Before(j.cmd.Deadline)
}

// describe adds key-value pairs to every later log line of the job.
// It is called before any lease renewal runs beside the job.
func (j *job) describe(args ...any) {
	j.logAttrs = append(j.logAttrs, args...)
}

// logAt writes one log line with the job's attributes and then args, if
// level is enabled. It is one record, not slog.With and a line: With
// formats its attributes at once into a new handler, which a job that logs
// one line (or none) pays for twice. A renewal's timer may log beside the
// job's goroutine; both only read logAttrs.
//
// The record goes to the handler without a caller's pc: slog.Logger.Log
// walks the stack for it on every line, for a source location that no
// handler of the worker prints.
func (j *job) logAt(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	h := j.p.Log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.Add(j.logAttrs...)
	r.Add(args...)
	_ = h.Handle(ctx, r) // as slog.Logger.Log: a line that cannot be written is dropped
}

func (j *job) debug(msg string, args ...any)    { j.logAt(slog.LevelDebug, msg, args...) }
func (j *job) info(msg string, args ...any)     { j.logAt(slog.LevelInfo, msg, args...) }
func (j *job) warn(msg string, args ...any)     { j.logAt(slog.LevelWarn, msg, args...) }
func (j *job) logError(msg string, args ...any) { j.logAt(slog.LevelError, msg, args...) }

func (j *job) setType(t command.Type) {
	if t == j.typ {
		return
	}
	j.p.Metrics.InFlight(string(j.typ), -1)
	j.p.Metrics.InFlight(string(t), 1)
	j.typ = t
}

func (j *job) run() {
	p := j.p
	cmd, err := command.Parse(j.m.Data(), p.cfg.Command)
	if err != nil {
		var ce *command.Error
		if !errors.As(err, &ce) {
			ce = &command.Error{Reason: command.ReasonInvalidMessage, Detail: err.Error(), Type: command.TypeUnknown}
		}
		j.setType(ce.Type)
		j.unparsedID, j.unparsedSource = ce.ID, ce.Source
		j.describe("type", ce.Type, "command_id", ce.ID, "request_id", ce.RequestID)
		j.rejectUnparsed(ce)
		return
	}
	j.cmd = cmd
	j.setType(cmd.Type)
	j.describe("type", cmd.Type, "command_id", cmd.ID, "source", cmd.Source, "request_id", cmd.RequestID())

	if p.cfg.DryRun {
		j.dryRun()
		return
	}
	if j.expired() {
		j.deadLetter(dlq.ReasonExpired, "deadline "+cmd.Deadline.UTC().Format(time.RFC3339)+" passed before the first try")
		return
	}

	replay := j.m.Header(dlq.HeaderReplay) != ""
	var busyWait time.Duration
	for {
		d, claim, err := p.Ledger.Begin(p.stop, identityOf(cmd), replay)
		if err != nil {
			j.storeTrouble("claim", err)
			return
		}
		switch d {
		case ledger.Duplicate:
			j.info("duplicate: already settled", "state", claim.Record.State, "by_command", claim.Record.ID)
			j.ack()
			j.done(metrics.OutcomeDuplicate)
			return
		case ledger.Conflict:
			j.deadLetter(dlq.ReasonConflict, fmt.Sprintf(
				"callout instance %s already has a different decision from command %s (source %s, %s)",
				cmd.Resume.StageInstanceID, claim.Record.ID, claim.Record.Source, claim.Record.State))
			return
		case ledger.Busy:
			// Another delivery of this command (a redelivery or a duplicate
			// publish), or another command for the same request id, is being
			// worked on: look again shortly, and hand back when it is held
			// long.
			why := "request id busy with command " + claim.Record.ID
			if claim.Record.SameCommand(identityOf(cmd)) {
				why = "command claimed by another delivery"
			}
			remaining := claim.Record.LeaseUntil.Sub(p.Now())
			busyWait = min(max(busyWait*2, 50*time.Millisecond), time.Second)
			if p.Now().Sub(j.received)+busyWait > p.cfg.HandbackAfter && !j.m.Last() {
				j.handBack(remaining+jitter(time.Second), why)
				return
			}
			if !j.wait(busyWait) {
				return
			}
			continue
		}
		j.claim = claim
		break
	}
	j.execute()
}

// rejectUnparsed dead-letters a message that is not a valid command.
func (j *job) rejectUnparsed(ce *command.Error) {
	reason := dlq.ReasonInvalidMessage
	if ce.Reason == command.ReasonValidationFailed {
		reason = dlq.ReasonValidationFailed
	}
	if j.p.cfg.DryRun {
		j.warn("dry run: would dead-letter", "reason", reason, "description", ce.Error())
		j.ack()
		return
	}
	e := dlq.Entry{Reason: reason, Description: ce.Error(), Type: string(ce.Type),
		CommandID: ce.ID, CommandSource: ce.Source, RequestID: ce.RequestID}
	j.putDeadLetter(e)
}

// dryRun logs the call the command would make.
func (j *job) dryRun() {
	method, path := callOf(j.cmd)
	j.info("dry run: would call Graph", "method", method, "path", path, "body_bytes", len(j.cmd.Body))
	j.ack()
}

// execute runs the paced retry loop for a claimed command.
func (j *job) execute() {
	p, cmd := j.p, j.cmd
	op := cmd.Type
	var bo *backoff.ExponentialBackOff // made at the first failure that needs it
	reauthed := false
	// A claim taken over from a dead or departed owner may have been sent
	// already: for a resume, read before anything else (SPEC §3).
	reconcile := cmd.Type == command.TypeResume && j.claim.Previous != nil

	for {
		if j.expired() {
			j.deadLetter(dlq.ReasonExpired, "deadline "+cmd.Deadline.UTC().Format(time.RFC3339)+" passed")
			return
		}
		if first := j.claim.Record.FirstAttempt; !first.IsZero() && p.Now().Sub(first) > p.cfg.RetryMaxElapsed {
			j.deadLetter(dlq.ReasonRetriesExhausted, fmt.Sprintf("retry budget %s spent after %d attempts: %s",
				p.cfg.RetryMaxElapsed, j.claim.Record.Attempts, j.lastFailure()))
			return
		}
		if reconcile {
			if wait := j.settleUntil.Sub(p.Now()); wait > 0 {
				if !j.wait(wait) {
					return
				}
			}
			done, retryIn := j.reconcile()
			if done {
				return
			}
			if retryIn > 0 {
				if !j.wait(retryIn) {
					return
				}
				continue
			}
			reconcile = false
		}

		// Pace: no call of this operation leaves before the throttle gate
		// opens and the rate allows.
		res := j.pacerOf(op).Reserve()
		if delay := res.Delay(); delay > 0 {
			if !j.deadline().IsZero() && p.Now().Add(delay).After(j.deadline()) {
				res.Cancel()
				j.deadLetter(dlq.ReasonExpired, fmt.Sprintf("deadline %s falls inside the throttle wait of %s",
					j.deadline().UTC().Format(time.RFC3339), delay.Round(time.Millisecond)))
				return
			}
			if !j.waitFor(delay, res) {
				return
			}
		}
		// Never start a call on leases another replica could take over
		// while it runs.
		margin := 2 * graphTimeoutMargin
		if !j.claim.Held(margin) {
			if err := j.renew(); err != nil {
				res.Cancel()
				j.abandon("lease lost before the call", err)
				return
			}
		}

		crashPoint("holding-lease")
		now := p.Now()
		j.claim.Attempted(now)
		if j.claim.Record.Attempts > 1 {
			p.Metrics.Retry(string(op))
		}
		var (
			result graphops.Result
			err    error
		)
		// Leases are renewed during the call too: a slow call must not let
		// another replica take the command over while it is in flight.
		j.renewDuring(func() { result, err = j.call() })
		j.debug("graph call", "attempt", j.claim.Record.Attempts, "err", err)
		if err == nil {
			j.pacerOf(op).SucceededWithUsage(result.Throttling.LimitUsage) // Graph's early warning, when sent
			j.applied(result.Status, result.GraphRequestID, false)
			return
		}
		v := graphops.Classify(err)
		j.noteFailure(err)
		// Every line about this failure says which attempt and answer it was.
		failed := []any{"attempt", j.claim.Record.Attempts, "client_request_id", j.lastClientReqID}
		if j.lastErr != nil {
			failed = append(failed, "graph_request_id", j.lastErr.GraphRequestID, "status", j.lastErr.Status, "code", j.lastErr.Code)
		}
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
			j.warn("throttled by Graph", append(failed, "retry_after", v.RetryAfter)...)
		case graphops.ClassUnauthorized:
			j.pacerOf(op).Failed()
			if reauthed {
				j.graphRejected("Graph refused the fresh token too")
				return
			}
			reauthed = true
			p.Graph.InvalidateToken()
			j.warn("unauthorized: retrying once with a fresh token", failed...)
		case graphops.ClassRetryable:
			j.pacerOf(op).Failed()
			if bo == nil {
				bo = newBackoff(p.cfg.BackoffInitial, p.cfg.BackoffMax)
			}
			wait := bo.NextBackOff()
			j.warn("graph call failed; will retry", append(failed, "err", err, "backoff", wait)...)
			if !j.deadline().IsZero() && p.Now().Add(wait).After(j.deadline()) {
				j.deadLetter(dlq.ReasonExpired, fmt.Sprintf("deadline %s falls inside the backoff after: %s",
					j.deadline().UTC().Format(time.RFC3339), j.lastFailure()))
				return
			}
			if !j.wait(wait) {
				return
			}
		default:
			j.pacerOf(op).Failed()
			j.graphRejected("")
			return
		}
	}
}

// graphTimeoutMargin is how long before a lease runs out a call may still
// start; renewals happen well before.
const graphTimeoutMargin = 5 * time.Second

// call makes the command's write call.
func (j *job) call() (graphops.Result, error) {
	cmd := j.cmd
	ctx := j.p.stop
	var (
		r   graphops.Result
		err error
	)
	switch cmd.Type {
	case command.TypeResume:
		r, err = j.p.Graph.Resume(ctx, cmd.Resume.AssignmentRequestID, cmd.Body, cmd.Headers)
	case command.TypeRoleRequestUpdate:
		r, err = j.p.Graph.UpdateRoleRequest(ctx, cmd.RoleUpdate.PrivilegedAccessID, cmd.RoleUpdate.RequestID, cmd.Body, cmd.Headers)
	default:
		return r, fmt.Errorf("worker: no call for type %q", cmd.Type)
	}
	if err == nil {
		j.lastClientReqID = r.ClientRequestID
	}
	return r, err
}

// reconcile reads the assignment request to learn whether an earlier send
// of this resume took effect (SPEC §3). done means the job is settled;
// otherwise retryIn > 0 asks for another read after that wait, and 0 means
// sending is safe.
func (j *job) reconcile() (done bool, retryIn time.Duration) {
	cmd := j.cmd
	ar, _, err := j.p.Graph.GetAssignmentRequest(j.p.stop, cmd.Resume.AssignmentRequestID)
	if err != nil {
		v := graphops.Classify(err)
		var ge *graphops.Error
		if errors.As(err, &ge) && v.Class == graphops.ClassPermanent {
			j.noteFailure(err)
			j.graphRejected("reading the request to reconcile an unknown outcome failed")
			return true, 0
		}
		j.warn("reconcile read failed; will retry", "err", err)
		if v.RetryAfter > 0 {
			return false, v.RetryAfter
		}
		return false, j.p.cfg.BackoffInitial
	}
	inst, ok := ar.Instance(cmd.Resume.StageInstanceID)
	switch {
	case !ok || strings.EqualFold(inst.Status, graphops.StatusWaitingForCallback):
		// Not applied: Graph still waits for this callback (or does not
		// know the instance and will judge the send).
		j.info("reconciled: callout still waiting, sending", "status", inst.Status)
		return false, 0
	case strings.EqualFold(inst.Status, graphops.StatusCallbackTimedOut):
		j.deadLetter(dlq.ReasonExpired, "callout instance "+inst.ID+" timed out (callbackTimedOut) before the resume took effect")
		return true, 0
	default:
		j.info("reconciled: callout no longer waiting, recorded as applied", "status", inst.Status)
		j.applied(0, "", true)
		return true, 0
	}
}

// pacerOf is the operation's pacer; New makes sure there is one for every
// known operation.
func (j *job) pacerOf(op command.Type) *pacer.Pacer { return j.p.Pacers[op] }

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
