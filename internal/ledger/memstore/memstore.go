// Package memstore is a ledger.Store in this process's memory, for the
// tests of packages that use a store (the worker, the pacer's fleet). It
// passes the same conformance suite as the real stores (storetest), so a
// test on it sees their behaviour; it is not for production, where the
// ledger must outlive the process and be shared by replicas.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/graphops/worker/internal/ledger"
)

// DefaultRetention is the retention of New(0).
const DefaultRetention = time.Hour

// Store is a ledger.Store in memory. It is safe for concurrent use.
type Store struct {
	retention time.Duration

	mu   sync.Mutex
	keys map[string]entry
	rev  uint64 // the last revision handed out; revisions never repeat
	fail error
}

type entry struct {
	value   []byte
	rev     uint64
	expires time.Time
}

var _ ledger.Store = (*Store)(nil)

// New returns an empty store whose writes with ttl <= 0, or beyond
// retention, live for retention (DefaultRetention when retention <= 0).
func New(retention time.Duration) *Store {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Store{retention: retention, keys: map[string]entry{}}
}

// Fail makes every operation return err, as an unreachable store would,
// until Fail(nil).
func (s *Store) Fail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// Get returns the key's current value, or ledger.ErrNotFound.
func (s *Store) Get(_ context.Context, key string) (ledger.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok, err := s.lookup("get", key)
	if err != nil {
		return ledger.Entry{}, err
	}
	if !ok {
		return ledger.Entry{}, fmt.Errorf("memstore: get %s: %w", key, ledger.ErrNotFound)
	}
	return ledger.Entry{Value: clone(e.value), Revision: e.rev}, nil
}

// Create writes value only when key is absent.
func (s *Store) Create(_ context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok, err := s.lookup("create", key)
	if err != nil {
		return 0, err
	}
	if ok {
		return 0, fmt.Errorf("memstore: create %s: %w", key, ledger.ErrExists)
	}
	return s.put(key, value, ttl), nil
}

// Update writes value only when key's current revision is rev.
func (s *Store) Update(_ context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok, err := s.lookup("update", key)
	if err != nil {
		return 0, err
	}
	if !ok || e.rev != rev {
		return 0, fmt.Errorf("memstore: update %s at revision %d: %w", key, rev, ledger.ErrConflict)
	}
	return s.put(key, value, ttl), nil
}

// Delete removes key only when its current revision is rev.
func (s *Store) Delete(_ context.Context, key string, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok, err := s.lookup("delete", key)
	if err != nil || !ok {
		return err
	}
	if e.rev != rev {
		return fmt.Errorf("memstore: delete %s at revision %d (current %d): %w", key, rev, e.rev, ledger.ErrConflict)
	}
	delete(s.keys, key)
	return nil
}

// lookup checks the key and the injected failure, and returns the key's
// live entry, forgetting it once expired. s.mu is held.
func (s *Store) lookup(op, key string) (entry, bool, error) {
	if err := ledger.ValidKey(key); err != nil {
		return entry{}, false, fmt.Errorf("memstore: %w", err)
	}
	if s.fail != nil {
		return entry{}, false, fmt.Errorf("memstore: %s %s: %w", op, key, s.fail)
	}
	e, ok := s.keys[key]
	if ok && !time.Now().Before(e.expires) {
		delete(s.keys, key)
		return entry{}, false, nil
	}
	return e, ok, nil
}

// put writes the key with a new revision. s.mu is held.
func (s *Store) put(key string, value []byte, ttl time.Duration) uint64 {
	if ttl <= 0 || ttl > s.retention {
		ttl = s.retention
	}
	s.rev++
	s.keys[key] = entry{value: clone(value), rev: s.rev, expires: time.Now().Add(ttl)}
	return s.rev
}

// clone copies b so that neither the caller nor the store sees the other's
// later changes; an empty value stays non-nil, as the real stores return it.
func clone(b []byte) []byte { return append([]byte{}, b...) }

// Keys returns the live keys, sorted: what a test looks at after the code
// under test wrote.
func (s *Store) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]string, 0, len(s.keys))
	for k, e := range s.keys {
		if now.Before(e.expires) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Put writes value at key whatever is there, as another writer would.
func (s *Store) Put(key string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.keys[key] = entry{value: append([]byte(nil), value...), rev: s.rev, expires: time.Now().Add(s.retention)}
}
