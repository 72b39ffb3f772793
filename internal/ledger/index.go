package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The index of command ids: `worker history ID` finds a command by its id
// alone, but the ledger keeps records by request. Under the key of a
// command id (IndexKey) the store keeps the requests that have a command of
// that id (any source), written once when the ledger first sees the
// command: one more store write per command, none per retry, hand-back or
// redelivery. The entry lives for the store's retention from that write;
// the request record outlives it by at most the time the command took to
// settle, so an old command may be found by its request id only.

// IndexKey is the store key of the index entry of a command id.
func IndexKey(commandID string) string { return KeyOf("index", commandID) }

// indexEntry is the value at an IndexKey.
type indexEntry struct {
	Requests []string `json:"requests"`
}

// index adds id.Request to the index entry of id.ID, and returns the
// requests the entry listed before (none when it is new).
func (l *Ledger) index(ctx context.Context, id Identity) ([]string, error) {
	key := IndexKey(id.ID)
	b, err := json.Marshal(indexEntry{Requests: []string{id.Request}})
	if err != nil {
		return nil, fmt.Errorf("ledger: index %s: %w", key, err)
	}
	start := time.Now()
	_, err = l.store.Create(ctx, key, b, 0)
	l.observe("index", err, start)
	if !errors.Is(err, ErrExists) {
		return nil, err
	}
	// The id is known: a redelivery after a lost claim, or the same id
	// from another source or for another request (rare).
	var known []string
	err = l.retryCAS(ctx, key, func() error {
		known = nil
		start := time.Now()
		e, err := l.store.Get(ctx, key)
		l.observe("read", err, start)
		if errors.Is(err, ErrNotFound) {
			start := time.Now()
			_, err = l.store.Create(ctx, key, b, 0)
			l.observe("index", err, start)
			if errors.Is(err, ErrExists) {
				return errLostRace
			}
			return err
		}
		if err != nil {
			return err
		}
		var ie indexEntry
		if err := json.Unmarshal(e.Value, &ie); err != nil {
			return fmt.Errorf("ledger: index %s: %w", key, err)
		}
		known = ie.Requests
		if slices.Contains(ie.Requests, id.Request) {
			return nil
		}
		ie.Requests = append(slices.Clip(ie.Requests), id.Request)
		nb, err := json.Marshal(ie)
		if err != nil {
			return fmt.Errorf("ledger: index %s: %w", key, err)
		}
		start = time.Now()
		_, err = l.store.Update(ctx, key, nb, e.Revision, 0)
		l.observe("index", err, start)
		if errors.Is(err, ErrConflict) {
			return errLostRace
		}
		return err
	})
	return known, err
}

// Found is a command record the ledger keeps.
type Found struct {
	// Request is the Identity.Request of the command.
	Request string
	// Key is where the record sits in its request record: the command's
	// idempotency key, or the key of a duplicate or of a command another
	// one took over from.
	Key    string
	Record Record
}

// ByRequest returns every command record the ledger keeps for request (an
// Identity.Request), in no particular order; none when it knows nothing.
func ByRequest(ctx context.Context, s Store, request string) ([]Found, error) {
	d, ok, err := read[RequestRecord](ctx, s, RequestKey(request))
	if err != nil || !ok {
		return nil, err
	}
	out := make([]Found, 0, len(d.Commands))
	for k, r := range d.Commands {
		out = append(out, Found{Request: request, Key: k, Record: r})
	}
	return out, nil
}

// ByCommandID returns the records of every command whose id is id (from any
// source), through the index, in no particular order.
func ByCommandID(ctx context.Context, s Store, id string) ([]Found, error) {
	ie, ok, err := read[indexEntry](ctx, s, IndexKey(id))
	if err != nil || !ok {
		return nil, err
	}
	var out []Found
	for _, req := range ie.Requests {
		all, err := ByRequest(ctx, s, req)
		if err != nil {
			return nil, err
		}
		for _, f := range all {
			if f.Record.ID == id {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

// read reads and decodes the JSON value at key; ok is false when absent.
func read[T any](ctx context.Context, s Store, key string) (v T, ok bool, err error) {
	e, err := s.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return v, false, nil
	}
	if err != nil {
		return v, false, err
	}
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return v, false, fmt.Errorf("ledger: record %s: %w", key, err)
	}
	return v, true, nil
}

// RequestOf is the Identity.Request of a command of short type typ for the
// Graph request requestID (ids compare case-insensitively, as Graph's do).
func RequestOf(typ, requestID string) string { return typ + ":" + strings.ToLower(requestID) }

// SplitRequest splits an Identity.Request made by RequestOf into its parts.
func SplitRequest(request string) (typ, requestID string) {
	typ, requestID, _ = strings.Cut(request, ":")
	return typ, requestID
}
