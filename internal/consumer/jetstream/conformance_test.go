package jetstream_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/consumertest"
	"github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/natsembed"
)

func TestConformance(t *testing.T) {
	consumertest.Run(t, openJetStream, consumertest.Features{Restart: true})
}

// jsBroker is an embedded server of its own per test, on a fixed port and
// directory so that Restart brings the same one back.
type jsBroker struct {
	opts consumertest.Options
	dir  string
	port int

	mu   sync.Mutex
	srv  *natsembed.Server
	js   js.JetStream
	dead *dlq.Store
}

func openJetStream(t *testing.T, o consumertest.Options) consumertest.Broker {
	b := &jsBroker{opts: o, dir: t.TempDir(), port: freePort(t)}
	b.start(t)
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.srv.Stop()
	})
	nc, err := nats.Connect(b.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if b.js, err = js.New(nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b.dead, err = dlq.New(ctx, b.js, dlq.Config{}); err != nil {
		t.Fatal(err)
	}
	// The stream and consumer, before anything is published.
	b.Source(t, 1)
	return b
}

func (b *jsBroker) start(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{Dir: b.dir, Port: b.port})
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
}

func (b *jsBroker) Source(t *testing.T, concurrency int) consumer.Source {
	return newSource(t, b.js, jetstream.Config{AckWait: b.opts.LockDuration, MaxDeliver: b.opts.MaxDeliveries,
		Concurrency: concurrency, DeadLetters: b.dead})
}

func (b *jsBroker) Publish(t *testing.T, m consumertest.Outgoing) {
	msg := &nats.Msg{Subject: subject, Data: m.Body, Header: nats.Header{}}
	for k, v := range m.Headers {
		msg.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
}

func (b *jsBroker) DeadLetters(t *testing.T) []dlq.Entry {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []dlq.Entry
	if err := b.dead.List(ctx, func(e dlq.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func (b *jsBroker) Restart(t *testing.T) {
	b.mu.Lock()
	b.srv.Stop()
	b.mu.Unlock()
	b.start(t)
}
