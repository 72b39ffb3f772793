package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/consumer"
	jsconsumer "github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/dlq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// broker is the one value a broker of WORKER_SOURCE opens as: where
// commands come from, where dead letters are, readiness, and publishing
// for `worker submit`. A third broker is one more implementation.
type broker interface {
	// Consume creates the consumer, once everything it will feed is
	// ready; limit is how many commands the worker can take now.
	Consume(ctx context.Context, cfg *config.Config, log *slog.Logger, limit func() int) (consumer.Source, error)
	// Ready reports the broker reachable (and the consumer, once made).
	Ready() bool
	// DeadLetters is the broker's dead-letter store.
	DeadLetters() dlq.Backend
	// Publish sends one command (structured mode) and says where it went.
	Publish(ctx context.Context, data []byte) (string, error)
	// Name names what is consumed in logs; URL is the broker's address.
	Name() string
	URL() string
	// JetStream is the NATS JetStream context the KV ledger shares; nil
	// on other brokers.
	JetStream() jetstream.JetStream
	Close()
}

// openBroker connects to the broker of WORKER_SOURCE.
func openBroker(ctx context.Context, cfg *config.Config, log *slog.Logger) (broker, error) {
	if cfg.Source == "servicebus" {
		return openServiceBus(cfg)
	}
	b, err := connect(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	dead, err := dlq.New(ctx, b.js, dlqConfig(cfg))
	if err != nil {
		b.close()
		return nil, fmt.Errorf("%s: %w", streamSetting(err, "NATS_DLQ_STREAM"), err)
	}
	return &natsBroker{b: b, dead: dead, cfg: cfg, name: cfg.Stream}, nil
}

// streamSetting names the setting behind a failure to create or update a
// stream: NATS_REPLICAS when the server cannot keep that many, else
// otherwise.
func streamSetting(err error, otherwise string) string {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsReplicasNotSupported {
		return "NATS_REPLICAS"
	}
	return otherwise
}

// jsReplicasNotSupported is the server's JSStreamReplicasNotSupportedErr
// ("replicas > 1 not supported in non-clustered mode").
const jsReplicasNotSupported = 10074

// natsBroker is NATS JetStream: the command stream and durable consumer,
// the dead-letter stream.
type natsBroker struct {
	b    *natsConn
	dead *dlq.Store
	cfg  *config.Config
	name string
	src  *jsconsumer.Source // set by Consume
}

func (n *natsBroker) Consume(ctx context.Context, cfg *config.Config, log *slog.Logger, limit func() int) (consumer.Source, error) {
	durable := cfg.Durable
	if cfg.DryRun {
		durable += "-dryrun" // a dry run reads through its own consumer
	}
	s, err := jsconsumer.New(ctx, n.b.js, jsconsumer.Config{
		Stream: cfg.Stream, Subjects: cfg.SubjectList(), Durable: durable, AckWait: cfg.AckWait,
		MaxDeliver: cfg.MaxDeliver, Concurrency: cfg.Concurrency, StreamMaxAge: cfg.StreamMaxAge, Replicas: cfg.JSReplicas,
		// The ledger, not the ack, is the authority: a lost ack only
		// makes a redelivery that settles as a duplicate.
		AckAsync:    true,
		Limit:       limit,
		DeadLetters: n.dead,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", streamSetting(err, "NATS_STREAM"), err)
	}
	n.src, n.name = s, cfg.Stream+"/"+durable
	return s, nil
}

func (n *natsBroker) Ready() bool {
	return n.b.nc.Status() == nats.CONNECTED && (n.src == nil || n.src.Ready())
}

func (n *natsBroker) DeadLetters() dlq.Backend {
	return n.dead.Backend(dlq.JetStreamPublisher(n.b.js, jetstream.WithExpectStream(n.cfg.Stream)))
}

// Publish sends on graphops.commands.<short type> (docs/SPEC.md §4).
func (n *natsBroker) Publish(ctx context.Context, data []byte) (string, error) {
	subject, err := commandSubject(n.cfg.SubjectList(), string(typeOfRaw(data)))
	if err != nil {
		return "", err
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{"Content-Type": []string{"application/cloudevents+json"}}}
	ack, err := n.b.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(n.cfg.Stream))
	if err != nil {
		return "", fmt.Errorf("publish to %s: %w", subject, err)
	}
	return fmt.Sprintf("%s, stream %s sequence %d", subject, ack.Stream, ack.Sequence), nil
}

// commandSubject is where a command of short type typ is published: on
// the first subject of NATS_SUBJECTS, its last token (> or *) replaced by
// the short type (graphops.commands.<short type> by default, docs/SPEC.md
// §4), or that subject itself when it has no wildcard.
func commandSubject(subjects []string, typ string) (string, error) {
	if len(subjects) == 0 {
		return "", errors.New("NATS_SUBJECTS: no subject to publish on")
	}
	s := subjects[0]
	if prefix, ok := strings.CutSuffix(s, ".>"); ok && !strings.ContainsAny(prefix, "*>") {
		return prefix + "." + typ, nil
	}
	if prefix, ok := strings.CutSuffix(s, ".*"); ok && !strings.ContainsAny(prefix, "*>") {
		return prefix + "." + typ, nil
	}
	if !strings.ContainsAny(s, "*>") {
		return s, nil
	}
	return "", fmt.Errorf("NATS_SUBJECTS: cannot tell where to publish from %q (a wildcard before its last token)", s)
}

func (n *natsBroker) Name() string                   { return n.name }
func (n *natsBroker) URL() string                    { return n.b.url }
func (n *natsBroker) JetStream() jetstream.JetStream { return n.b.js }
func (n *natsBroker) Close()                         { n.b.close() }

func sbConfig(cfg *config.Config) servicebus.Config {
	return servicebus.Config{Namespace: cfg.SBNamespace, ConnectionString: cfg.SBConnectionString,
		Queue: cfg.SBQueue, Topic: cfg.SBTopic, Subscription: cfg.SBSubscription,
		Concurrency: cfg.Concurrency, MaxDeliveryCount: cfg.SBMaxDeliveryCount, Peek: cfg.DryRun,
		Sessions: cfg.SBSessions}
}

// sbBroker is Azure Service Bus: the queue or subscription and its
// dead-letter sub-queue. Its clients connect lazily.
type sbBroker struct {
	cfg  *config.Config
	name string
	src  *servicebus.Source // set by Consume
	dead *servicebus.DeadLetters
	pub  *servicebus.Publisher
}

func openServiceBus(cfg *config.Config) (*sbBroker, error) {
	entity := cfg.SBQueue
	if entity == "" {
		entity = cfg.SBTopic + "/" + cfg.SBSubscription
	}
	dead, err := servicebus.NewDeadLetters(sbConfig(cfg))
	if err != nil {
		return nil, sbError(err)
	}
	pub, err := servicebus.NewPublisher(sbConfig(cfg))
	if err != nil {
		_ = dead.Close(context.Background())
		return nil, sbError(err)
	}
	return &sbBroker{cfg: cfg, name: entity, dead: dead, pub: pub}, nil
}

// sbError names the setting of a configuration error.
func sbError(err error) error {
	var ce *consumer.ConfigError
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %s", ce.Setting, ce.Problem)
	}
	return fmt.Errorf("SERVICEBUS_NAMESPACE: %w", err)
}

func (s *sbBroker) Consume(ctx context.Context, cfg *config.Config, log *slog.Logger, limit func() int) (consumer.Source, error) {
	// The SDK retries a namespace it cannot reach for minutes; start-up
	// should fail fast and say why. It does not always honour the context
	// while it cannot connect, so the deadline is kept here.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	type opened struct {
		s   *servicebus.Source
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		sb := sbConfig(cfg)
		sb.Limit = limit
		src, err := servicebus.New(sctx, sb, log)
		ch <- opened{src, err}
	}()
	var o opened
	select {
	case o = <-ch:
	case <-sctx.Done():
		o.err = fmt.Errorf("no answer from Service Bus within 30s: %w", sctx.Err())
	}
	if o.err != nil {
		return nil, sbError(o.err)
	}
	s.src = o.s
	return o.s, nil
}

func (s *sbBroker) Ready() bool { return s.src != nil && s.src.Ready() }

func (s *sbBroker) DeadLetters() dlq.Backend { return s.dead }

// Publish sends to the queue or topic; on a session-enabled entity with the
// command's request id as SessionId (docs/SPEC.md §4).
func (s *sbBroker) Publish(ctx context.Context, data []byte) (string, error) {
	sessionID := ""
	if cmd, err := command.Parse(data, command.Options{}); err == nil {
		sessionID = cmd.RequestID()
	}
	if err := s.pub.Publish(ctx, data, sessionID); err != nil {
		return "", err
	}
	return s.pub.Target(), nil
}

func (s *sbBroker) Name() string                   { return s.name }
func (s *sbBroker) URL() string                    { return s.cfg.SBNamespace }
func (s *sbBroker) JetStream() jetstream.JetStream { return nil }

func (s *sbBroker) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.src != nil {
		_ = s.src.Close(ctx)
	}
	_ = s.dead.Close(ctx)
	_ = s.pub.Close(ctx)
}
