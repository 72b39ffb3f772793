// Package ledger records the outcome of every command so that each one takes
// effect on Graph at most once and at least once (docs/SPEC.md §3).
package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors a Store returns; callers test them with errors.Is.
var (
	ErrNotFound = errors.New("ledger: key not found")
	ErrExists   = errors.New("ledger: key exists")
	ErrConflict = errors.New("ledger: revision mismatch")
)

// Entry is a stored value with its revision, the token for compare-and-swap.
type Entry struct {
	Value    []byte
	Revision uint64
}

// Store is a key-value store with create-if-absent and revision
// compare-and-swap. Keys are made of [a-z0-9._-] only, at most 200 bytes.
// Every write (re)starts the key's time to live: a key not written for ttl
// disappears (ttl <= 0 means the store's configured retention).
type Store interface {
	// Get returns the current value, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Create writes value only when key is absent; ErrExists otherwise.
	Create(ctx context.Context, key string, value []byte, ttl time.Duration) (revision uint64, err error)
	// Update writes value only when key's current revision is rev;
	// ErrConflict otherwise (also when the key is absent).
	Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (revision uint64, err error)
	// Delete removes key only when its current revision is rev;
	// ErrConflict when the revision differs, nil when the key is absent.
	Delete(ctx context.Context, key string, rev uint64) error
}

// MaxKeyLen is the longest key of the Store contract.
const MaxKeyLen = 200

// ValidKey checks the Store key contract: 1 to 200 bytes of [a-z0-9._-];
// and, because a NATS subject cannot have empty tokens, no leading or
// trailing dot and no two dots in a row. Every store applies the same rule,
// so that the stores accept the same keys.
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("invalid key %q: length %d not in 1..%d", truncate(key), len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("invalid key %q: byte %#x at %d is not one of [a-z0-9._-]", truncate(key), c, i)
		}
		if c == '.' && (i == 0 || i == len(key)-1 || key[i-1] == '.') {
			return fmt.Errorf("invalid key %q: dots must separate non-empty parts", truncate(key))
		}
	}
	return nil
}

// truncate shortens a key for an error message.
func truncate(key string) string {
	if len(key) > 64 {
		return key[:64] + "…"
	}
	return key
}
