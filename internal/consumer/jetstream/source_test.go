package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/consumertest"
	"github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/natsembed"
	"github.com/graphops/worker/internal/natsembed/natstest"
)

const subject = "graphops.commands.resume"

func TestNewCreatesTheStreamAndTheConsumer(t *testing.T) {
	integration(t)
	t.Parallel()
	jsc, src := start(t, jetstream.Config{AckWait: 5 * time.Second, MaxDeliver: 7, Concurrency: 3})
	ctx := context.Background()

	st, err := jsc.Stream(ctx, "GRAPHOPS")
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	if len(sc.Subjects) != 1 || sc.Subjects[0] != "graphops.commands.>" {
		t.Errorf("stream subjects = %v", sc.Subjects)
	}
	if sc.Retention != js.LimitsPolicy || sc.Storage != js.FileStorage {
		t.Errorf("stream retention %v storage %v, want limits and file", sc.Retention, sc.Storage)
	}
	if want := int32(jsc.Conn().MaxPayload() - 16<<10); sc.MaxAge != 14*24*time.Hour || sc.MaxMsgSize != want || sc.Replicas != 1 {
		t.Errorf("stream max age %v, max msg size %d (want %d: max_payload less a dead letter's headers), replicas %d",
			sc.MaxAge, sc.MaxMsgSize, want, sc.Replicas)
	}

	ci := consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker")
	cc := ci.Config
	if cc.Durable != "graphops-worker" || cc.AckPolicy != js.AckExplicitPolicy ||
		cc.DeliverPolicy != js.DeliverAllPolicy || cc.FilterSubject != "" || len(cc.FilterSubjects) != 0 {
		t.Errorf("consumer config %+v", cc)
	}
	if cc.AckWait != 5*time.Second || cc.MaxDeliver != 7 || cc.MaxAckPending != 1000 {
		t.Errorf("consumer ack wait %v, max deliver %d, max ack pending %d", cc.AckWait, cc.MaxDeliver, cc.MaxAckPending)
	}
	if !src.Ready() {
		t.Error("Ready() = false after New")
	}

	t.Run("a second New with the same config changes nothing", func(t *testing.T) {
		newSource(t, jsc, jetstream.Config{AckWait: 5 * time.Second, MaxDeliver: 7, Concurrency: 3})
		again := consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker")
		if !again.Created.Equal(ci.Created) {
			t.Errorf("consumer re-created: %v, was %v", again.Created, ci.Created)
		}
		if again.Config.AckWait != cc.AckWait || again.Config.MaxDeliver != cc.MaxDeliver {
			t.Errorf("consumer config changed: %+v", again.Config)
		}
		st2, err := jsc.Stream(ctx, "GRAPHOPS")
		if err != nil {
			t.Fatal(err)
		}
		if !st2.CachedInfo().Created.Equal(st.CachedInfo().Created) {
			t.Error("stream re-created")
		}
	})

	t.Run("a changed ack wait updates the consumer in place", func(t *testing.T) {
		newSource(t, jsc, jetstream.Config{AckWait: 9 * time.Second, MaxDeliver: 7, Concurrency: 3})
		again := consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker")
		if again.Config.AckWait != 9*time.Second {
			t.Errorf("AckWait = %v, want 9s", again.Config.AckWait)
		}
		if !again.Created.Equal(ci.Created) {
			t.Error("consumer re-created instead of updated")
		}
	})

	t.Run("the stream takes a message over 1 MiB", func(t *testing.T) {
		if _, err := jsc.Publish(ctx, subject, bytes.Repeat([]byte("x"), 3<<19)); err != nil {
			t.Fatalf("publish 1.5 MiB: %v", err)
		}
	})

	t.Run("a second durable on the stream sees the messages the first one acked", func(t *testing.T) {
		// The dry run reads through a durable of its own (docs/SPEC.md §5).
		publish(t, jsc, subject, 1)
		seen := make(chan string, 10)
		h := func(m consumer.Message) {
			seen <- m.ID()
			_ = m.Ack(context.Background())
		}
		stop, _ := run(t, src, h)
		consumertest.Recv(t, seen, "worker", 5*time.Second)
		consumertest.Recv(t, seen, "worker", 5*time.Second)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		dry := newSource(t, jsc, jetstream.Config{Durable: "graphops-dryrun"})
		run(t, dry, h)
		a, b := consumertest.Recv(t, seen, "dry run", 5*time.Second), consumertest.Recv(t, seen, "dry run", 5*time.Second)
		if !(a == "1" && b == "2" || a == "2" && b == "1") {
			t.Errorf("dry run saw %s and %s; want 1 and 2", a, b)
		}
	})
}

func TestNewUpdatesAStreamWithOtherSettings(t *testing.T) {
	integration(t)
	t.Parallel()
	_, _, jsc := natstest.Start(t)
	ctx := context.Background()
	if _, err := jsc.CreateStream(ctx, js.StreamConfig{
		Name: "GRAPHOPS", Subjects: []string{"legacy.>"}, MaxMsgSize: 256 << 10, Storage: js.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	newSource(t, jsc, jetstream.Config{})
	st, err := jsc.Stream(ctx, "GRAPHOPS")
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	if len(sc.Subjects) != 2 || sc.Subjects[0] != "legacy.>" || sc.Subjects[1] != "graphops.commands.>" {
		t.Errorf("subjects = %v, want the operator's and ours", sc.Subjects)
	}
	if want := int32(jsc.Conn().MaxPayload() - 16<<10); sc.MaxMsgSize != want {
		t.Errorf("MaxMsgSize = %d, want %d so that large commands reach the dead-letter path", sc.MaxMsgSize, want)
	}
}

// TestTheLargestCommandTheStreamAcceptsCanBeDeadLettered: on a server with
// NATS's default max_payload (1 MiB), the command stream refuses what its
// dead letter, with the longest headers of docs/SPEC.md §4, could not hold.
func TestTheLargestCommandTheStreamAcceptsCanBeDeadLettered(t *testing.T) {
	integration(t)
	t.Parallel()
	srv, err := natsembed.Start(natsembed.Options{Dir: t.TempDir(), MaxPayload: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	_, jsc := natstest.Connect(t, srv.URL())
	newSource(t, jsc, jetstream.Config{})
	ctx := context.Background()
	st, err := jsc.Stream(ctx, "GRAPHOPS")
	if err != nil {
		t.Fatal(err)
	}
	limit := int(st.CachedInfo().Config.MaxMsgSize)
	if _, err := jsc.Publish(ctx, "graphops.commands.resume", make([]byte, limit+1)); err == nil {
		t.Fatalf("the command stream accepted %d bytes, over its limit %d", limit+1, limit)
	}
	largest := bytes.Repeat([]byte("x"), limit)
	if _, err := jsc.Publish(ctx, "graphops.commands.resume", largest); err != nil {
		t.Fatalf("the command stream refused %d bytes: %v", limit, err)
	}
	store, err := dlq.New(ctx, jsc, dlq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("d", 4096) // every header value is cut to 1 KiB
	e := dlq.Entry{Reason: dlq.ReasonInvalidMessage, Description: long, Type: "resume", CommandID: long,
		CommandSource: long, RequestID: long, Attempts: 99, FirstAttempt: time.Now(), LastAttempt: time.Now(),
		OriginalSubject: long, GraphStatus: 500, GraphCode: long, GraphRequestID: long, ClientRequestID: long,
		Payload: largest}
	if _, err := store.Put(ctx, e, strings.Repeat("i", 200)); err != nil {
		t.Fatalf("the largest command the stream accepts cannot be dead-lettered: %v", err)
	}
}

func TestEveryMessageIsHandledOnce(t *testing.T) {
	integration(t)
	t.Parallel()
	const n = 2000
	jsc, src := start(t, jetstream.Config{Concurrency: 16})
	publish(t, jsc, subject, n)

	var mu sync.Mutex
	count := map[string]int{}
	all := make(chan struct{})
	run(t, src, func(m consumer.Message) {
		if m.Subject() != subject || m.Delivery() != 1 || m.Last() {
			t.Errorf("message %s: subject %q delivery %d last %v", m.ID(), m.Subject(), m.Delivery(), m.Last())
		}
		if err := m.Ack(context.Background()); err != nil {
			t.Errorf("ack %s: %v", m.ID(), err)
		}
		mu.Lock()
		count[m.ID()]++
		if len(count) == n {
			close(all)
		}
		mu.Unlock()
	})
	consumertest.Recv(t, all, "2000 messages handled", 20*time.Second)

	info := consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker")
	if info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream != n {
		t.Errorf("consumer: ack pending %d, pending %d, ack floor %d", info.NumAckPending, info.NumPending, info.AckFloor.Stream)
	}
	mu.Lock()
	defer mu.Unlock()
	for seq := 1; seq <= n; seq++ {
		if c := count[strconv.Itoa(seq)]; c != 1 {
			t.Errorf("sequence %d handled %d times", seq, c)
		}
	}
}

func TestConcurrencyBoundsHandlersAndPulledMessages(t *testing.T) {
	integration(t)
	t.Parallel()
	const limit, n = 4, 24
	jsc, src := start(t, jetstream.Config{Concurrency: limit})
	publish(t, jsc, subject, n)

	var running, maxRunning, maxAckPending atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{}, n)
	var done atomic.Int64
	allDone := make(chan struct{})
	run(t, src, func(m consumer.Message) {
		r := running.Add(1)
		defer running.Add(-1)
		consumertest.RaiseTo(&maxRunning, r)
		// What the server counts as delivered and unsettled, seen from
		// inside a handler: this source must hold no more than limit.
		consumertest.RaiseTo(&maxAckPending, int64(consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker").NumAckPending))
		started <- struct{}{}
		<-release
		if err := m.Ack(context.Background()); err != nil {
			t.Error(err)
		}
		if done.Add(1) == n {
			close(allDone)
		}
	})

	for range limit {
		consumertest.Recv(t, started, "handler start", 5*time.Second)
	}
	// Every slot is busy: the source must not pull more meanwhile. The
	// consumer's pending count says so from the server's side.
	for range 5 {
		info := consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker")
		if info.NumAckPending != limit || info.NumPending != n-limit {
			t.Fatalf("with %d busy handlers: ack pending %d, pending %d", limit, info.NumAckPending, info.NumPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-started:
		t.Fatalf("a handler started while %d were busy", limit)
	default:
	}

	// Let them go one at a time, then all.
	for range limit {
		release <- struct{}{}
		consumertest.Recv(t, started, "handler start after a release", 5*time.Second)
	}
	close(release)
	consumertest.Recv(t, allDone, "all handled", 10*time.Second)
	if got := maxRunning.Load(); got != limit {
		t.Errorf("at most %d handlers ran at once, want exactly %d", got, limit)
	}
	if got := maxAckPending.Load(); got > limit {
		t.Errorf("server saw up to %d messages pending ack, want ≤ %d", got, limit)
	}
}

func TestKeepAlive(t *testing.T) {
	integration(t)
	t.Parallel()

	t.Run("a message a handler holds is kept alive past the ack wait without a word from it", func(t *testing.T) {
		t.Parallel()
		jsc, src := start(t, jetstream.Config{AckWait: time.Second, Concurrency: 4})
		publish(t, jsc, subject, 1)
		var deliveries atomic.Int64
		acked := make(chan error, 1)
		run(t, src, func(m consumer.Message) {
			if deliveries.Add(1) > 1 {
				t.Errorf("delivery %d of a kept-alive message", m.Delivery())
				return
			}
			time.Sleep(2500 * time.Millisecond)
			acked <- m.Ack(context.Background())
		})
		if err := consumertest.Recv(t, acked, "ack after 2.5s", 10*time.Second); err != nil {
			t.Fatalf("ack after keeping alive: %v", err)
		}
		info := consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker")
		if info.Delivered.Consumer != 1 || deliveries.Load() != 1 {
			t.Errorf("delivered %d times (server: %d), want once", deliveries.Load(), info.Delivered.Consumer)
		}
	})

	t.Run("a message its handler left unsettled is redelivered after the ack wait", func(t *testing.T) {
		t.Parallel()
		jsc, src := start(t, jetstream.Config{AckWait: time.Second, Concurrency: 4})
		publish(t, jsc, subject, 1)
		second := make(chan int, 1)
		first := time.Now()
		run(t, src, func(m consumer.Message) {
			if m.Delivery() > 1 {
				second <- m.Delivery()
				_ = m.Ack(context.Background())
			}
			// The first delivery returns without settling: a crashed
			// handler, as far as the server can tell.
		})
		if d := consumertest.Recv(t, second, "redelivery", 10*time.Second); d != 2 {
			t.Errorf("redelivery has Delivery() %d, want 2", d)
		}
		if d := time.Since(first); d < 900*time.Millisecond {
			t.Errorf("redelivered after %s, before the ack wait of 1s", d)
		}
	})
}

func TestHandBackRedeliversAfterTheDelay(t *testing.T) {
	integration(t)
	t.Parallel()
	const delay = 400 * time.Millisecond
	jsc, src := start(t, jetstream.Config{Concurrency: 2}) // AckWait 30s
	publish(t, jsc, subject, 1)

	type delivery struct {
		n  int
		at time.Time
	}
	got := make(chan delivery, 2)
	handedBack := make(chan time.Time, 1)
	run(t, src, func(m consumer.Message) {
		if m.Delivery() == 1 {
			t0 := time.Now()
			if err := m.HandBack(context.Background(), delay); err != nil {
				t.Error(err)
			}
			handedBack <- t0
			return
		}
		got <- delivery{m.Delivery(), time.Now()}
		_ = m.Ack(context.Background())
	})
	t0 := consumertest.Recv(t, handedBack, "first delivery", 5*time.Second)
	d := consumertest.Recv(t, got, "redelivery", 10*time.Second)
	if d.n != 2 {
		t.Errorf("Delivery() = %d, want 2", d.n)
	}
	// Before the delay would be a plain Nak; near AckWait would be the
	// hand-back ignored.
	if wait := d.at.Sub(t0); wait < delay || wait > 10*time.Second {
		t.Errorf("redelivered after %s, want %s (ack wait 30s)", wait, delay)
	}
}

func TestLastIsTrueOnTheFinalDelivery(t *testing.T) {
	integration(t)
	t.Parallel()
	_, nc, jsc := natstest.Start(t)
	src := newSource(t, jsc, jetstream.Config{MaxDeliver: 3, Concurrency: 2})
	gaveUp, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.GRAPHOPS.graphops-worker")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jsc.Publish(context.Background(), subject, []byte("always handed back")); err != nil {
		t.Fatal(err)
	}

	type seen struct {
		delivery int
		last     bool
	}
	var mu sync.Mutex
	var deliveries []seen
	marker := make(chan struct{})
	run(t, src, func(m consumer.Message) {
		if string(m.Data()) == "marker" {
			_ = m.Ack(context.Background())
			close(marker)
			return
		}
		mu.Lock()
		deliveries = append(deliveries, seen{m.Delivery(), m.Last()})
		mu.Unlock()
		_ = m.HandBack(context.Background(), 0)
	})
	if _, err := gaveUp.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no max-deliveries advisory: %v", err)
	}
	// Anything the server would still deliver of the first message comes
	// before a message published now.
	if _, err := jsc.Publish(context.Background(), subject, []byte("marker")); err != nil {
		t.Fatal(err)
	}
	consumertest.Recv(t, marker, "marker", 5*time.Second)

	mu.Lock()
	defer mu.Unlock()
	want := []seen{{1, false}, {2, false}, {3, true}}
	if len(deliveries) != len(want) {
		t.Fatalf("deliveries %v, want %v", deliveries, want)
	}
	for i := range want {
		if deliveries[i] != want[i] {
			t.Errorf("delivery %d: %+v, want %+v", i+1, deliveries[i], want[i])
		}
	}
}

func TestRunStopsPullingAtOnceAndWaitsForItsHandlers(t *testing.T) {
	integration(t)
	t.Parallel()
	cfg := jetstream.Config{Concurrency: 4} // AckWait 30s
	jsc, a := start(t, cfg)
	publish(t, jsc, subject, 2)

	release := make(chan struct{})
	startedA := make(chan string, 4)
	stopA, doneA := run(t, a, func(m consumer.Message) {
		startedA <- m.ID()
		<-release
		if err := m.Ack(context.Background()); err != nil {
			t.Error(err)
		}
	})
	consumertest.Recv(t, startedA, "A's first handler", 5*time.Second)
	consumertest.Recv(t, startedA, "A's second handler", 5*time.Second)

	// A has two busy handlers and a pull request waiting for two more.
	stopped := make(chan error, 1)
	go func() { stopped <- stopA() }()
	select {
	case err := <-doneA:
		t.Fatalf("Run returned (%v) while its handlers were running", err)
	case <-time.After(300 * time.Millisecond):
	}

	// Published after A stopped: the pull request A had waiting must not
	// take them, so B gets them at once and not after AckWait.
	publish(t, jsc, subject, 3)
	b := newSource(t, jsc, cfg)
	startedB := make(chan string, 4)
	run(t, b, func(m consumer.Message) {
		startedB <- m.ID()
		_ = m.Ack(context.Background())
	})
	for range 3 {
		id := consumertest.Recv(t, startedB, "B's handlers", 5*time.Second)
		if id == "1" || id == "2" {
			t.Errorf("B got message %s while A's handler held it", id)
		}
	}

	close(release)
	if err := consumertest.Recv(t, stopped, "A's Run after its handlers returned", 5*time.Second); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	select {
	case id := <-startedA:
		t.Errorf("A started message %s after it was stopped", id)
	default:
	}
	consumertest.WaitFor(t, "all acked", 5*time.Second, func() bool {
		i := consumerInfo(t, jsc, "GRAPHOPS", "graphops-worker")
		return i.AckFloor.Stream == 5 && i.NumAckPending == 0
	})
}

func TestRunRefusesASecondRun(t *testing.T) {
	integration(t)
	t.Parallel()
	jsc, src := start(t, jetstream.Config{})
	publish(t, jsc, subject, 1)
	busy, release := make(chan struct{}), make(chan struct{})
	run(t, src, func(m consumer.Message) {
		close(busy)
		<-release
		_ = m.Ack(context.Background())
	})
	defer close(release)
	consumertest.Recv(t, busy, "first Run's handler", 5*time.Second)
	if err := src.Run(context.Background(), func(consumer.Message) {}); !errors.Is(err, jetstream.ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}

func TestRunRecreatesADeletedConsumer(t *testing.T) {
	integration(t)
	t.Parallel()
	// A pull sent while the consumer was being recreated can take the
	// redelivery with it; the message then comes back after the ack wait.
	jsc, src := start(t, jetstream.Config{AckWait: 3 * time.Second})
	handled := make(chan string, 1)
	run(t, src, func(m consumer.Message) {
		// Acked before the test goes on: an ack that reaches a consumer
		// being deleted gets no confirmation.
		if err := m.Ack(context.Background()); err != nil {
			t.Errorf("ack %s: %v", m.ID(), err)
		}
		handled <- string(m.Data())
	})
	publish(t, jsc, subject, 1)
	consumertest.Recv(t, handled, "a message before the delete", 5*time.Second)

	if err := jsc.DeleteConsumer(context.Background(), "GRAPHOPS", "graphops-worker"); err != nil {
		t.Fatal(err)
	}
	consumertest.WaitFor(t, "the consumer back", 10*time.Second, func() bool {
		_, err := jsc.Consumer(context.Background(), "GRAPHOPS", "graphops-worker")
		return err == nil
	})
	consumertest.WaitFor(t, "Ready() after the consumer is back", 5*time.Second, src.Ready)
	// A new durable delivers the whole stream again (DeliverAll): the
	// first message comes back, which is why the ledger decides, not the
	// broker.
	if got := consumertest.Recv(t, handled, "the first message again (within the ack wait)", 10*time.Second); got != `{"n":0}` {
		t.Errorf("got %s", got)
	}
	if _, err := jsc.Publish(context.Background(), subject, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if got := consumertest.Recv(t, handled, "a message after the delete", 5*time.Second); got != "after" {
		t.Errorf("got %s, want the message published after the delete", got)
	}
}

func TestMessageCarriesBodySubjectHeadersAndSequence(t *testing.T) {
	integration(t)
	t.Parallel()
	jsc, src := start(t, jetstream.Config{})
	body := []byte("{\"specversion\":\"1.0\"}\n\x00\xff")
	msg := &nats.Msg{Subject: "graphops.commands.pimUpdate", Data: body, Header: nats.Header{}}
	msg.Header.Add("Graphops-Trace", "first")
	msg.Header.Add("Graphops-Trace", "second")
	msg.Header["content-type"] = []string{"application/cloudevents+json"}
	if _, err := jsc.Publish(context.Background(), subject, nil); err != nil { // sequence 1
		t.Fatal(err)
	}
	if _, err := jsc.PublishMsg(context.Background(), msg); err != nil { // sequence 2
		t.Fatal(err)
	}

	type view struct {
		id, subject, trace, traceLower, contentType, missing string
		data                                                 []byte
	}
	got := make(chan view, 2)
	run(t, src, func(m consumer.Message) {
		got <- view{m.ID(), m.Subject(), m.Header("Graphops-Trace"), m.Header("graphops-trace"),
			m.Header("Content-Type"), m.Header("Graphops-Missing"), m.Data()}
		_ = m.Ack(context.Background())
	})
	var v view
	for v.id != "2" {
		v = consumertest.Recv(t, got, "the message with headers", 5*time.Second)
	}
	if !bytes.Equal(v.data, body) || v.subject != "graphops.commands.pimUpdate" {
		t.Errorf("data %q subject %q", v.data, v.subject)
	}
	if v.trace != "first" || v.traceLower != "first" || v.contentType != "application/cloudevents+json" || v.missing != "" {
		t.Errorf("headers: %+v", v)
	}
}

// TestADrainingPullHandsBackPastItsEnd: what the replica's open pull
// request brings once it drains goes back with a delay that outlasts the
// request, instead of coming straight back into it and spending a delivery
// each time.
func TestADrainingPullHandsBackPastItsEnd(t *testing.T) {
	integration(t)
	t.Parallel()
	jsc, src := start(t, jetstream.Config{Concurrency: 4})
	publish(t, jsc, subject, 1)
	busy, release := make(chan struct{}), make(chan struct{})
	stop, _ := run(t, src, func(m consumer.Message) {
		close(busy) // one slot held: the other three wait in an open pull request
		<-release
		_ = m.Ack(context.Background())
	})
	consumertest.Recv(t, busy, "the first message", 5*time.Second)
	time.Sleep(200 * time.Millisecond) // the pull for the free slot is open
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }() // the drain starts; the pull stays open
	time.Sleep(100 * time.Millisecond)
	drainedAt := time.Now()
	publish(t, jsc, subject, 1) // arrives in the draining replica's pull
	time.Sleep(2500 * time.Millisecond)
	close(release)
	if err := consumertest.Recv(t, stopped, "the drain", 20*time.Second); err != nil {
		t.Fatal(err)
	}

	var got []consumer.Leased
	for len(got) == 0 && time.Since(drainedAt) < 15*time.Second {
		if err := src.Receive(context.Background(), 1, func(m consumer.Leased) { got = append(got, m) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 {
		t.Fatal("the message that came during the drain never came back")
	}
	if back := time.Since(drainedAt); back < 2*time.Second {
		t.Errorf("back after %s, want after the draining pull request's 2s", back)
	}
	if d := got[0].Delivery(); d != 2 {
		t.Errorf("delivery %d, want 2: one delivery spent by the drain", d)
	}
	_ = got[0].Ack(context.Background())
}
