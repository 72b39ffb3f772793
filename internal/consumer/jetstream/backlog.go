package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	js "github.com/nats-io/nats.go/jetstream"
)

// Backlog is what the command source holds and the worker has not settled:
// the figures of graphops_backlog_messages and
// graphops_oldest_message_age_seconds (docs/SPEC.md §7).
type Backlog struct {
	// Messages is the consumer's pending (not yet delivered) plus
	// ack-pending (delivered, not yet acknowledged: waiting in a worker).
	Messages uint64
	// Oldest is the age of the first message after the consumer's ack
	// floor, 0 when Messages is 0.
	Oldest time.Duration
}

// ReadBacklog reads the backlog of the durable consumer durable on stream:
// its info, and, when something is pending, the first message after its
// ack floor. Every replica reads the same consumer, so every replica reports
// the same figures; dashboards and the autoscaler take their max, not their
// sum. now is the clock the age is measured with.
func ReadBacklog(ctx context.Context, jsc js.JetStream, stream, durable string, now time.Time) (Backlog, error) {
	s, err := jsc.Stream(ctx, stream)
	if err != nil {
		return Backlog{}, fmt.Errorf("jetstream: backlog of %s: %w", stream, err)
	}
	c, err := s.Consumer(ctx, durable)
	if err != nil {
		return Backlog{}, fmt.Errorf("jetstream: backlog of consumer %s: %w", durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return Backlog{}, fmt.Errorf("jetstream: backlog of consumer %s: %w", durable, err)
	}
	b := Backlog{Messages: info.NumPending + uint64(info.NumAckPending)}
	if b.Messages == 0 {
		return b, nil
	}
	// Everything at or below the ack floor is settled, so the message right
	// after it is the oldest unsettled one. It may be gone (max age, a
	// purge); asking for the next message on any subject from that sequence
	// finds the first one still there.
	m, err := s.GetMsg(ctx, info.AckFloor.Stream+1, js.WithGetMsgSubject(">"))
	if errors.Is(err, js.ErrMsgNotFound) {
		return b, nil // acknowledged or removed between the two reads
	}
	if err != nil {
		return Backlog{}, fmt.Errorf("jetstream: oldest message of %s after %d: %w", stream, info.AckFloor.Stream, err)
	}
	b.Oldest = max(now.Sub(m.Time), 0)
	return b, nil
}
