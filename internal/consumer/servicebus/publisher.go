package servicebus

import (
	"context"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// Publisher sends commands to the entity (the topic, for a subscription):
// `worker submit` on Service Bus.
type Publisher struct {
	cfg   Config
	send  *azservicebus.Sender
	close func(context.Context) error
}

// NewPublisher validates cfg and opens a sender to the entity. Nothing is
// sent on the wire until the first Publish. Close it when done.
func NewPublisher(cfg Config) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("servicebus config: %w", err)
	}
	send, closeSend, err := OpenSender(cfg, cfg.sendTarget())
	if err != nil {
		return nil, err
	}
	return &Publisher{cfg: cfg, send: send, close: closeSend}, nil
}

// OpenSender opens a client of cfg's namespace (connection string or
// azidentity) and a sender to entity, which need not be cfg's: the worker
// also sends outcome events (SERVICEBUS_OUTCOMES). closeAll closes both.
func OpenSender(cfg Config, entity string) (send *azservicebus.Sender, closeAll func(context.Context) error, err error) {
	cl, err := newClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	send, err = cl.NewSender(entity, nil)
	if err != nil {
		_ = cl.Close(context.Background())
		return nil, nil, fmt.Errorf("servicebus: sender to %s: %w", entity, err)
	}
	return send, func(ctx context.Context) error { return errors.Join(send.Close(ctx), cl.Close(ctx)) }, nil
}

// Target is where Publish sends: the queue, or the topic.
func (p *Publisher) Target() string { return p.cfg.sendTarget() }

// Publish sends one structured-mode command. On a session-enabled entity
// (Config.Sessions) sessionID must be the command's request id (docs/SPEC.md §4).
func (p *Publisher) Publish(ctx context.Context, body []byte, sessionID string) error {
	ct := "application/cloudevents+json"
	m := &azservicebus.Message{Body: body, ContentType: &ct}
	if p.cfg.Sessions {
		if sessionID == "" {
			return errors.New("servicebus: a session-enabled entity needs the command's request id as SessionId")
		}
		m.SessionID = &sessionID
	}
	if err := p.send.SendMessage(ctx, m, nil); err != nil {
		return fmt.Errorf("servicebus: send to %s: %w", p.cfg.sendTarget(), err)
	}
	return nil
}

// Close closes the sender and the client.
func (p *Publisher) Close(ctx context.Context) error { return p.close(ctx) }
