package jetstream_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/consumertest"
	"github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/natsembed"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ledger records, per stream sequence, what the handlers saw: deliveries,
// and acks the server confirmed or that failed.
type ledger struct {
	mu        sync.Mutex
	delivered map[uint64]int
	confirmed map[uint64]int
	failed    map[uint64]int
	// lateDelivery lists sequences delivered after their ack was
	// confirmed: a duplicate the worker's own ledger would have to catch.
	lateDelivery []uint64
}

func (l *ledger) handle(m consumer.Message) {
	seq, _ := strconv.ParseUint(m.ID(), 10, 64)
	l.mu.Lock()
	l.delivered[seq]++
	if l.confirmed[seq] > 0 {
		l.lateDelivery = append(l.lateDelivery, seq)
	}
	l.mu.Unlock()
	// Some work, so that messages are in flight when the broker stops.
	time.Sleep(2 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := m.Ack(ctx)
	l.mu.Lock()
	if err == nil {
		l.confirmed[seq]++
	} else {
		l.failed[seq]++
	}
	l.mu.Unlock()
}

func (l *ledger) confirmedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.confirmed)
}

func TestBrokerRestart(t *testing.T) {
	integration(t)
	t.Parallel()
	dir, port := t.TempDir(), freePort(t)
	startServer := func() *natsembed.Server {
		s, err := natsembed.Start(natsembed.Options{Dir: dir, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	srv := startServer()
	t.Cleanup(func() { srv.Stop() })

	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	jsc, err := js.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A short AckWait brings back soon what was delivered and not acked
	// when the broker stopped.
	src := newSource(t, jsc, jetstream.Config{AckWait: 2 * time.Second, Concurrency: 8})
	l := &ledger{delivered: map[uint64]int{}, confirmed: map[uint64]int{}, failed: map[uint64]int{}}
	run(t, src, l.handle)

	const first, second = 300, 200
	publish(t, jsc, subject, first)
	consumertest.WaitFor(t, "some handled", 10*time.Second, func() bool { return l.confirmedCount() >= 50 })

	srv.Stop()
	consumertest.WaitFor(t, "Ready() false while the broker is down", 5*time.Second, func() bool { return !src.Ready() })
	srv = startServer()
	consumertest.WaitFor(t, "Ready() true after the restart", 10*time.Second, src.Ready)

	publish(t, jsc, subject, second)
	consumertest.WaitFor(t, "every message acked on the server", 20*time.Second, func() bool {
		i := consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker")
		return i.NumAckPending == 0 && i.NumPending == 0 && i.AckFloor.Stream == first+second
	})

	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lateDelivery) > 0 {
		t.Errorf("delivered again after a confirmed ack: sequences %v", l.lateDelivery)
	}
	redelivered := 0
	for seq := uint64(1); seq <= first+second; seq++ {
		switch c := l.confirmed[seq]; {
		case c > 1:
			t.Errorf("sequence %d: %d confirmed acks, want 1", seq, c)
		case c == 0 && l.failed[seq] == 0:
			t.Errorf("sequence %d: never acked by a handler", seq)
		case c == 0:
			// The server took the ack but its confirmation was lost
			// with the connection: the handler cannot tell this from
			// a lost ack, hence the worker's ledger.
			t.Logf("sequence %d: acked, confirmation lost", seq)
		}
		// A second delivery is expected only where the first one's ack
		// failed (the broker went away before confirming it), or the
		// message was handed over just before the stop and its handler
		// had not acked yet.
		if d := l.delivered[seq]; d > 1 {
			redelivered++
			if l.failed[seq] == 0 {
				t.Logf("sequence %d delivered %d times without a failed ack (in flight at the stop)", seq, d)
			}
		}
	}
	t.Logf("%d of %d messages delivered more than once; %d acks failed", redelivered, first+second, len(l.failed))
}
