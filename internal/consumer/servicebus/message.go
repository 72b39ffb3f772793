package servicebus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/dlq"
)

// Application properties this package sets on the copies it sends. A
// replay (DeadLetters.Replay) drops them: the copy starts afresh.
const (
	// PropHandbacks counts the hand-backs a command went through as
	// scheduled copies; it makes each copy's MessageID new.
	PropHandbacks = "Graphops-Handbacks"
	// PropPriorDeliveries is the delivery count of the message a copy was
	// made from, so that Delivery keeps counting across copies.
	PropPriorDeliveries = "Graphops-Prior-Deliveries"
	// PropSubscription names the subscription a copy sent to a topic is
	// meant for. Service Bus copies every topic message to every
	// subscription; the other subscriptions of the topic should filter on
	// it ([Graphops-Subscription] IS NULL OR [Graphops-Subscription] = '<name>').
	PropSubscription = "Graphops-Subscription"
)

// Service Bus limits.
const (
	// maxDeadLetterText bounds DeadLetterReason and
	// DeadLetterErrorDescription (4096 characters in the SDKs that check).
	// Counted in bytes, which is never fewer than UTF-16 units.
	maxDeadLetterText = 4096
	// maxMessageID is the longest MessageID Service Bus accepts.
	maxMessageID = 128
	// abandonUpTo: a hand-back this soon is an abandon, which makes the
	// message available again at once; later ones are scheduled copies.
	abandonUpTo = time.Second
)

// ErrLockLost is wrapped by the errors of a settlement or lock renewal that
// came too late: Service Bus has released the message (its lock expired)
// and will deliver it again, or dead-letter it at MaxDeliveryCount.
var ErrLockLost = consumer.ErrLockLost

// message is one Service Bus delivery seen as a consumer.Message.
type message struct {
	s         *Source
	rm        *azservicebus.ReceivedMessage
	sess      *session // the session holding the message (Config.Sessions)
	body      []byte   // the body as received
	data      []byte   // the structured event (the body itself unless binary mode)
	delivery  int
	handbacks int
	settled   atomic.Bool
}

var _ consumer.Leased = (*message)(nil)

// peekLease stands for the lock of a peeked message, which has none: the
// runner then has nothing to renew for as long as a handler can take.
const peekLease = 24 * time.Hour

func (s *Source) newMessage(rm *azservicebus.ReceivedMessage) *message {
	body := bodyOf(rm)
	prior := propInt(rm.ApplicationProperties, PropPriorDeliveries)
	return &message{
		s:         s,
		rm:        rm,
		body:      body,
		data:      eventOf(rm, body),
		delivery:  prior + max(int(rm.DeliveryCount), 1),
		handbacks: propInt(rm.ApplicationProperties, PropHandbacks),
	}
}

// LockedUntil is the end of the message lock, which RenewMessageLock moves
// on (the SDK updates the received message).
func (m *message) LockedUntil() time.Time {
	if m.sess != nil {
		// A session message is locked by its session's lock.
		return m.sess.r.LockedUntil()
	}
	if m.s.cfg.Peek || m.rm.LockedUntil == nil {
		return time.Now().Add(peekLease)
	}
	return *m.rm.LockedUntil
}

// Data is the body, or in binary mode the structured event built from the
// cloudEvents: properties and the body.
func (m *message) Data() []byte { return m.data }

// Subject is the entity path: the queue, or "<topic>/Subscriptions/<sub>".
func (m *message) Subject() string { return m.s.cfg.entityPath() }

// Delivery counts Service Bus's DeliveryCount (1 on the first delivery)
// plus the deliveries of the messages this one is a hand-back copy of.
func (m *message) Delivery() int { return m.delivery }

// Last is true from delivery MaxDeliveryCount on. Service Bus itself
// dead-letters a message whose own DeliveryCount reaches MaxDeliveryCount;
// a hand-back copy's own count starts afresh, which Delivery does not, so
// a command's deliveries stay bounded across copies too. A peeked message
// is never the last: nothing the worker does to it changes the entity.
func (m *message) Last() bool {
	return !m.s.cfg.Peek && m.delivery >= m.s.cfg.MaxDeliveryCount
}

// ID is the sequence number Service Bus gave the message.
func (m *message) ID() string {
	if m.rm.SequenceNumber != nil {
		return strconv.FormatInt(*m.rm.SequenceNumber, 10)
	}
	return m.rm.MessageID
}

// Header returns an application property as a string, looking the name up
// as given first and then ignoring case, since producers spell property
// names the HTTP way too.
func (m *message) Header(name string) string {
	v, ok := m.rm.ApplicationProperties[name]
	if !ok {
		match := ""
		for k := range m.rm.ApplicationProperties {
			// The smallest of several matching names, to answer the
			// same every time.
			if strings.EqualFold(k, name) && (match == "" || k < match) {
				match = k
			}
		}
		if match == "" {
			return ""
		}
		v = m.rm.ApplicationProperties[match]
	}
	return propString(v)
}

// InOrder is true for a message of a session: the later commands of the
// session wait behind it.
func (m *message) InOrder() bool { return m.sess != nil }

// Done releases the message's session once its handler has returned, so
// that the next command of the session goes to whichever replica accepts
// it (an unsettled message comes back first). Keeping an idle session for
// its next message would mean a receive that may time out on the session's
// link, and a lock that nothing renews meanwhile.
func (m *message) Done() {
	if m.sess != nil {
		m.s.sessions.release(m.sess)
	}
}

// settler is what the verbs use: the session's receiver for a session
// message, the source's otherwise.
func (m *message) settler() settler {
	if m.sess != nil {
		return m.sess.r
	}
	return m.s.recv
}

// settled records a settlement that worked.
func (m *message) settledIf(err error) error {
	if err == nil {
		m.settled.Store(true)
	}
	return err
}

// Ack completes the message.
func (m *message) Ack(ctx context.Context) error {
	if m.s.cfg.Peek {
		return nil
	}
	return m.settledIf(m.wrap("complete", m.settler().CompleteMessage(ctx, m.rm, nil)))
}

// KeepAlive renews the message lock.
func (m *message) KeepAlive(ctx context.Context) error {
	if m.s.cfg.Peek {
		return nil
	}
	if m.sess != nil {
		return m.wrap("renew the session lock of", m.sess.r.RenewSessionLock(ctx, nil))
	}
	return m.wrap("renew the lock of", m.s.recv.RenewMessageLock(ctx, m.rm, nil))
}

// HandBack abandons the message when delay is at most a second. Service
// Bus cannot abandon with a delay, so a longer one schedules a copy of the
// message at now+delay on the entity (the topic, for a subscription) and
// then completes the original. The copy has the same body and properties,
// plus PropHandbacks, PropPriorDeliveries and a MessageID of its own, so
// that duplicate detection, where the entity has it, does not drop it.
//
// A crash or a lost lock between the two steps leaves both the copy and
// the original, which comes back: the worker's ledger settles the second
// one as a duplicate. The copy is not cancelled then, since a complete
// reported as failed may have happened all the same.
func (m *message) HandBack(ctx context.Context, delay time.Duration) error {
	if m.s.cfg.Peek {
		return nil
	}
	if delay <= abandonUpTo || m.sess != nil {
		// A session message is abandoned whatever the delay: a scheduled
		// copy would lose its place in the session.
		return m.settledIf(m.wrap("abandon", m.settler().AbandonMessage(ctx, m.rm, nil)))
	}
	copies := []*azservicebus.Message{m.handBackCopy()}
	seqs, err := m.s.send.ScheduleMessages(ctx, copies, m.s.now().Add(delay), nil)
	if err != nil {
		return m.wrap("schedule a copy of", err)
	}
	if err := m.s.recv.CompleteMessage(ctx, m.rm, nil); err != nil {
		return m.wrap(fmt.Sprintf("complete (copy %v scheduled; whichever comes second is a duplicate)", seqs), err)
	}
	m.settled.Store(true)
	return nil
}

// DeadLetter moves the message to the entity's dead-letter sub-queue,
// which settles it (docs/SPEC.md §4): DeadLetterReason is the reason code,
// DeadLetterErrorDescription the description, and the docs/SPEC.md §4 headers of
// e become application properties. The dead letter is the original
// message, body and properties unchanged; e.Payload is not used.
func (m *message) DeadLetter(ctx context.Context, e dlq.Entry) error {
	if m.s.cfg.Peek {
		return nil
	}
	if e.OriginalSubject == "" {
		e.OriginalSubject = m.Subject()
	}
	props := map[string]any{}
	for name, v := range e.Properties() {
		props[name] = v
	}
	reason, desc := limitText(string(e.Reason)), limitText(e.Description)
	err := m.settler().DeadLetterMessage(ctx, m.rm, &azservicebus.DeadLetterOptions{
		Reason: &reason, ErrorDescription: &desc, PropertiesToModify: props,
	})
	return m.settledIf(m.wrap("dead-letter", err))
}

// handBackCopy is the message HandBack schedules.
func (m *message) handBackCopy() *azservicebus.Message {
	props := make(map[string]any, len(m.rm.ApplicationProperties)+3)
	for k, v := range m.rm.ApplicationProperties {
		props[k] = v
	}
	n := m.handbacks + 1
	props[PropHandbacks] = int64(n)
	props[PropPriorDeliveries] = int64(m.delivery)
	if m.s.cfg.Queue == "" {
		props[PropSubscription] = m.s.cfg.Subscription
	}
	base := m.rm.MessageID
	if m.handbacks > 0 {
		base = strings.TrimSuffix(base, handBackSuffix(m.handbacks))
	}
	if base == "" {
		base = "graphops-" + m.ID()
	}
	c := copyOf(m.rm, m.body, props)
	c.MessageID = messageID(base + handBackSuffix(n))
	return c
}

func handBackSuffix(n int) string { return "/handback/" + strconv.Itoa(n) }

// wrap names the operation and the message, and marks a lost lock.
func (m *message) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeLockLost {
		return fmt.Errorf("servicebus: %s message %s: %w: %w", op, m.ID(), ErrLockLost, err)
	}
	return fmt.Errorf("servicebus: %s message %s: %w", op, m.ID(), err)
}

// copyOf is a new message with rm's body and system properties and the
// given application properties. The time to live is left to the entity's
// default; the broker's annotations (sequence number, lock, enqueued time)
// are not carried over.
func copyOf(rm *azservicebus.ReceivedMessage, body []byte, props map[string]any) *azservicebus.Message {
	id := rm.MessageID
	return &azservicebus.Message{
		ApplicationProperties: props,
		Body:                  body,
		ContentType:           rm.ContentType,
		CorrelationID:         rm.CorrelationID,
		MessageID:             &id,
		PartitionKey:          rm.PartitionKey,
		ReplyTo:               rm.ReplyTo,
		ReplyToSessionID:      rm.ReplyToSessionID,
		SessionID:             rm.SessionID,
		Subject:               rm.Subject,
		To:                    rm.To,
	}
}

// messageID keeps id if Service Bus accepts it, else shortens it to a
// prefix and a hash of the whole, which stays unique.
func messageID(id string) *string {
	if len(id) > maxMessageID {
		sum := sha256.Sum256([]byte(id))
		h := hex.EncodeToString(sum[:16])
		id = truncate(id, maxMessageID-len(h)-1) + "~" + h
	}
	return &id
}

// bodyOf returns the message body: the data section the SDK exposes, or
// for a message sent by another AMQP client, its data sections joined or
// its string or binary amqp-value.
func bodyOf(rm *azservicebus.ReceivedMessage) []byte {
	if rm.Body != nil || rm.RawAMQPMessage == nil {
		return rm.Body
	}
	b := rm.RawAMQPMessage.Body
	switch {
	case len(b.Data) > 0:
		var all []byte
		for _, d := range b.Data {
			all = append(all, d...)
		}
		return all
	case b.Value != nil:
		switch v := b.Value.(type) {
		case string:
			return []byte(v)
		case []byte:
			return v
		}
	}
	return nil
}

// propString renders an application property value as a header value.
func propString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(v)
}

// propInt reads a count this package wrote; 0 when absent or not a count.
func propInt(props map[string]any, name string) int {
	var n int64
	switch v := props[name].(type) {
	case int64:
		n = v
	case int32:
		n = int64(v)
	case int:
		n = int64(v)
	case string:
		n, _ = strconv.ParseInt(v, 10, 64)
	}
	if n < 0 || n > 1<<30 {
		return 0
	}
	return int(n)
}

// limitText makes s valid UTF-8 of at most maxDeadLetterText bytes.
func limitText(s string) string {
	return truncate(strings.ToValidUTF8(s, "\uFFFD"), maxDeadLetterText)
}

// truncate shortens s to at most n bytes, at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
