// Package consumer defines what the worker needs from a broker: a source of
// messages and the four things a worker can say about one of them. Each broker
// adapter lives in its own sub-package (jetstream, servicebus) and owns the
// broker's names and settings; the processing of a message does not live here.
package consumer

import (
	"context"
	"time"
)

// Message is one delivery of a command.
type Message interface {
	// Data is the message body, byte for byte as the broker delivered it.
	Data() []byte
	// Subject is where the message was published (NATS subject, Service Bus
	// entity); a dead letter records it as Graphops-Original-Subject.
	Subject() string
	// Header returns the first value of a broker header or application
	// property, "" when absent.
	Header(name string) string
	// Delivery is the 1-based delivery count.
	Delivery() int
	// Last reports that the broker will not deliver this message again if
	// it is not acknowledged now (MaxDeliver reached): the worker must settle
	// it (apply or dead-letter) instead of handing it back.
	Last() bool
	// ID names the delivery in logs (a stream sequence, a message id).
	ID() string

	// Ack settles the message: the broker will not deliver it again.
	Ack(ctx context.Context) error
	// KeepAlive extends the broker's lease on the message (JetStream
	// InProgress, Service Bus lock renewal).
	KeepAlive(ctx context.Context) error
	// HandBack returns the message to the broker for redelivery after delay
	// (JetStream NakWithDelay, Service Bus abandon/schedule).
	HandBack(ctx context.Context, delay time.Duration) error
}

// Handler processes one message and settles it (Ack or HandBack) before it
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
