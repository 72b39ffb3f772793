package jetstream_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	js "github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/natsembed/natstest"
)

func integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs an embedded NATS server")
	}
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

// start runs an embedded server and a Source on it.
func start(t testing.TB, cfg jetstream.Config) (js.JetStream, *jetstream.Source) {
	t.Helper()
	_, _, jsc := natstest.Start(t)
	return jsc, newSource(t, jsc, cfg)
}

func newSource(t testing.TB, jsc js.JetStream, cfg jetstream.Config) *jetstream.Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := jetstream.New(ctx, jsc, cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts s.Run in a goroutine. stop cancels it and returns Run's result;
// the test's cleanup stops it too.
func run(t testing.TB, s *jetstream.Source, h consumer.Handler) (stop func() error, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- s.Run(ctx, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-ch:
			case <-time.After(20 * time.Second):
				err = fmt.Errorf("Run did not return 20s after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, ch
}

// publish sends n messages on subject and waits for the stream to store them.
// It waits for the stream's acks every 1000 messages, below the client's
// limit of outstanding asynchronous publishes.
func publish(t testing.TB, jsc js.JetStream, subject string, n int) {
	t.Helper()
	for sent := 0; sent < n; {
		chunk := min(1000, n-sent)
		futures := make([]js.PubAckFuture, 0, chunk)
		for i := range chunk {
			f, err := jsc.PublishAsync(subject, fmt.Appendf(nil, `{"n":%d}`, sent+i))
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatal(err)
			case <-time.After(10 * time.Second):
				t.Fatal("no publish ack in 10s")
			}
		}
		sent += chunk
	}
}

func consumerInfo(t testing.TB, jsc js.JetStream, stream, durable string) *js.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := jsc.Consumer(ctx, stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
