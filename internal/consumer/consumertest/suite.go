package consumertest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/dlq"
)

// seen is one delivery as a handler saw it.
type seen struct {
	body     string
	delivery int
	last     bool
	at       time.Time
}

func seenOf(m consumer.Message) seen {
	return seen{body: string(m.Data()), delivery: m.Delivery(), last: m.Last(), at: time.Now()}
}

func body(i int) []byte { return fmt.Appendf(nil, `{"n":%d}`, i) }

func testOncePerDelivery(t *testing.T, open Open) {
	b := open(t, Options{LockDuration: 5 * time.Second, MaxDeliveries: 5})
	const n = 20
	for i := range n {
		b.Publish(t, Outgoing{Body: body(i)})
	}
	got := make(chan seen, 2*n)
	run(t, b.Source(t, 4), func(m consumer.Message) {
		got <- seenOf(m)
		settle(t, "ack", m.Ack)
	})
	count := map[string]int{}
	for range n {
		s := Recv(t, got, "a delivery", 10*time.Second)
		if s.delivery != 1 {
			t.Errorf("%s: delivery %d, want 1", s.body, s.delivery)
		}
		count[s.body]++
	}
	none(t, got, "a delivery after every message was acked", time.Second)
	for i := range n {
		if c := count[string(body(i))]; c != 1 {
			t.Errorf("%s received %d times, want once", body(i), c)
		}
	}
}

func testAckRemoves(t *testing.T, open Open) {
	lock := 2 * time.Second
	b := open(t, Options{LockDuration: lock, MaxDeliveries: 5})
	b.Publish(t, Outgoing{Body: body(1)})
	got := make(chan seen, 4)
	stop := run(t, b.Source(t, 2), func(m consumer.Message) {
		got <- seenOf(m)
		settle(t, "ack", m.Ack)
	})
	Recv(t, got, "the message", 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// A new reader, past the lock duration: nothing comes back.
	run(t, b.Source(t, 2), func(m consumer.Message) { got <- seenOf(m) })
	none(t, got, "an acknowledged message again", lock+2*time.Second)
}

func testHandBackDelay(t *testing.T, open Open) {
	b := open(t, Options{LockDuration: 10 * time.Second, MaxDeliveries: 5})
	b.Publish(t, Outgoing{Body: body(1)})
	const delay = 3 * time.Second
	got := make(chan seen, 4)
	run(t, b.Source(t, 2), func(m consumer.Message) {
		s := seenOf(m)
		got <- s
		if s.delivery == 1 {
			settle(t, "hand back", func(ctx context.Context) error { return m.HandBack(ctx, delay) })
			return
		}
		settle(t, "ack", m.Ack)
	})
	first := Recv(t, got, "the first delivery", 10*time.Second)
	second := Recv(t, got, "the delivery after the hand-back", delay+10*time.Second)
	// A little slack for the brokers' clocks, which run on whole
	// milliseconds or ticks.
	if d := second.at.Sub(first.at); d < delay-100*time.Millisecond || d > delay+5*time.Second {
		t.Errorf("handed back for %s, came back after %s", delay, d)
	}
	if second.delivery != 2 {
		t.Errorf("delivery after a hand-back = %d, want 2", second.delivery)
	}
}

func testKeptPastLock(t *testing.T, open Open) {
	lock := 2 * time.Second
	b := open(t, Options{LockDuration: lock, MaxDeliveries: 5})
	b.Publish(t, Outgoing{Body: body(1)})
	got := make(chan seen, 4)
	acked := make(chan error, 1)
	run(t, b.Source(t, 2), func(m consumer.Message) {
		got <- seenOf(m)
		if m.Delivery() > 1 {
			return
		}
		// Several lock durations without a word to the broker: the
		// runner renews the lock.
		time.Sleep(4 * lock)
		acked <- m.Ack(context.Background())
	})
	Recv(t, got, "the message", 10*time.Second)
	if err := Recv(t, acked, "the ack after four lock durations", 8*lock); err != nil {
		t.Fatalf("ack after four lock durations: %v (the lock lapsed)", err)
	}
	none(t, got, "a redelivery of a message whose lock was renewed", lock+time.Second)
}

func testUnsettledComesBack(t *testing.T, open Open) {
	lock := 2 * time.Second
	b := open(t, Options{LockDuration: lock, MaxDeliveries: 5})
	b.Publish(t, Outgoing{Body: body(1)})
	got := make(chan seen, 4)
	run(t, b.Source(t, 2), func(m consumer.Message) {
		s := seenOf(m)
		got <- s
		if s.delivery > 1 {
			settle(t, "ack", m.Ack)
		}
		// The first delivery returns unsettled: a crashed worker, as far
		// as the broker can tell.
	})
	first := Recv(t, got, "the first delivery", 10*time.Second)
	second := Recv(t, got, "the redelivery", lock+10*time.Second)
	if d := second.at.Sub(first.at); d < lock-200*time.Millisecond {
		t.Errorf("redelivered after %s, before the lock duration %s", d, lock)
	}
	if second.delivery != 2 || second.body != first.body {
		t.Errorf("redelivery %+v, want the same message with delivery 2", second)
	}
}

func testLastDelivery(t *testing.T, open Open) {
	b := open(t, Options{LockDuration: 5 * time.Second, MaxDeliveries: 2})
	b.Publish(t, Outgoing{Body: body(1)})
	got := make(chan seen, 4)
	run(t, b.Source(t, 2), func(m consumer.Message) {
		s := seenOf(m)
		got <- s
		if !s.last {
			settle(t, "hand back", func(ctx context.Context) error { return m.HandBack(ctx, 0) })
			return
		}
		settle(t, "dead-letter", func(ctx context.Context) error {
			return m.DeadLetter(ctx, dlq.Entry{Reason: dlq.ReasonRetriesExhausted, Description: "last delivery", Type: "resume"})
		})
	})
	first := Recv(t, got, "the first delivery", 10*time.Second)
	last := Recv(t, got, "the last delivery", 10*time.Second)
	if first.last || !last.last || last.delivery != 2 {
		t.Fatalf("deliveries %+v then %+v: want only the second (of 2) reported as the last", first, last)
	}
	none(t, got, "a delivery after the last", 2*time.Second)
	dead := b.DeadLetters(t)
	if len(dead) != 1 || dead[0].Reason != dlq.ReasonRetriesExhausted || string(dead[0].Payload) != string(body(1)) {
		t.Fatalf("dead letters %+v, want the last delivery's", dead)
	}
}

func testDeadLetterKeepsAll(t *testing.T, open Open) {
	b := open(t, Options{LockDuration: 5 * time.Second, MaxDeliveries: 5})
	payload := []byte("\x00\xff not JSON, not UTF-8 {\r\n")
	b.Publish(t, Outgoing{Body: payload, Headers: map[string]string{"X-Producer": "team-a"}})
	entry := dlq.Entry{
		Reason: dlq.ReasonGraphRejected, Description: "Graph answered 403 Forbidden", Type: "resume",
		CommandID: "c-1", CommandSource: "urn:s", RequestID: "r-1", Attempts: 2,
		FirstAttempt: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), LastAttempt: time.Date(2026, 11, 23, 10, 1, 0, 0, time.UTC),
		GraphStatus: 403, GraphCode: "Forbidden", GraphRequestID: "g-1", ClientRequestID: "cr-1",
	}
	done := make(chan string, 2)
	run(t, b.Source(t, 2), func(m consumer.Message) {
		settle(t, "dead-letter", func(ctx context.Context) error { return m.DeadLetter(ctx, entry) })
		// The same delivery dead-lettered again (a retry after an
		// unanswered store) is stored once.
		_ = m.DeadLetter(context.Background(), entry)
		done <- m.Subject()
	})
	subject := Recv(t, done, "the dead-lettering", 10*time.Second)
	var dead []dlq.Entry
	WaitFor(t, "the dead letter stored", 10*time.Second, func() bool { dead = b.DeadLetters(t); return len(dead) > 0 })
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	got := dead[0]
	if !bytes.Equal(got.Payload, payload) {
		t.Errorf("payload %q, want %q byte for byte", got.Payload, payload)
	}
	want := entry
	want.OriginalSubject = subject
	gp, wp := got.Properties(), want.Properties()
	for name, v := range wp {
		if gp[name] != v {
			t.Errorf("%s = %q, want %q", name, gp[name], v)
		}
	}
	if h := got.Headers["X-Producer"]; len(h) != 1 || h[0] != "team-a" {
		t.Errorf("original headers %v, want X-Producer kept", got.Headers)
	}
}

// testDrainHandsBack stops one of two replicas while messages stream in,
// with a lock far longer than the test: a message the stopped replica took
// and neither handled nor handed back would show up only after the lock.
func testDrainHandsBack(t *testing.T, open Open) {
	b := open(t, Options{LockDuration: time.Minute, MaxDeliveries: 5})
	for round := range 10 {
		var mu sync.Mutex
		handled := map[string]int{}
		h := func(m consumer.Message) {
			settle(t, "ack", m.Ack)
			mu.Lock()
			handled[string(m.Data())]++
			mu.Unlock()
		}
		stopA := run(t, b.Source(t, 4), h)
		stopB := run(t, b.Source(t, 4), h)
		// Published as fast as the broker stores them, so that A has
		// pull requests waiting and messages on the wire when it stops.
		const n = 60
		for i := range n {
			b.Publish(t, Outgoing{Body: fmt.Appendf(nil, `{"round":%d,"n":%d}`, round, i)})
			if i == 10+3*round {
				go func() { _ = stopA() }()
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			missing := []int{}
			for i := range n {
				if handled[fmt.Sprintf(`{"round":%d,"n":%d}`, round, i)] == 0 {
					missing = append(missing, i)
				}
			}
			mu.Unlock()
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: messages %v neither handled nor handed back (stopped after message %d)", round, missing, 10+3*round)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := stopA(); err != nil {
			t.Errorf("the drained replica's Run = %v", err)
		}
		if err := stopB(); err != nil {
			t.Errorf("the other replica's Run = %v", err)
		}
	}
}

func testConcurrencyBound(t *testing.T, open Open) {
	b := open(t, Options{LockDuration: 10 * time.Second, MaxDeliveries: 5})
	const n, limit = 24, 3
	for i := range n {
		b.Publish(t, Outgoing{Body: body(i)})
	}
	var inFlight, most, handled atomic.Int64
	run(t, b.Source(t, limit), func(m consumer.Message) {
		RaiseTo(&most, inFlight.Add(1))
		time.Sleep(30 * time.Millisecond)
		inFlight.Add(-1)
		settle(t, "ack", m.Ack)
		handled.Add(1)
	})
	WaitFor(t, "every message handled", 20*time.Second, func() bool { return handled.Load() == n })
	if most.Load() > limit || most.Load() < 2 {
		t.Errorf("at most %d handlers at once, want up to the bound %d", most.Load(), limit)
	}
}

func testReconnect(t *testing.T, open Open) {
	b := open(t, Options{LockDuration: 2 * time.Second, MaxDeliveries: 10})
	got := make(chan string, 20)
	src := b.Source(t, 4)
	run(t, src, func(m consumer.Message) {
		settle(t, "ack", m.Ack)
		got <- string(m.Data())
	})
	b.Publish(t, Outgoing{Body: body(1)})
	Recv(t, got, "a message before the restart", 10*time.Second)
	b.Restart(t)
	WaitFor(t, "Ready() after the restart", 20*time.Second, src.Ready)
	b.Publish(t, Outgoing{Body: body(2)})
	for {
		// A message whose ack the restart swallowed may come again first.
		if Recv(t, got, "the message published after the restart", 20*time.Second) == string(body(2)) {
			break
		}
	}
}

// testSessionsInOrder publishes interleaved commands of three sessions;
// each session's come to the handler in order and one at a time, even
// while one of them waits in place past the lock duration, and a dead
// letter does not hold its session back.
func testSessionsInOrder(t *testing.T, open Open) {
	b := open(t, Options{LockDuration: 2 * time.Second, MaxDeliveries: 5, Sessions: true})
	const per = 4
	sessions := []string{"s1", "s2", "s3"}
	for i := range per {
		for _, s := range sessions {
			b.Publish(t, Outgoing{Body: fmt.Appendf(nil, `{"session":%q,"n":%d}`, s, i), SessionID: s})
		}
	}
	var mu sync.Mutex
	order := map[string][]string{}
	busy := map[string]bool{}
	var total atomic.Int64
	run(t, b.Source(t, 4), func(m consumer.Message) {
		if !m.InOrder() {
			t.Errorf("a session message with InOrder() false")
		}
		var s string
		_, _ = fmt.Sscanf(string(m.Data()), `{"session":%q`, &s)
		mu.Lock()
		if busy[s] {
			t.Errorf("session %s: two messages at once", s)
		}
		busy[s] = true
		order[s] = append(order[s], string(m.Data()))
		first := len(order[s]) == 1
		mu.Unlock()
		if s == "s1" && first {
			// Waits in place past the lock duration: the session lock
			// is renewed and the later commands of s1 wait behind it.
			time.Sleep(5 * time.Second)
		}
		mu.Lock()
		busy[s] = false
		mu.Unlock()
		if s == "s2" && first {
			// A dead letter settles its message: the session goes on.
			settle(t, "dead-letter", func(ctx context.Context) error {
				return m.DeadLetter(ctx, dlq.Entry{Reason: dlq.ReasonValidationFailed, Type: "resume"})
			})
		} else {
			settle(t, "ack", m.Ack)
		}
		total.Add(1)
	})
	WaitFor(t, "every session message handled", 40*time.Second, func() bool { return total.Load() == int64(per*len(sessions)) })
	mu.Lock()
	defer mu.Unlock()
	if dead := b.DeadLetters(t); len(dead) != 1 || string(dead[0].Payload) != `{"session":"s2","n":0}` {
		t.Errorf("dead letters %v, want s2's first command", dead)
	}
	for _, s := range sessions {
		for i, got := range order[s] {
			if want := fmt.Sprintf(`{"session":%q,"n":%d}`, s, i); got != want {
				t.Errorf("session %s: message %d is %s, want %s (order %v)", s, i, got, want, order[s])
				break
			}
		}
	}
}
