package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/consumer"
	jsconsumer "github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/dlq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// source is the broker side of a running worker: where messages come
// from and where dead letters go.
type source struct {
	consumer.Source
	name, url string
	js        jetstream.JetStream // nil on Service Bus
	ready     func() bool
	close     func()
	start     func(ctx context.Context, cfg *config.Config, log *slog.Logger, limit func() int) error
}

// openSource connects to the broker of WORKER_SOURCE. The consumer itself is
// created by start, once everything it will feed is ready.
func openSource(ctx context.Context, cfg *config.Config, log *slog.Logger) (*source, error) {
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
		return nil, fmt.Errorf("NATS_DLQ_STREAM: %w", err)
	}
	src := &source{url: b.url, js: b.js, close: b.close, name: cfg.Stream,
		ready: func() bool { return b.nc.Status() == nats.CONNECTED }}
	src.start = func(ctx context.Context, cfg *config.Config, log *slog.Logger, limit func() int) error {
		durable := cfg.Durable
		if cfg.DryRun {
			durable += "-dryrun" // a dry run reads through its own consumer
		}
		s, err := jsconsumer.New(ctx, b.js, jsconsumer.Config{
			Stream: cfg.Stream, Subjects: cfg.SubjectList(), Durable: durable, AckWait: cfg.AckWait,
			MaxDeliver: cfg.MaxDeliver, Concurrency: cfg.Concurrency, StreamMaxAge: cfg.StreamMaxAge, Replicas: cfg.JSReplicas,
			// The ledger, not the ack, is the authority: a lost ack only
			// makes a redelivery that settles as a duplicate.
			AckAsync:    true,
			Limit:       limit,
			DeadLetters: dead,
		}, log)
		if err != nil {
			return fmt.Errorf("NATS_STREAM: %w", err)
		}
		src.Source, src.name = s, cfg.Stream+"/"+durable
		src.ready = func() bool { return b.nc.Status() == nats.CONNECTED && s.Ready() }
		return nil
	}
	return src, nil
}

func sbConfig(cfg *config.Config) servicebus.Config {
	return servicebus.Config{Namespace: cfg.SBNamespace, ConnectionString: cfg.SBConnectionString,
		Queue: cfg.SBQueue, Topic: cfg.SBTopic, Subscription: cfg.SBSubscription,
		Concurrency: cfg.Concurrency, MaxDeliveryCount: cfg.SBMaxDeliveryCount, Peek: cfg.DryRun,
		Sessions: cfg.SBSessions}
}

func openServiceBus(cfg *config.Config) (*source, error) {
	entity := cfg.SBQueue
	if entity == "" {
		entity = cfg.SBTopic + "/" + cfg.SBSubscription
	}
	src := &source{name: entity, url: cfg.SBNamespace, close: func() {},
		ready: func() bool { return false }}
	src.start = func(ctx context.Context, cfg *config.Config, log *slog.Logger, limit func() int) error {
		// The SDK retries a namespace it cannot reach for minutes; start-up
		// should fail fast and say why.
		// It does not always honour the context while it cannot connect,
		// so the deadline is kept here.
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
			s, err := servicebus.New(sctx, sb, log)
			ch <- opened{s, err}
		}()
		var o opened
		select {
		case o = <-ch:
		case <-sctx.Done():
			o.err = fmt.Errorf("no answer from Service Bus within 30s: %w", sctx.Err())
		}
		s, err := o.s, o.err
		if err != nil {
			var ce *consumer.ConfigError
			if errors.As(err, &ce) {
				return fmt.Errorf("%s: %s", ce.Setting, ce.Problem)
			}
			return fmt.Errorf("SERVICEBUS_NAMESPACE: %w", err)
		}
		src.Source, src.ready = s, s.Ready
		src.close = func() { _ = s.Close(context.Background()) }
		return nil
	}
	return src, nil
}
