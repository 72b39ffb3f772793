package jetstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	js "github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/cloudevent"
	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/dlq"
)

// message is one JetStream delivery seen as a consumer.Message.
type message struct {
	msg        js.Msg
	data       []byte // the structured event (the body itself unless binary mode)
	stream     string
	dead       DeadLetters
	delivery   int
	seq        uint64
	maxDeliver int
	ackAsync   bool
	ackWait    time.Duration
	// lockedUntil (Unix nanoseconds) is when the server redelivers unless
	// it hears from us: AckWait from the delivery or the last InProgress.
	lockedUntil atomic.Int64
}

var _ consumer.Leased = (*message)(nil)

// newMessage reads a delivery received at the given time. The server's
// AckWait clock started a little earlier (the time on the wire), which the
// runner's renewal at half the remaining time covers.
func newMessage(m js.Msg, cfg Config, received time.Time) (*message, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	attrs, contentType := cloudevent.FromNATS(m.Headers())
	msg := &message{
		msg:        m,
		data:       cloudevent.Structured(m.Data(), contentType, attrs),
		stream:     meta.Stream,
		dead:       cfg.DeadLetters,
		delivery:   int(meta.NumDelivered),
		seq:        meta.Sequence.Stream,
		maxDeliver: cfg.MaxDeliver,
		ackAsync:   cfg.AckAsync,
		ackWait:    cfg.AckWait,
	}
	msg.lockedUntil.Store(received.Add(cfg.AckWait).UnixNano())
	return msg, nil
}

// LockedUntil is when the server redelivers the message unless it is
// settled or kept alive before.
func (m *message) LockedUntil() time.Time { return time.Unix(0, m.lockedUntil.Load()) }

// Data is the body, or in binary mode (ce- headers) the structured event
// built from the headers and the body.
func (m *message) Data() []byte    { return m.data }
func (m *message) Subject() string { return m.msg.Subject() }
func (m *message) Delivery() int   { return m.delivery }
func (m *message) ID() string      { return strconv.FormatUint(m.seq, 10) }

// Last: the server stops delivering once NumDelivered reaches MaxDeliver.
func (m *message) Last() bool {
	return m.maxDeliver > 0 && m.delivery >= m.maxDeliver
}

// Header looks the name up as sent first (NATS headers are case-sensitive),
// then ignoring case, since producers write headers the HTTP way too.
func (m *message) Header(name string) string {
	h := m.msg.Headers()
	if v := h.Values(name); len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0]
		}
	}
	return ""
}

// Ack waits for the server's confirmation unless AckAsync is set: a plain
// Ack lost in a broker restart would go unnoticed and the command be
// delivered again.
func (m *message) Ack(ctx context.Context) error {
	var err error
	if m.ackAsync {
		err = m.msg.Ack()
	} else {
		err = m.msg.DoubleAck(ctx)
	}
	if err != nil {
		return fmt.Errorf("jetstream: ack message %d: %w", m.seq, err)
	}
	return nil
}

// KeepAlive resets the server's AckWait clock; the server does not answer it.
func (m *message) KeepAlive(context.Context) error {
	sent := time.Now()
	if err := m.msg.InProgress(); err != nil {
		return fmt.Errorf("jetstream: keep message %d alive: %w", m.seq, err)
	}
	m.lockedUntil.Store(sent.Add(m.ackWait).UnixNano())
	return nil
}

// HandBack asks for redelivery after delay; the server does not answer it.
func (m *message) HandBack(_ context.Context, delay time.Duration) error {
	var err error
	if delay > 0 {
		err = m.msg.NakWithDelay(delay)
	} else {
		err = m.msg.Nak()
	}
	if err != nil {
		return fmt.Errorf("jetstream: hand back message %d: %w", m.seq, err)
	}
	return nil
}

// Done: a JetStream message holds nothing beyond its own ack wait.
func (m *message) Done() {}

// InOrder: JetStream keeps no order per request id (docs/SPEC.md §3).
func (m *message) InOrder() bool { return false }

// DeadLetter stores e in the dead-letter stream with the original body and
// headers, then acknowledges the message. The store deduplicates on the
// stream sequence and delivery, so a retry after a failed ack (or a crash
// between the two) stores nothing twice.
func (m *message) DeadLetter(ctx context.Context, e dlq.Entry) error {
	if m.dead == nil {
		return fmt.Errorf("jetstream: dead-letter message %d: no dead-letter store configured", m.seq)
	}
	e.Payload = m.msg.Data()
	e.OriginalSubject = m.msg.Subject()
	e.Headers = map[string][]string(m.msg.Headers())
	// One dead letter per stream message, whichever delivery stores it: a
	// redelivery of a command recorded as dead-lettered stores it again,
	// and the dead-letter stream keeps one copy within its duplicate window.
	dedup := "graphops-dlq-" + m.stream + "-" + strconv.FormatUint(m.seq, 10)
	if _, err := m.dead.Put(ctx, e, dedup); err != nil {
		return fmt.Errorf("jetstream: dead-letter message %d: %w", m.seq, err)
	}
	return m.Ack(ctx)
}
