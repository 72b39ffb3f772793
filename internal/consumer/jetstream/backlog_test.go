package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	js "github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/natsembed/natstest"
)

// The stream and consumer are made here with the client library, as the
// worker makes them (limits retention, every subject, explicit acks), so the
// test depends on ReadBacklog only.
func TestReadBacklogCountsPendingAndAckPendingAndAgesTheFirstAfterTheAckFloor(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, jsc := natstest.Start(t)
	// clock is a fixed "now" well after the test's messages, so ages are
	// exact; published holds each message's time by sequence.
	clock := time.Now().Add(time.Hour)
	published := map[uint64]time.Time{}
	st, err := jsc.CreateStream(ctx, js.StreamConfig{Name: "BACKLOG", Subjects: []string{"backlog.>"}, Retention: js.LimitsPolicy})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, js.ConsumerConfig{Durable: "w", AckPolicy: js.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	read := func() jetstream.Backlog {
		t.Helper()
		b, err := jetstream.ReadBacklog(ctx, jsc, "BACKLOG", "w", clock)
		if err != nil {
			t.Fatalf("ReadBacklog: %v", err)
		}
		return b
	}
	want := func(step string, got jetstream.Backlog, messages uint64, oldestSeq uint64) {
		t.Helper()
		var oldest time.Duration
		if oldestSeq > 0 {
			oldest = clock.Sub(published[oldestSeq])
		}
		if got.Messages != messages || got.Oldest != oldest {
			t.Errorf("%s: backlog %d, oldest %v; want %d, %v (message %d)", step, got.Messages, got.Oldest, messages, oldest, oldestSeq)
		}
	}

	want("an empty stream", read(), 0, 0)

	for _, subj := range []string{"backlog.a", "backlog.b", "backlog.a", "backlog.c"} {
		if _, err := jsc.Publish(ctx, subj, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(1); seq <= 4; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		published[seq] = m.Time
	}
	want("four published, none delivered", read(), 4, 1)

	batch, err := cons.Fetch(3, js.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []js.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("fetched %d messages, want 3", len(got))
	}
	want("three delivered and waiting count as much as pending", read(), 4, 1)

	ack := func(m js.Msg) {
		t.Helper()
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ack(got[0])
	want("the first acknowledged: the second is the oldest", read(), 3, 2)

	ack(got[2])
	want("an out-of-order ack leaves the ack floor, and the oldest, where they were", read(), 2, 2)

	if err := st.DeleteMsg(ctx, 2); err != nil {
		t.Fatal(err)
	}
	b := read()
	if b.Oldest != clock.Sub(published[2]) && b.Oldest != clock.Sub(published[3]) && b.Oldest != clock.Sub(published[4]) {
		t.Errorf("with the message after the ack floor deleted, oldest %v is not the age of a later message", b.Oldest)
	}

	ack(got[1])
	// Whatever the server counts for the deleted message, the fourth is the
	// only one left.
	if b := read(); b.Oldest != clock.Sub(published[4]) {
		t.Errorf("after acking all delivered: oldest %v, want the fourth's age %v", b.Oldest, clock.Sub(published[4]))
	}
	batch, err = cons.Fetch(1, js.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		ack(m)
	}
	want("everything settled", read(), 0, 0)

	t.Run("a consumer that does not exist is an error, not an empty backlog", func(t *testing.T) {
		_, err := jetstream.ReadBacklog(ctx, jsc, "BACKLOG", "nobody", clock)
		if !errors.Is(err, js.ErrConsumerNotFound) {
			t.Errorf("err = %v, want ErrConsumerNotFound", err)
		}
	})
}
