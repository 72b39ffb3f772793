package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestTheGateLetsOneJobPerKeyInAtATimeInArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		ctx := context.Background()
		leave, err := g.Enter(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		var (
			order   []int
			mu      sync.Mutex
			holders atomic.Int32
			wg      sync.WaitGroup
		)
		for i := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := g.Enter(ctx, "r1")
				if err != nil {
					t.Error(err)
					return
				}
				if holders.Add(1) != 1 {
					t.Error("two holders of one key")
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				holders.Add(-1)
				l()
			}()
			// Queue them in a known order.
			for waiting(g, "r1") != i+1 {
				time.Sleep(time.Millisecond)
			}
		}
		// Another key is not held back.
		other, err := g.Enter(ctx, "r2")
		if err != nil {
			t.Fatal(err)
		}
		other()
		leave()
		wg.Wait()
		for i, v := range order {
			if v != i {
				t.Fatalf("order %v, want arrival order", order)
			}
		}
		if len(g.keys) != 0 {
			t.Fatalf("keys left behind: %v", g.keys)
		}
	})
}

func TestAWaiterWhoseContextEndsLeavesTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		leave, _ := g.Enter(context.Background(), "r")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { _, err := g.Enter(ctx, "r"); done <- err }()
		for waiting(g, "r") != 1 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err == nil {
			t.Fatal("Enter returned without an error after its context ended")
		}
		leave()
		if len(g.keys) != 0 {
			t.Fatalf("the cancelled waiter kept the key: %v", g.keys)
		}
		// The key is free again.
		l, err := g.Enter(context.Background(), "r")
		if err != nil {
			t.Fatal(err)
		}
		l()
	})
}

func waiting(g *gate, key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if q := g.keys[key]; q != nil {
		return len(q.waiters)
	}
	return 0
}
