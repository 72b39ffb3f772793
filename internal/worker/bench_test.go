package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/memstore"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
)

// BenchmarkHandle measures the processor's own cost per command, from a
// delivery to its ack: parse, claim, pacer, the (fake) Graph call, the
// outcome write, metrics and the info-level JSON log line, with an
// in-memory ledger store and no network. It is the part of the worker's
// CPU per command that `worker bench throughput` cannot separate from
// the broker's and the stand-in's (docs/PERFORMANCE.md).
func BenchmarkHandle(b *testing.B) {
	graph := &fakeGraph{status: graphops.StatusWaitingForCallback}
	led, err := ledger.New(memstore.New(0), ledger.Config{Owner: "bench", Lease: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	proc := mustNew(b, worker.Config{KeepAliveEvery: time.Second},
		worker.Deps{Graph: graph, Ledger: led, Metrics: metrics.New(), Log: log},
		context.Background(), context.Background())

	seed := seed(b)
	msgs := make([]*fakeMsg, b.N)
	for i := range msgs {
		// A new command for a new request each time: no duplicates, no waits.
		d := bytes.Replace(seed, []byte("3d5a7c1e-0b6f-4e2a-8c9d-1a2b3c4d5e01"), fmt.Appendf(nil, "3d5a7c1e-0b6f-4e2a-8c9d-%012x", i), 1)
		d = bytes.Replace(d, []byte("0e60f18c-b2a0-4887-9da8-da2e30a39d99"), fmt.Appendf(nil, "0e60f18c-b2a0-4887-9da8-%012x", i), 1)
		msgs[i] = &fakeMsg{data: d, delivery: 1}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, m := range msgs {
		proc.Handle(m)
	}
	b.StopTimer()
	for i, m := range msgs {
		if m.acked != 1 {
			b.Fatalf("command %d acked %d times", i, m.acked)
		}
	}
	if graph.writes != b.N {
		b.Fatalf("%d Graph writes for %d commands", graph.writes, b.N)
	}
}
