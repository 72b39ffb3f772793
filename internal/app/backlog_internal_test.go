package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	js "github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/graphops/worker/internal/natsembed/natstest"
	"github.com/graphops/worker/metrics"
)

// gauges reads the two source gauges from m's registry; ok false when the
// series is absent.
func gauges(t *testing.T, m *metrics.Metrics) (backlog, oldest float64, backlogOK, oldestOK bool) {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	get := func(f *dto.MetricFamily) float64 { return f.GetMetric()[0].GetGauge().GetValue() }
	for _, f := range fams {
		switch f.GetName() {
		case "graphops_backlog_messages":
			backlog, backlogOK = get(f), true
		case "graphops_oldest_message_age_seconds":
			oldest, oldestOK = get(f), true
		}
	}
	return
}

func TestPollBacklogPublishesEachReadingAndRemovesTheSeriesWhileReadsFail(t *testing.T) {
	steps := []struct {
		name         string
		r            reading
		err          error
		wantBacklog  float64
		wantOldest   float64
		hasB, hasOld bool
	}{
		{"a reading", reading{messages: 12, oldest: 3.5, messagesOK: true, oldestOK: true}, nil, 12, 3.5, true, true},
		{"a failed read hides both", reading{}, errors.New("broker down"), 0, 0, false, false},
		{"a partly failed read publishes what it got", reading{oldest: 4, oldestOK: true}, errors.New("management API down"), 0, 4, false, true},
		{"the count not permitted, the oldest known", reading{oldest: 8, oldestOK: true}, nil, 0, 8, false, true},
		{"empty", reading{messagesOK: true, oldestOK: true}, nil, 0, 0, true, true},
	}
	m := metrics.New()
	var step atomic.Int32 // the index of steps the reader answers with
	seen := make(chan int32)
	read := func(context.Context) (reading, error) {
		i := step.Load()
		return steps[i].r, steps[i].err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pollBacklog(ctx, 20*time.Millisecond, func(ctx context.Context) (reading, error) {
			r, err := read(ctx)
			select {
			case seen <- step.Load():
			case <-ctx.Done():
			}
			return r, err
		}, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	for i, st := range steps {
		step.Store(int32(i))
		// Two reads of this step: the first may have started before the
		// switch; after the second, its result is published.
		for n := 0; n < 2; {
			if <-seen == int32(i) {
				n++
			}
		}
		<-seen // the second read's result is set before the next read begins
		b, o, bOK, oOK := gauges(t, m)
		if b != st.wantBacklog || o != st.wantOldest || bOK != st.hasB || oOK != st.hasOld {
			t.Errorf("%s: backlog %v (%v), oldest %v (%v); want %v (%v), %v (%v)", st.name, b, bOK, o, oOK, st.wantBacklog, st.hasB, st.wantOldest, st.hasOld)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pollBacklog did not return after cancel")
	}
}

func TestNATSBacklogReadsTheWorkersConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: embedded JetStream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, jsc := natstest.Start(t)
	st, err := jsc.CreateStream(ctx, js.StreamConfig{Name: "GRAPHOPS", Subjects: []string{"graphops.commands.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOrUpdateConsumer(ctx, js.ConsumerConfig{Durable: "graphops-worker", AckPolicy: js.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := jsc.Publish(ctx, "graphops.commands.resume", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	r, err := natsBacklog(jsc, "GRAPHOPS", "graphops-worker")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.messagesOK || !r.oldestOK || r.messages != 5 || r.oldest < 0 || r.oldest > 10 {
		t.Errorf("reading %+v, want 5 messages, known, an oldest age of a few seconds at most", r)
	}
	if _, err := natsBacklog(jsc, "GRAPHOPS", "someone-else")(ctx); !errors.Is(err, js.ErrConsumerNotFound) {
		t.Errorf("another consumer's backlog: err %v, want ErrConsumerNotFound", err)
	}
}
