// Package worker turns one broker message into exactly one outcome: applied
// (one Graph call took effect), duplicate (settled before, no call) or
// dead-lettered (with a reason an operator can act on) — or, when it cannot
// finish now, a hand-back to the broker. Processing decides the outcome
// (process: parse, gate and claim, reconcile, pace, call, retry); one place
// carries it out (settle: ledger, outcome event, dead-letter store, broker,
// metrics) in the crash-safe order of docs/DESIGN.md. It owns nothing of the
// broker, the store or Graph's wire format.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/outcome"
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

// Publisher publishes outcome events (docs/SPEC.md §9).
type Publisher interface {
	Publish(ctx context.Context, e outcome.Event) error
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
	// KeepAliveEvery: how often a job renews its ledger claim, from
	// receipt to settlement (default 10s; keep it under a third of the
	// ledger lease). The broker's lock is the consumer runner's.
	KeepAliveEvery time.Duration
	// DryRun validates, predicts the ledger's decision and logs the call
	// each command would make, and records and calls nothing
	// (WORKER_DRY_RUN).
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
	Graph  Graph
	Ledger *ledger.Ledger
	// Outcomes, when set, receives an event for every settled command
	// before it is acknowledged (OUTCOME_EVENTS=on).
	Outcomes Publisher
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
	// requests queues the commands of one request id in this process, in
	// memory, in front of the ledger.
	requests *gate
	// outcomesDown holds why the last outcome event could not be
	// published, until one is.
	outcomesDown atomic.Pointer[string]
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
	return &Processor{cfg: cfg, Deps: d, drain: drain, stop: stop, requests: newGate()}, nil
}

// OutcomesReady reports why outcome events cannot be published now, nil
// when they can (or are off): for /readyz.
func (p *Processor) OutcomesReady() error {
	if why := p.outcomesDown.Load(); why != nil {
		return errOutcomes(*why)
	}
	return nil
}

type errOutcomes string

func (e errOutcomes) Error() string { return "outcome events cannot be published: " + string(e) }

// Handle processes one message to its outcome and settles it with the
// broker. It implements consumer.Handler.
func (p *Processor) Handle(m consumer.Message) {
	j := newJob(p, m)
	p.Metrics.InFlight(string(j.typ), 1)
	defer func() { p.Metrics.InFlight(string(j.typ), -1) }()
	defer j.stopRenewing()
	j.settle(j.process())
}

// job is one delivery being processed.
type job struct {
	p        *Processor
	m        consumer.Message
	received time.Time
	typ      command.Type
	cmd      *command.Command
	replay   bool
	// logAttrs describe the job in every log line (logAt).
	logAttrs []slog.Attr
	// ctx ends when the worker drains or the job's claim is lost: waits
	// end with it, calls do not.
	ctx    context.Context
	cancel context.CancelFunc

	// leaveGate lets the next command of the request id in this process
	// go; set while the job holds it.
	leaveGate func()

	mu sync.Mutex // guards claim and leaseLost against the renewal timer
	// claim holds the command's key and, with it, its request id.
	claim      *ledger.Claim
	leaseLost  error
	renewTimer *time.Timer
	renewOff   bool
	claimDone  bool           // settling: the claim is no longer renewed
	unparsed   *command.Error // what could be read of a command that did not parse
	lastErr    *graphops.Error
	lastTransp error
	lastClient string // client-request-id of the last write call
	// settleUntil: a write got no answer; until then Graph may still
	// apply it, so it is neither read nor resent, nor handed to another
	// replica, before this instant.
	settleUntil time.Time
}

func newJob(p *Processor, m consumer.Message) *job {
	j := &job{p: p, m: m, received: p.Now(), typ: command.TypeUnknown,
		logAttrs: []slog.Attr{slog.String("message", m.ID()), slog.Int("delivery", m.Delivery())}}
	j.ctx, j.cancel = context.WithCancel(p.drain)
	j.startRenewing()
	return j
}

// expired reports that the command's deadline has passed.
func (j *job) expired() bool {
	return !j.cmd.Deadline.IsZero() && !j.p.Now().Before(j.cmd.Deadline)
}

// pastDeadline reports that a try after d would come after the deadline.
func (j *job) pastDeadline(d time.Duration) bool {
	return !j.cmd.Deadline.IsZero() && j.p.Now().Add(d).After(j.cmd.Deadline)
}

func (j *job) setType(t command.Type) {
	if t == j.typ {
		return
	}
	j.p.Metrics.InFlight(string(j.typ), -1)
	j.p.Metrics.InFlight(string(t), 1)
	j.typ = t
}

// pacerOf is the operation's pacer; New makes sure there is one for every
// known operation.
func (j *job) pacerOf(op command.Type) *pacer.Pacer { return j.p.Pacers[op] }
