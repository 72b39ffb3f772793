package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"

	js "github.com/nats-io/nats.go/jetstream"
)

// ensure creates the stream and the durable consumer where they are missing,
// brings the settings this package owns up to date where they differ, and
// returns the consumer.
func (s *Source) ensure(ctx context.Context) (js.Consumer, error) {
	if err := s.ensureStream(ctx); err != nil {
		return nil, err
	}
	c, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, s.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s on stream %s: %w", s.cfg.Durable, s.cfg.Stream, err)
	}
	return c, nil
}

func (s *Source) consumerConfig() js.ConsumerConfig {
	return js.ConsumerConfig{
		Durable:       s.cfg.Durable,
		Description:   "graphops worker: commands to apply to Microsoft Graph",
		DeliverPolicy: js.DeliverAllPolicy,
		AckPolicy:     js.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    s.cfg.MaxDeliver,
		MaxAckPending: s.cfg.MaxAckPending,
	}
}

// deadLetterHeadroom is what a dead letter may add to a command: the
// headers of docs/SPEC.md §4 (fourteen, each value at most 1 KiB) and the
// store's Nats-Msg-Id.
const deadLetterHeadroom = 16 << 10

// ensureStream uses limits retention, not work-queue: a dry run reads the same
// stream through a durable of its own, and acknowledgements are per consumer.
// Messages go when they are older than StreamMaxAge.
func (s *Source) ensureStream(ctx context.Context) error {
	maxMsgSize := s.cfg.MaxMsgSize
	if mp := s.js.Conn().MaxPayload(); maxMsgSize == -1 && mp > 2*deadLetterHeadroom {
		// The server's max_payload bounds the dead-letter stream too,
		// and a dead letter is the message plus its headers: a command
		// that fills max_payload could never be dead-lettered
		// (docs/SPEC.md §4), so its producer is refused instead.
		maxMsgSize = int32(mp - deadLetterHeadroom)
	}
	want := js.StreamConfig{
		Name:        s.cfg.Stream,
		Description: "graphops worker: commands to apply to Microsoft Graph",
		Subjects:    s.cfg.Subjects,
		Retention:   js.LimitsPolicy,
		Storage:     js.FileStorage,
		Discard:     js.DiscardOld,
		MaxAge:      s.cfg.StreamMaxAge,
		MaxMsgSize:  maxMsgSize,
		Replicas:    s.cfg.Replicas,
	}
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, js.ErrStreamNotFound) {
		_, err = s.js.CreateStream(ctx, want)
		if err == nil {
			s.log.Info("stream created", "subjects", want.Subjects)
			return nil
		}
		if !errors.Is(err, js.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("jetstream: create stream %s: %w", s.cfg.Stream, err)
		}
		// Another replica created it in between, with other settings:
		// compare and update like any existing stream.
		st, err = s.js.Stream(ctx, s.cfg.Stream)
	}
	if err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", s.cfg.Stream, err)
	}

	have := st.CachedInfo().Config
	if have.Retention != js.LimitsPolicy {
		// Not changeable on a live stream; the worker works, only a dry-run
		// consumer beside it would not.
		s.log.Warn("stream does not use limits retention; a dry-run consumer on it will not see every command",
			"retention", have.Retention.String())
	}
	upd := have
	for _, subj := range want.Subjects {
		if !slices.Contains(upd.Subjects, subj) {
			// Keep subjects an operator added; add ours.
			upd.Subjects = append(slices.Clip(upd.Subjects), subj)
		}
	}
	upd.MaxAge = want.MaxAge
	upd.MaxMsgSize = want.MaxMsgSize
	upd.Replicas = want.Replicas
	if slices.Equal(upd.Subjects, have.Subjects) && upd.MaxAge == have.MaxAge &&
		upd.MaxMsgSize == have.MaxMsgSize && upd.Replicas == have.Replicas {
		return nil
	}
	if _, err := s.js.UpdateStream(ctx, upd); err != nil {
		return fmt.Errorf("jetstream: update stream %s: %w", s.cfg.Stream, err)
	}
	s.log.Info("stream updated", "subjects", upd.Subjects, "max_age", upd.MaxAge,
		"max_msg_size", upd.MaxMsgSize, "replicas", upd.Replicas)
	return nil
}
