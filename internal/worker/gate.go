package worker

import (
	"context"
	"sync"
)

// gate lets one job at a time work on a request id in this process; the
// others wait in memory, in arrival order, instead of polling the ledger
// (client-go's workqueue is the model: one key never in two workers). The
// ledger still serializes across replicas; the gate only keeps a process
// from racing itself to the store.
type gate struct {
	mu   sync.Mutex
	keys map[string]*queue
}

// queue is the jobs of one key: the holder and its waiters, in order.
type queue struct{ waiters []chan struct{} }

func newGate() *gate { return &gate{keys: map[string]*queue{}} }

// Enter waits until the caller holds key, or ctx ends. leave lets the next
// waiter in; it must be called exactly once when err is nil.
func (g *gate) Enter(ctx context.Context, key string) (leave func(), err error) {
	g.mu.Lock()
	q := g.keys[key]
	if q == nil {
		g.keys[key] = &queue{}
		g.mu.Unlock()
		return func() { g.leave(key) }, nil
	}
	turn := make(chan struct{})
	q.waiters = append(q.waiters, turn)
	g.mu.Unlock()
	select {
	case <-turn:
		return func() { g.leave(key) }, nil
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		for i, w := range q.waiters {
			if w == turn {
				q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
				return nil, ctx.Err()
			}
		}
		// The turn came as ctx ended: pass it on.
		g.leaveLocked(key)
		return nil, ctx.Err()
	}
}

// Held reports whether a job holds key now (for a log line: by the time
// Enter runs, it may have been let go).
func (g *gate) Held(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.keys[key] != nil
}

func (g *gate) leave(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leaveLocked(key)
}

func (g *gate) leaveLocked(key string) {
	q := g.keys[key]
	if len(q.waiters) == 0 {
		delete(g.keys, key)
		return
	}
	next := q.waiters[0]
	q.waiters = q.waiters[1:]
	close(next)
}
