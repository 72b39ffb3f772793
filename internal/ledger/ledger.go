package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is where a command stands in the ledger.
type State string

// The states of a record. A record is created claimed and ends applied or
// dead-lettered; only a dead-lettered record is ever claimed again, and only
// by a replay or by another command for the same callout instance.
const (
	StateClaimed      State = "claimed"
	StateApplied      State = "applied"
	StateDeadLettered State = "dead_lettered"
)

// Record is the ledger's entry for one idempotency key.
type Record struct {
	State State `json:"state"`
	// Claimed: who works on it and until when. An empty Owner is a claim
	// its owner released (handed back to the broker): anyone may take it.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// The command that holds the key.
	Source   string `json:"source"`
	ID       string `json:"id"`
	BodyHash string `json:"body_hash,omitempty"`
	// Progress, kept across hand-backs so the retry budget and
	// Graphops-Attempts continue where they were.
	Attempts     int       `json:"attempts,omitempty"`
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	// Applied.
	AppliedAt      time.Time `json:"applied_at,omitzero"`
	GraphStatus    int       `json:"graph_status,omitempty"`
	GraphRequestID string    `json:"graph_request_id,omitempty"`
	Reconciled     bool      `json:"reconciled,omitempty"`
	// Dead-lettered.
	Reason string `json:"reason,omitempty"`
}

// Identity is what the ledger needs to know about a command.
type Identity struct {
	Source, ID string
	// Key is the idempotency key: see KeyOf.
	Key string
	// BodyHash tells JSON-equal bodies apart; two commands for one key with
	// different hashes conflict.
	BodyHash string
}

// SameCommand reports whether r was written for the command id.
func (r Record) SameCommand(id Identity) bool { return r.Source == id.Source && r.ID == id.ID }

// KeyOf derives a store key from the parts of an identity. Hashing keeps
// arbitrary ids inside the store's key alphabet and length.
func KeyOf(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return kind + "." + hex.EncodeToString(h.Sum(nil)[:20])
}

// Decision is what Begin found.
type Decision int

// Decisions of Begin.
const (
	// Claimed: the caller owns the key and must settle it (Complete,
	// DeadLetter or Release).
	Claimed Decision = iota
	// Duplicate: the command, or a JSON-equal one, is already settled.
	Duplicate
	// Conflict: another command for the key, with a different body, has
	// been applied or is being applied. Record names it.
	Conflict
	// Busy: another live owner holds the key until Record.LeaseUntil.
	Busy
)

func (d Decision) String() string {
	return [...]string{"claimed", "duplicate", "conflict", "busy"}[d]
}

// Config of a Ledger.
type Config struct {
	// Owner identifies this process in claims; unique per process.
	Owner string
	// Lease is how long a claim or a request lease lasts without renewal
	// (default 30s). A crashed owner's claim is taken over after it.
	Lease time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Observe, when set, sees every store operation (for metrics).
	Observe func(op, result string, d time.Duration)
}

// Ledger keeps claims and outcomes in a Store.
type Ledger struct {
	store Store
	cfg   Config
}

// New returns a Ledger on s.
func New(s Store, cfg Config) (*Ledger, error) {
	if cfg.Owner == "" {
		return nil, errors.New("ledger: an owner id is required")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Ledger{store: s, cfg: cfg}, nil
}

// Lease is the configured lease duration.
func (l *Ledger) Lease() time.Duration { return l.cfg.Lease }

// Claim is a key held by this process.
type Claim struct {
	l   *Ledger
	key string
	rev uint64
	// Record as it stands in the store.
	Record Record
	// Previous is the record this claim replaced when it took over from an
	// owner that died or handed the command back (nil for a fresh claim):
	// its Graph call may have happened, so a resume must be reconciled.
	Previous *Record
}

// Begin claims the key of id, or says why not. replay is true when the
// message is an operator's replay of a dead letter: it may reclaim the
// dead-lettered record of the same command.
func (l *Ledger) Begin(ctx context.Context, id Identity, replay bool) (Decision, *Claim, error) {
	now := l.cfg.Now()
	fresh := Record{State: StateClaimed, Owner: l.cfg.Owner, LeaseUntil: now.Add(l.cfg.Lease),
		Source: id.Source, ID: id.ID, BodyHash: id.BodyHash}
	for range 16 {
		rev, err := l.create(ctx, "claim", id.Key, fresh)
		if err == nil {
			return Claimed, &Claim{l: l, key: id.Key, rev: rev, Record: fresh}, nil
		}
		if !errors.Is(err, ErrExists) {
			return 0, nil, err
		}
		cur, rev, err := l.get(ctx, id.Key)
		if errors.Is(err, ErrNotFound) {
			continue // expired or deleted between the two calls
		}
		if err != nil {
			return 0, nil, err
		}
		d, take := decide(cur, id, replay, now)
		if !take {
			return d, &Claim{l: l, key: id.Key, rev: rev, Record: cur}, nil
		}
		next := fresh
		if cur.State == StateClaimed && cur.SameCommand(id) {
			// Keep the progress of the command's earlier deliveries.
			next.Attempts, next.FirstAttempt, next.LastAttempt = cur.Attempts, cur.FirstAttempt, cur.LastAttempt
		}
		nrev, err := l.update(ctx, "claim", id.Key, next, rev)
		if errors.Is(err, ErrConflict) {
			continue // somebody else moved first; look again
		}
		if err != nil {
			return 0, nil, err
		}
		prev := cur
		return Claimed, &Claim{l: l, key: id.Key, rev: nrev, Record: next, Previous: &prev}, nil
	}
	return 0, nil, fmt.Errorf("ledger: key %s: too much contention", id.Key)
}

// decide says what a record found at the key means for the command id, and
// whether the command should take the key over.
func decide(cur Record, id Identity, replay bool, now time.Time) (Decision, bool) {
	same := cur.SameCommand(id) || (cur.BodyHash != "" && cur.BodyHash == id.BodyHash)
	switch cur.State {
	case StateApplied:
		if same {
			return Duplicate, false
		}
		return Conflict, false
	case StateDeadLettered:
		if cur.SameCommand(id) && !replay {
			return Duplicate, false // a redelivery of what was dead-lettered
		}
		return Claimed, true // a replay, or another command for a key that never took effect
	default: // claimed
		if !same {
			return Conflict, false
		}
		// A live lease is never taken over, not even from this process:
		// two deliveries of one command may be in flight here at once.
		// A released claim has no lease, or one that runs until Graph has
		// had time to finish a call that got no answer (ReleaseUntil).
		if !now.Before(cur.LeaseUntil) {
			return Claimed, true
		}
		return Busy, false
	}
}

// Renew extends the claim's lease.
func (c *Claim) Renew(ctx context.Context) error {
	next := c.Record
	next.LeaseUntil = c.l.cfg.Now().Add(c.l.cfg.Lease)
	return c.write(ctx, "renew", next)
}

// Held reports whether the claim's lease is still comfortably valid: a
// Graph call must not start on a claim that another replica may take over
// during the call.
func (c *Claim) Held(margin time.Duration) bool {
	return c.l.cfg.Now().Add(margin).Before(c.Record.LeaseUntil)
}

// Attempted records a write call about to be made.
func (c *Claim) Attempted(at time.Time) {
	c.Record.Attempts++
	if c.Record.FirstAttempt.IsZero() {
		c.Record.FirstAttempt = at
	}
	c.Record.LastAttempt = at
}

// Release gives the claim up without an outcome (the message goes back to
// the broker), keeping the progress made so far.
func (c *Claim) Release(ctx context.Context) error {
	next := c.Record
	next.Owner, next.LeaseUntil = "", time.Time{}
	return c.write(ctx, "release", next)
}

// ReleaseUntil gives the claim up but keeps others off it until until: a
// call that got no answer may still be running at Graph, and reading the
// request before it finishes would see it waiting and resend.
func (c *Claim) ReleaseUntil(ctx context.Context, until time.Time) error {
	next := c.Record
	next.Owner, next.LeaseUntil = "", until
	return c.write(ctx, "release", next)
}

// Applied records that Graph accepted the command.
func (c *Claim) Applied(ctx context.Context, status int, graphRequestID string, reconciled bool) error {
	next := c.Record
	next.State, next.Owner, next.LeaseUntil = StateApplied, "", time.Time{}
	next.AppliedAt, next.GraphStatus, next.GraphRequestID, next.Reconciled = c.l.cfg.Now(), status, graphRequestID, reconciled
	return c.settle(ctx, "complete", next)
}

// DeadLettered records that the command went to the dead-letter store.
func (c *Claim) DeadLettered(ctx context.Context, reason string) error {
	next := c.Record
	next.State, next.Owner, next.LeaseUntil, next.Reason = StateDeadLettered, "", time.Time{}, reason
	return c.settle(ctx, "complete", next)
}

// settle writes a final state. If the claim was taken over meanwhile (this
// process was too slow and its lease ran out), the outcome still has to be
// recorded: an applied command must never look unapplied. It overwrites
// what it finds unless that is already final.
func (c *Claim) settle(ctx context.Context, op string, next Record) error {
	err := c.write(ctx, op, next)
	for i := 0; errors.Is(err, ErrConflict) && i < 8; i++ {
		cur, rev, gerr := c.l.get(ctx, c.key)
		switch {
		case errors.Is(gerr, ErrNotFound):
			rev, gerr = c.l.create(ctx, op, c.key, next)
			if gerr == nil {
				c.rev, c.Record = rev, next
				return nil
			}
			err = gerr
			continue
		case gerr != nil:
			return gerr
		case cur.State == StateApplied:
			return nil // already final; applied wins over anything
		case cur.State == StateDeadLettered && next.State == StateDeadLettered:
			return nil
		}
		c.rev = rev
		err = c.write(ctx, op, next)
	}
	return err
}

func (c *Claim) write(ctx context.Context, op string, next Record) error {
	rev, err := c.l.update(ctx, op, c.key, next, c.rev)
	if err != nil {
		return err
	}
	c.rev, c.Record = rev, next
	return nil
}

// RequestLease serializes Graph calls per request id across the fleet.
type RequestLease struct {
	l     *Ledger
	key   string
	rev   uint64
	until time.Time
}

type leaseRecord struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// AcquireRequest takes the lease of request id requestID, or returns
// ErrBusy (with the time the current holder's lease ends) while any lease on
// it is live — this process's own too: two of its jobs must not share it.
func (l *Ledger) AcquireRequest(ctx context.Context, requestID string) (*RequestLease, error) {
	key := KeyOf("lease", strings.ToLower(requestID))
	now := l.cfg.Now()
	mine := leaseRecord{Owner: l.cfg.Owner, Until: now.Add(l.cfg.Lease)}
	for range 8 {
		rev, err := l.create(ctx, "lease", key, mine)
		if err == nil {
			return &RequestLease{l: l, key: key, rev: rev, until: mine.Until}, nil
		}
		if !errors.Is(err, ErrExists) {
			return nil, err
		}
		var cur leaseRecord
		e, err := l.getRaw(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(e.Value, &cur); err != nil {
			return nil, fmt.Errorf("ledger: lease %s: %w", key, err)
		}
		if now.Before(cur.Until) { // also our own: two jobs of this process must not share it
			return nil, &BusyError{Until: cur.Until}
		}
		rev, err = l.update(ctx, "lease", key, mine, e.Revision)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &RequestLease{l: l, key: key, rev: rev, until: mine.Until}, nil
	}
	return nil, &BusyError{Until: now.Add(time.Second)}
}

// BusyError says a request lease is held by another owner.
type BusyError struct{ Until time.Time }

func (e *BusyError) Error() string {
	return "ledger: request busy until " + e.Until.UTC().Format(time.RFC3339Nano)
}

// ErrBusy matches a *BusyError with errors.Is.
var ErrBusy = errors.New("ledger: request busy")

// Is makes errors.Is(err, ErrBusy) true for a *BusyError.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Renew extends the request lease.
func (r *RequestLease) Renew(ctx context.Context) error {
	next := leaseRecord{Owner: r.l.cfg.Owner, Until: r.l.cfg.Now().Add(r.l.cfg.Lease)}
	rev, err := r.l.update(ctx, "lease", r.key, next, r.rev)
	if err != nil {
		return err
	}
	r.rev, r.until = rev, next.Until
	return nil
}

// Held reports whether the lease is still valid for at least margin.
func (r *RequestLease) Held(margin time.Duration) bool {
	return r.l.cfg.Now().Add(margin).Before(r.until)
}

// HoldUntil keeps the request lease, unrenewed, until until and forgets
// it: no other call for the request id starts before then (see
// Claim.ReleaseUntil).
func (r *RequestLease) HoldUntil(ctx context.Context, until time.Time) error {
	rev, err := r.l.update(ctx, "lease", r.key, leaseRecord{Owner: r.l.cfg.Owner, Until: until}, r.rev)
	if err != nil {
		return err
	}
	r.rev, r.until = rev, until
	return nil
}

// Release gives the request lease up. A lease already taken over by another
// owner is left alone.
func (r *RequestLease) Release(ctx context.Context) error {
	start := time.Now()
	err := r.l.store.Delete(ctx, r.key, r.rev)
	r.l.observe("release", err, start)
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

func (l *Ledger) get(ctx context.Context, key string) (Record, uint64, error) {
	e, err := l.getRaw(ctx, key)
	if err != nil {
		return Record{}, 0, err
	}
	var r Record
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return Record{}, 0, fmt.Errorf("ledger: record %s: %w", key, err)
	}
	return r, e.Revision, nil
}

func (l *Ledger) getRaw(ctx context.Context, key string) (Entry, error) {
	start := time.Now()
	e, err := l.store.Get(ctx, key)
	l.observe("read", err, start)
	return e, err
}

func (l *Ledger) create(ctx context.Context, op, key string, v any) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	rev, err := l.store.Create(ctx, key, b, 0)
	l.observe(op, err, start)
	return rev, err
}

func (l *Ledger) update(ctx context.Context, op, key string, v any, rev uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	nrev, err := l.store.Update(ctx, key, b, rev, 0)
	l.observe(op, err, start)
	return nrev, err
}

func (l *Ledger) observe(op string, err error, start time.Time) {
	if l.cfg.Observe == nil {
		return
	}
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrExists), errors.Is(err, ErrConflict):
		result = "conflict"
	case errors.Is(err, ErrNotFound):
		result = "not_found"
	default:
		result = "error"
	}
	l.cfg.Observe(op, result, time.Since(start))
}
