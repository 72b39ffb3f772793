package bench_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/bench"
	"github.com/graphops/worker/internal/natsembed/natstest"
)

// A throughput run against a broker of its own (-nats-url) works there and
// touches only its BENCH_* streams and bucket: the harness deletes its
// streams every loop, and the broker may hold a real worker's.
func TestThroughputAgainstAnotherBrokerLeavesTheProductsStreamsAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: JetStream, loopback HTTP and the worker")
	}
	srv, _, js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// What a real worker would have on that broker, by the product's names.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "GRAPHOPS", Subjects: []string{"graphops.commands.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "graphops.commands.resume", []byte(`{"pending":"command"}`)); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "GRAPHOPS_LEDGER"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "outcome", []byte("applied")); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	const n = 100
	rep, err := bench.Throughput(ctx, bench.ThroughputConfig{
		Commands: n, Rounds: 1, Concurrency: 8, NATSURL: srv.URL(), RoundDeadline: 20 * time.Second,
	}, &out)
	if err != nil {
		t.Fatalf("Throughput: %v\n%s", err, out.String())
	}
	if r := rep.Rounds[0]; r.Bare.Applied != n || r.Worker.Applied != n {
		t.Fatalf("applied bare %d, worker %d, want %d each", r.Bare.Applied, r.Worker.Applied, n)
	}

	s, err := js.Stream(ctx, "GRAPHOPS")
	if err != nil {
		t.Fatalf("the product's stream: %v", err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("the product's stream: %+v, %v; want its one message, untouched", info, err)
	}
	if e, err := kv.Get(ctx, "outcome"); err != nil || string(e.Value()) != "applied" {
		t.Fatalf("the product's ledger: %v, %v; want its record, untouched", e, err)
	}
	for _, name := range []string{"BENCH_GRAPHOPS", "KV_BENCH_GRAPHOPS_LEDGER"} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v; the run should have used it", name, err)
		}
	}
	if _, err := js.Stream(ctx, "GRAPHOPS_DLQ"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("GRAPHOPS_DLQ: %v; the run made the product's dead-letter stream", err)
	}
}
