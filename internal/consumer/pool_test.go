package consumer

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestPoolRunsEverythingOnItsOwnGoroutinesAtMostNAtOnceAndCloseWaits(t *testing.T) {
	const n, jobs = 3, 200
	p := NewPool(n)
	var running, peak, done atomic.Int64
	gate := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for i := range jobs {
		p.Go(func() {
			r := running.Add(1)
			for {
				old := peak.Load()
				if r <= old || peak.CompareAndSwap(old, r) {
					break
				}
			}
			if i < n {
				started.Done()
				<-gate // the first n hold every goroutine until all n run
			}
			running.Add(-1)
			done.Add(1)
		})
		if i == n-1 {
			started.Wait()
			close(gate)
		}
	}
	p.Close()
	if done.Load() != jobs {
		t.Fatalf("Close returned with %d of %d done", done.Load(), jobs)
	}
	if peak.Load() != n {
		t.Fatalf("peak concurrency %d, want %d", peak.Load(), n)
	}
}
