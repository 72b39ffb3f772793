package pacer_test

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/memstore"
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
	c  *fakeClock
	at time.Time
	ch chan time.Time
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

// memStore is the in-memory ledger.Store (ledger/memstore, which passes the
// store conformance suite) with two seams: fail, when set, is returned by
// every call; beforeUpdate runs before each Update, to let a test write in
// between a Get and its compare-and-swap. updates counts the Updates.
type memStore struct {
	*memstore.Store
	mu           sync.Mutex
	fail         error
	beforeUpdate func()
	updates      int
}

func newMemStore() *memStore { return &memStore{Store: memstore.New(0)} }

func (s *memStore) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail
}

func (s *memStore) Get(ctx context.Context, key string) (ledger.Entry, error) {
	if err := s.failure(); err != nil {
		return ledger.Entry{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s *memStore) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := s.failure(); err != nil {
		return 0, err
	}
	return s.Store.Create(ctx, key, value, ttl)
}

func (s *memStore) Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	if f := s.beforeUpdate; f != nil {
		f()
	}
	s.mu.Lock()
	s.updates++
	s.mu.Unlock()
	if err := s.failure(); err != nil {
		return 0, err
	}
	return s.Store.Update(ctx, key, value, rev, ttl)
}

func (s *memStore) put(key string, value []byte) { s.Store.Put(key, value) }

func (s *memStore) keys() []string { return s.Store.Keys() }

// mustNew is pacer.New for a configuration the test knows to be valid.
func mustNew(cfg pacer.Config) *pacer.Pacer {
	p, err := pacer.New(cfg)
	if err != nil {
		panic(err)
	}
	return p
}
