package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/graphops/worker/internal/graphops"
)

// A job's log is its audit trail: one line per decision, with stable keys —
// received, claimed or busy, every attempt, every wait and why, reconcile
// verdicts, hand-backs, the outcome event and the outcome — each carrying
// the message, the delivery, the command and its request id. Never a token
// or a body.

// describe adds key-value pairs to every later log line of the job, made
// into attributes once rather than on every line.
func (j *job) describe(args ...any) {
	j.mu.Lock() // a renewal's line may be written beside the job's
	defer j.mu.Unlock()
	j.logAttrs = append(j.logAttrs, slog.Group("", args...).Value.Group()...)
}

// logAt writes one log line with the job's attributes and then args, if
// level is enabled. It is one record, not slog.With and a line: With
// formats its attributes at once into a new handler, which a job pays for
// on every line.
func (j *job) logAt(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	h := j.p.Log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.AddAttrs(j.logAttrs...)
	r.Add(args...)
	_ = h.Handle(ctx, r) // as slog.Logger.Log: a line that cannot be written is dropped
}

func (j *job) info(msg string, args ...any)     { j.logAt(slog.LevelInfo, msg, args...) }
func (j *job) warn(msg string, args ...any)     { j.logAt(slog.LevelWarn, msg, args...) }
func (j *job) logError(msg string, args ...any) { j.logAt(slog.LevelError, msg, args...) }

// logAttempt writes the line of one write call: what was sent, what came
// back, how long it took.
func (j *job) logAttempt(attempt int, r graphops.Result, err error, took time.Duration) {
	args := []any{"attempt", attempt, "duration", took.Round(time.Microsecond)}
	if err == nil {
		j.info("graph call", append(args, "client_request_id", r.ClientRequestID,
			"graph_request_id", r.GraphRequestID, "status", r.Status)...)
		return
	}
	v := graphops.Classify(err)
	args = append(args, "class", v.Class.String())
	var ge *graphops.Error
	var te *graphops.TransportError
	if errors.As(err, &ge) {
		args = append(args, "client_request_id", ge.ClientRequestID, "graph_request_id", ge.GraphRequestID,
			"status", ge.Status, "code", ge.Code)
		if v.RetryAfter > 0 {
			args = append(args, "retry_after", v.RetryAfter)
		}
	} else {
		if errors.As(err, &te) {
			args = append(args, "client_request_id", te.ClientRequestID, "status", 0)
		}
		args = append(args, "err", err)
	}
	j.warn("graph call", args...)
}
