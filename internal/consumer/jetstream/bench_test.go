package jetstream_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/jetstream"
)

// BenchmarkConsume pulls b.N stored messages through Run with 64 handlers
// that only settle the message, once with a plain Ack and once with an Ack
// the server confirms (the default).
func BenchmarkConsume(b *testing.B) {
	integration(b)
	for _, bc := range []struct {
		name     string
		ackAsync bool
	}{
		{"ack=async", true},
		{"ack=confirmed", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			jsc, src := start(b, jetstream.Config{Concurrency: 64, AckAsync: bc.ackAsync})
			publish(b, jsc, subject, b.N)
			var n atomic.Int64
			all := make(chan struct{})
			b.ResetTimer()
			t0 := time.Now()
			stop, _ := run(b, src, func(m consumer.Message) {
				if err := m.Ack(context.Background()); err != nil {
					b.Error(err)
				}
				if n.Add(1) == int64(b.N) {
					close(all)
				}
			})
			<-all
			elapsed := time.Since(t0)
			b.StopTimer()
			_ = stop()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
		})
	}
}
