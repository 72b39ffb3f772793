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
// sequence, and deletes the dead letter once the publish is acked. A dead
// letter that fails is kept (or, when only its delete failed, is safe to
// replay again) and the others are still replayed: it returns the sequences
// replayed and, when any failed, a *ReplayError. A sequence given twice is
// replayed once.
func (s *Store) Replay(ctx context.Context, seqs []uint64, publish Publisher) ([]uint64, error) {
	return s.replay(ctx, seqs, publish, nil)
}

// ReplayAll replays every dead letter present when it starts; those stored
// while it runs (a replayed command failing again, say) are left for later.
func (s *Store) ReplayAll(ctx context.Context, publish Publisher) ([]uint64, error) {
	return s.replayAll(ctx, publish, nil)
}

func (s *Store) replayAll(ctx context.Context, publish Publisher, done func(seq uint64, subject string)) ([]uint64, error) {
	var seqs []uint64
	err := s.each(ctx, func(m *jetstream.RawStreamMsg) error {
		seqs = append(seqs, m.Sequence)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.replay(ctx, seqs, publish, done)
}

// replay is Replay calling done after each dead letter replayed, so that the
// CLI reports progress as it goes.
func (s *Store) replay(ctx context.Context, seqs []uint64, publish Publisher, done func(seq uint64, subject string)) ([]uint64, error) {
	var replayed []uint64
	failed := map[uint64]error{}
	seen := map[uint64]bool{}
	for _, seq := range seqs {
		if seen[seq] {
			continue
		}
		seen[seq] = true
		subject, err := s.replayOne(ctx, seq, publish)
		if err != nil {
			failed[seq] = err
			continue
		}
		replayed = append(replayed, seq)
		if done != nil {
			done(seq, subject)
		}
	}
	if len(failed) > 0 {
		return replayed, &ReplayError{Failed: failed}
	}
	return replayed, nil
}

func (s *Store) replayOne(ctx context.Context, seq uint64, publish Publisher) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	m, err := s.getRaw(ctx, seq)
	if err != nil {
		return "", err
	}
	subject := m.Header.Get(HeaderOriginalSubject)
	if err := s.replayable(subject); err != nil {
		return "", err
	}
	// The original's own headers go with it, so that a binary-mode
	// command replays as it came.
	e, _ := EntryFromMsg(m.Data, m.Header, m.Sequence, m.Time)
	h := nats.Header{}
	for name, values := range e.Headers {
		h[name] = values
	}
	h.Set(HeaderReplay, strconv.FormatUint(seq, 10))
	h.Set(jetstream.MsgIDHeader, ReplayMsgID(s.cfg.Stream, seq))
	if err := publish(ctx, subject, m.Data, h); err != nil {
		return "", fmt.Errorf("%w (to %s): %w", ErrPublishFailed, subject, err)
	}
	if err := s.delete(ctx, seq); err != nil && !errors.Is(err, ErrNotFound) {
		// Gone already means another replay of the same dead letter won
		// the race; its publish carried the same Nats-Msg-Id.
		return "", fmt.Errorf("%w (published to %s; replay it again to remove it): %w", ErrDeleteFailed, subject, err)
	}
	return subject, nil
}

func (s *Store) replayable(subject string) error {
	switch {
	case subject == "":
		return fmt.Errorf("%w: no %s header", ErrNotReplayable, HeaderOriginalSubject)
	case !validSubject(subject, false):
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
