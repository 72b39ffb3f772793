package pacer_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/pacer"
)

// memFleet is an in-memory Fleet. Each Update works on a copy, as a
// store-backed fleet does, so nothing is shared by accident.
type memFleet struct {
	mu     sync.Mutex
	states map[string]pacer.FleetState
	// fail, when set, is returned by Update instead of touching the state.
	fail error
	// block, when set, makes Update wait for it or for ctx.
	block chan struct{}
}

func newMemFleet() *memFleet { return &memFleet{states: map[string]pacer.FleetState{}} }

func clone(st pacer.FleetState) pacer.FleetState {
	st.Members = maps.Clone(st.Members)
	return st
}

func (f *memFleet) Update(ctx context.Context, op string, modify func(*pacer.FleetState)) (pacer.FleetState, error) {
	f.mu.Lock()
	block, fail := f.block, f.fail
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return pacer.FleetState{}, ctx.Err()
		}
	}
	if fail != nil {
		return pacer.FleetState{}, fail
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := clone(f.states[op])
	modify(&st)
	f.states[op] = clone(st)
	return st, nil
}

// state is the stored state of op.
func (f *memFleet) state(op string) pacer.FleetState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clone(f.states[op])
}

// fakeClock is a Clock whose time moves only when the test says.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	added  chan struct{} // receives (without blocking) when a timer is made
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), added: make(chan struct{}, 1)}
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	ch    chan time.Time
	fired bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) pacer.Timer {
	c.mu.Lock()
	t := &fakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	select {
	case c.added <- struct{}{}:
	default:
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// pending is the number of timers not yet fired nor stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Advance moves the time by d and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []*fakeTimer
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
	c.mu.Unlock()
}

// memStore is an in-memory ledger.Store (ttl ignored). failGet, when set,
// is returned by every call; beforeUpdate runs before each Update, to let a
// test write in between a Get and its compare-and-swap.
type memStore struct {
	mu           sync.Mutex
	vals         map[string]ledger.Entry
	rev          uint64
	fail         error
	beforeUpdate func()
	updates      int
}

func newMemStore() *memStore { return &memStore{vals: map[string]ledger.Entry{}} }

func (s *memStore) Get(_ context.Context, key string) (ledger.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return ledger.Entry{}, s.fail
	}
	e, ok := s.vals[key]
	if !ok {
		return ledger.Entry{}, ledger.ErrNotFound
	}
	return e, nil
}

func (s *memStore) Create(_ context.Context, key string, value []byte, _ time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	if _, ok := s.vals[key]; ok {
		return 0, ledger.ErrExists
	}
	s.rev++
	s.vals[key] = ledger.Entry{Value: append([]byte(nil), value...), Revision: s.rev}
	return s.rev, nil
}

func (s *memStore) Update(_ context.Context, key string, value []byte, rev uint64, _ time.Duration) (uint64, error) {
	if f := s.beforeUpdate; f != nil {
		f()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates++
	if s.fail != nil {
		return 0, s.fail
	}
	if e, ok := s.vals[key]; !ok || e.Revision != rev {
		return 0, ledger.ErrConflict
	}
	s.rev++
	s.vals[key] = ledger.Entry{Value: append([]byte(nil), value...), Revision: s.rev}
	return s.rev, nil
}

func (s *memStore) Delete(_ context.Context, key string, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.vals[key]; ok && e.Revision != rev {
		return ledger.ErrConflict
	}
	delete(s.vals, key)
	return nil
}

func (s *memStore) put(key string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.vals[key] = ledger.Entry{Value: value, Revision: s.rev}
}

func (s *memStore) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.vals))
}

// mustNew is pacer.New for a configuration the test knows to be valid.
func mustNew(cfg pacer.Config) *pacer.Pacer {
	p, err := pacer.New(cfg)
	if err != nil {
		panic(err)
	}
	return p
}
