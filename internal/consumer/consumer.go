// Package consumer defines what the worker needs from a broker (Message,
// the broker contract of issue 11) and owns the one engine every broker
// shares: the Runner (the receive loop within free slots, a goroutine per
// handler, backoff on broker errors, the hand-back at shutdown, and the
// renewal of every held message's lock from its own expiry). Each broker
// adapter lives in its own sub-package (jetstream, servicebus), implements
// only Receiver and the verbs of its messages, and must pass the
// conformance suite in consumertest. The processing of a message does not
// live here.
package consumer

import (
	"context"
	"time"

	"github.com/graphops/worker/internal/dlq"
)

// Message is one delivery of a command (the broker contract of issue 11).
type Message interface {
	// Data is the command as the worker parses it: for a binary-mode
	// CloudEvent the adapter presents the structured JSON event (one
	// reading of both bindings, package cloudevent); otherwise the body,
	// byte for byte.
	Data() []byte
	// Subject is where the message was published (NATS subject, Service
	// Bus entity); a dead letter records it as Graphops-Original-Subject.
	Subject() string
	// Header returns the first value of a broker header or application
	// property, "" when absent.
	Header(name string) string
	// Delivery is the 1-based delivery count.
	Delivery() int
	// Last reports that the broker will not deliver this message again if
	// it is not settled now (MaxDeliver reached): the worker must settle
	// it (apply or dead-letter) instead of handing it back.
	Last() bool
	// ID names the delivery in logs (a stream sequence, a message id).
	ID() string
	// InOrder is true for a message of a Service Bus session: the commands
	// of the session wait behind it, so a handler that must wait waits in
	// place (its lock renewed) instead of handing it back.
	InOrder() bool

	// Ack settles the message: the broker will not deliver it again.
	Ack(ctx context.Context) error
	// KeepAlive extends the broker's lease on the message (JetStream
	// InProgress, Service Bus lock renewal). The Runner does it for every
	// message a handler holds; a handler need not.
	KeepAlive(ctx context.Context) error
	// HandBack returns the message to the broker for redelivery after delay
	// (JetStream NakWithDelay, Service Bus abandon or a scheduled copy; on a
	// session message, abandon).
	HandBack(ctx context.Context, delay time.Duration) error
	// DeadLetter stores the dead letter e and settles the message. The
	// adapter fills e.Payload (the original bytes), e.OriginalSubject and
	// e.Headers (the original headers or properties); the same delivery
	// dead-lettered twice is stored once.
	DeadLetter(ctx context.Context, e dlq.Entry) error
}

// Handler processes one message and settles it (Ack, HandBack or
// DeadLetter) before it
// returns. A handler that returns without settling leaves the message to the
// broker's redelivery after the lease ends.
type Handler func(m Message)

// Source delivers messages to a handler.
type Source interface {
	// Run fetches messages and calls h for each, at most the configured
	// number at a time, until ctx is done; it then stops fetching, waits for
	// the handlers in flight to return, and returns.
	Run(ctx context.Context, h Handler) error
	// Ready reports that the source is connected and able to fetch.
	Ready() bool
}
