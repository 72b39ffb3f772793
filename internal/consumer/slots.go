package consumer

import (
	"context"
	"time"
)

// Slots bounds the handlers in flight. A fetch loop asks for free slots
// before it pulls, and pulls only that many messages: a message pulled but
// not handled has its lease running for nothing.
//
// An optional limit makes the bound follow what the worker can use now
// (the pacer's rate): Acquire never takes more than limit() slots in all,
// and waits while it is 0 — messages stay in the broker, where waiting costs
// no delivery attempt.
type Slots struct {
	free  chan struct{}
	limit func() int
}

// NewSlots returns n free slots; limit may be nil.
func NewSlots(n int, limit func() int) *Slots {
	s := &Slots{free: make(chan struct{}, n), limit: limit}
	for range n {
		s.free <- struct{}{}
	}
	return s
}

// limitPoll is how often Acquire looks again while the limit holds it.
const limitPoll = 100 * time.Millisecond

// Acquire waits for one free slot, then takes every other free one the
// limit allows; it returns how many it took, 0 when ctx is done.
func (s *Slots) Acquire(ctx context.Context) int {
	for {
		select {
		case <-s.free:
		case <-ctx.Done():
			return 0
		}
		allowed := cap(s.free)
		if s.limit != nil {
			inUse := cap(s.free) - len(s.free) // including the one just taken
			allowed = s.limit() - (inUse - 1)
		}
		if allowed <= 0 {
			s.Release()
			if !Sleep(ctx, limitPoll) {
				return 0
			}
			continue
		}
		n := 1
		for n < allowed {
			select {
			case <-s.free:
				n++
			default:
				return n
			}
		}
		return n
	}
}

// Release frees one slot.
func (s *Slots) Release() { s.free <- struct{}{} }

// Sleep waits d or until ctx is done; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
