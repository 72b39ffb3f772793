package consumer

import (
	"context"
	"time"
)

// Slots bounds the handlers in flight. A fetch loop asks for free slots
// before it pulls, and pulls only that many messages: a message pulled but
// not handled has its lease running for nothing.
type Slots chan struct{}

// NewSlots returns n free slots.
func NewSlots(n int) Slots {
	s := make(Slots, n)
	for range n {
		s <- struct{}{}
	}
	return s
}

// Acquire waits for one free slot, then takes every other free one too; it
// returns how many it took, 0 when ctx is done.
func (s Slots) Acquire(ctx context.Context) int {
	select {
	case <-s:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for {
		select {
		case <-s:
			n++
		default:
			return n
		}
	}
}

// Release frees one slot.
func (s Slots) Release() { s <- struct{}{} }

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
