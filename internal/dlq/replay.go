package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors a dead letter's replay fails with, besides ErrNotFound.
var (
	// ErrNotReplayable: the dead letter has no original subject, or one
	// outside the command subjects.
	ErrNotReplayable = errors.New("cannot be replayed")
	// ErrPublishFailed: the command was not republished; the dead letter
	// is kept.
	ErrPublishFailed = errors.New("publish failed")
	// ErrDeleteFailed: the command was republished but the dead letter is
	// still there. Replaying it again removes it without a second copy as
	// long as the command stream's duplicate window has not passed.
	ErrDeleteFailed = errors.New("replayed, but the dead letter could not be deleted")
)

// Publisher publishes one message and returns once the broker has stored it
// (the publish ack), or with an error.
type Publisher func(ctx context.Context, subject string, data []byte, h nats.Header) error

// JetStreamPublisher publishes through js, waiting for the ack; opts are
// added to every publish (e.g. jetstream.WithExpectStream("GRAPHOPS")).
func JetStreamPublisher(js jetstream.JetStream, opts ...jetstream.PublishOpt) Publisher {
	return func(ctx context.Context, subject string, data []byte, h nats.Header) error {
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: h}, opts...)
		return err
	}
}

// ReplayError lists the dead letters a replay did not replay, and why.
type ReplayError struct {
	Failed map[uint64]error
}

// Error lists the failures in sequence order: "dead letter 12: publish
// failed …; dead letter 14: not found".
func (e *ReplayError) Error() string {
	parts := make([]string, 0, len(e.Failed))
	for _, seq := range e.seqs() {
		parts = append(parts, "dead letter "+strconv.FormatUint(seq, 10)+": "+e.Failed[seq].Error())
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the failures in sequence order, for errors.Is and errors.As.
func (e *ReplayError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failed))
	for _, seq := range e.seqs() {
		errs = append(errs, e.Failed[seq])
	}
	return errs
}

func (e *ReplayError) seqs() []uint64 {
	seqs := make([]uint64, 0, len(e.Failed))
	for seq := range e.Failed {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs
}

// ReplayMsgID is the Nats-Msg-Id of the replay of dead letter seq of stream:
// a replay retried after its publish succeeded (and its delete failed) is
// dropped by the command stream as a duplicate.
func ReplayMsgID(stream string, seq uint64) string {
	return "graphops-replay-" + stream + "-" + strconv.FormatUint(seq, 10)
}

// Replay republishes each dead letter's original bytes and headers to its
// original subject, with Graphops-Replay and a Nats-Msg-Id derived from the
// sequence, and deletes the dead letter once the publish is acked (see the
// package's Replay).
func (s *Store) Replay(ctx context.Context, seqs []uint64, publish Publisher) ([]uint64, error) {
	return Replay(ctx, s.Backend(publish), seqs, nil)
}

// ReplayAll replays every dead letter present when it starts; those stored
// while it runs (a replayed command failing again, say) are left for later.
func (s *Store) ReplayAll(ctx context.Context, publish Publisher) ([]uint64, error) {
	return ReplayAll(ctx, s.Backend(publish), nil)
}

// Backend is the store as the operator's commands use it; replays are
// published with publish.
func (s *Store) Backend(publish Publisher) Backend {
	return &jsBackend{s: s, publish: publish}
}

// jsBackend is the dead-letter stream as a Backend.
type jsBackend struct {
	s       *Store
	publish Publisher
}

func (b *jsBackend) Name() string { return b.s.cfg.Stream }

func (b *jsBackend) List(ctx context.Context, fn func(Entry) error) error { return b.s.List(ctx, fn) }

func (b *jsBackend) Get(ctx context.Context, id uint64) (Entry, error) { return b.s.Get(ctx, id) }

// Take reads each dead letter, calls fn and deletes it; a dead letter gone
// already by then was removed by a concurrent replay of the same one, whose
// publish carried the same Nats-Msg-Id.
func (b *jsBackend) Take(ctx context.Context, ids []uint64, fn func(Entry) error) map[uint64]error {
	failed := map[uint64]error{}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			failed[id] = err
			continue
		}
		m, err := b.s.getRaw(ctx, id)
		if err != nil {
			failed[id] = err
			continue
		}
		if err := fn(b.s.entryOf(m)); err != nil {
			failed[id] = err
			continue
		}
		if err := b.s.delete(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			failed[id] = fmt.Errorf("%w (replay it again to remove it): %w", ErrDeleteFailed, err)
		}
	}
	return failed
}

// Republish publishes the original bytes and headers to the original
// subject, which must be one of the command subjects, so that a forged or
// corrupted header cannot make a replay publish anywhere else.
func (b *jsBackend) Republish(ctx context.Context, e Entry) (string, error) {
	subject := e.OriginalSubject
	if err := b.s.replayable(subject); err != nil {
		return "", err
	}
	// The original's own headers go with it, so that a binary-mode
	// command replays as it came.
	h := nats.Header{}
	for name, values := range e.Headers {
		h[name] = values
	}
	h.Set(HeaderReplay, strconv.FormatUint(e.Seq, 10))
	h.Set(jetstream.MsgIDHeader, ReplayMsgID(b.s.cfg.Stream, e.Seq))
	if err := b.publish(ctx, subject, e.Payload, h); err != nil {
		return "", fmt.Errorf("to %s: %w", subject, err)
	}
	return subject, nil
}

func (s *Store) replayable(subject string) error {
	switch {
	case subject == "":
		return fmt.Errorf("%w: no %s header", ErrNotReplayable, HeaderOriginalSubject)
	case !ValidSubject(subject, false):
		return fmt.Errorf("%w: original subject %q is not a subject", ErrNotReplayable, subject)
	case subsetMatch(subject, s.filter):
		return fmt.Errorf("%w: original subject %s is a dead-letter subject", ErrNotReplayable, subject)
	}
	for _, f := range s.cfg.CommandSubjects {
		if subsetMatch(subject, f) {
			return nil
		}
	}
	return fmt.Errorf("%w: original subject %s is outside the command subjects %s",
		ErrNotReplayable, subject, strings.Join(s.cfg.CommandSubjects, ", "))
}
