package consumer

import "sync"

// Pool runs functions on a fixed set of long-lived goroutines. A handler
// started on a fresh goroutine grows its stack anew inside the JSON decoders
// for every message; a pool's goroutines keep the stacks they grew. The
// caller bounds what it submits (with Slots), so Go waits at most until one
// of the goroutines finishes its function.
type Pool struct {
	work chan func()
	wg   sync.WaitGroup
}

// NewPool starts n goroutines.
func NewPool(n int) *Pool {
	p := &Pool{work: make(chan func())}
	for range max(n, 1) {
		p.wg.Go(func() {
			for f := range p.work {
				f()
			}
		})
	}
	return p
}

// Go runs f on one of the pool's goroutines.
func (p *Pool) Go(f func()) { p.work <- f }

// Close waits for the functions running and ends the goroutines; Go must
// not be called after it.
func (p *Pool) Close() {
	close(p.work)
	p.wg.Wait()
}
