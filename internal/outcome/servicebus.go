package outcome

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// sender is what this package uses of *azservicebus.Sender.
type sender interface {
	SendMessage(ctx context.Context, m *azservicebus.Message, options *azservicebus.SendMessageOptions) error
}

// ServiceBus publishes outcome events to a queue or topic
// (SERVICEBUS_OUTCOMES).
type ServiceBus struct {
	send   sender
	entity string
}

// NewServiceBus returns a publisher sending with s to entity.
func NewServiceBus(s sender, entity string) *ServiceBus {
	return &ServiceBus{send: s, entity: entity}
}

// contentType is the structured-mode content type of the AMQP binding.
const contentType = "application/cloudevents+json; charset=utf-8"

// Publish sends e with MessageId set to its id (Service Bus collapses
// repeats where duplicate detection is on) and SessionId set to the
// command's request id, which a session-enabled entity requires and any
// other ignores. A message whose request id could not be read (an invalid
// message) has its event id as SessionId: without one, a session-enabled
// entity would refuse the event, and the message would never settle.
func (p *ServiceBus) Publish(ctx context.Context, e Event) error {
	id, ct := e.ID, contentType
	session := e.Request
	if session == "" {
		session = e.ID
	}
	m := &azservicebus.Message{Body: e.Body, MessageID: &id, ContentType: &ct, SessionID: &session}
	if err := p.send.SendMessage(ctx, m, nil); err != nil {
		return fmt.Errorf("outcome entity %s: %w", p.entity, err)
	}
	return nil
}
