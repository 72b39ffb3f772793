package dlq

import (
	"context"
	"fmt"
)

// Backend is a broker's dead-letter store as the operator's commands use
// it (docs/SPEC.md §8). List, show, replay and purge are written once, over it
// (CmdList, CmdShow, Replay, CmdReplay, CmdPurge); a backend knows only its
// broker: the JetStream dead-letter stream (Store.Backend) or a Service Bus
// entity's dead-letter sub-queue (servicebus.DeadLetters). A dead letter's
// ID is its Entry.Seq.
type Backend interface {
	// Name names the store in messages ("GRAPHOPS_DLQ").
	Name() string
	// List calls fn for each dead letter in ID order, up to the last one
	// present when it started, and stops at fn's first error.
	List(ctx context.Context, fn func(Entry) error) error
	// Get returns the dead letter id, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id uint64) (Entry, error)
	// Take calls fn for each dead letter of ids that it holds (a Service
	// Bus dead letter is received and locked first) and removes it when fn
	// returns nil. It returns why each id it did not remove was not:
	// fn's error, ErrNotFound, or an error wrapping ErrDeleteFailed.
	Take(ctx context.Context, ids []uint64, fn func(Entry) error) map[uint64]error
	// Republish sends the dead letter's original message (the payload byte
	// for byte, its original headers or properties, with Graphops-Replay
	// set to its ID) back to where it came from, so that replaying the
	// same dead letter again sends nothing new where the broker detects
	// duplicates; it returns where it went. A Service Bus backend can
	// republish only a dead letter it holds, inside Take.
	Republish(ctx context.Context, e Entry) (string, error)
}

// Replay republishes each dead letter of ids and removes it once the
// broker has it (docs/SPEC.md §8): a dead letter that fails is kept (or, when only
// its removal failed, is safe to replay again) and the others are still
// replayed. It returns the IDs replayed and, when any failed, a
// *ReplayError. An ID given twice is replayed once. done, when set, is
// called after each dead letter replayed.
func Replay(ctx context.Context, b Backend, ids []uint64, done func(id uint64, where string)) ([]uint64, error) {
	seen := map[uint64]bool{}
	var unique []uint64
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			unique = append(unique, id)
		}
	}
	where := map[uint64]string{}
	failed := b.Take(ctx, unique, func(e Entry) error {
		to, err := b.Republish(ctx, e)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPublishFailed, err)
		}
		where[e.Seq] = to
		return nil
	})
	var replayed []uint64
	for _, id := range unique {
		if failed[id] != nil {
			continue
		}
		replayed = append(replayed, id)
		if done != nil {
			done(id, where[id])
		}
	}
	if len(failed) > 0 {
		return replayed, &ReplayError{Failed: failed}
	}
	return replayed, nil
}

// ReplayAll replays every dead letter present when it starts; those stored
// while it runs (a replayed command failing again, say) are left for later.
func ReplayAll(ctx context.Context, b Backend, done func(id uint64, where string)) ([]uint64, error) {
	ids, err := present(ctx, b)
	if err != nil {
		return nil, err
	}
	return Replay(ctx, b, ids, done)
}

// Purge removes every dead letter present when it starts and returns how
// many it removed; those it could not remove are named in its error.
func Purge(ctx context.Context, b Backend) (uint64, error) {
	ids, err := present(ctx, b)
	if err != nil {
		return 0, err
	}
	return purge(ctx, b, ids)
}

func purge(ctx context.Context, b Backend, ids []uint64) (uint64, error) {
	failed := b.Take(ctx, ids, func(Entry) error { return nil })
	removed := uint64(len(ids) - len(failed))
	if len(failed) > 0 {
		return removed, fmt.Errorf("%d dead letters not purged: %w", len(failed), &ReplayError{Failed: failed})
	}
	return removed, nil
}

// present lists the IDs of the dead letters there now.
func present(ctx context.Context, b Backend) ([]uint64, error) {
	var ids []uint64
	err := b.List(ctx, func(e Entry) error {
		ids = append(ids, e.Seq)
		return nil
	})
	return ids, err
}
