package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/graphops/worker/internal/retry"
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
	// StateDuplicate is the record of a command that repeats another,
	// applied, one (a JSON-equal resume of the same callout instance under
	// another id): it was acknowledged without a call. It is kept for
	// history only and never holds a key.
	StateDuplicate State = "duplicate"
)

// MaxHistory bounds the attempts a record lists one by one; older ones are
// summarised in Record.Earlier. The applying call is always among the
// listed: it is the last write call of a command (a reconciling read comes
// before any further write, docs/SPEC.md §3), and the list keeps the newest.
const MaxHistory = 8

// Attempt is one write call to Graph.
type Attempt struct {
	At              time.Time `json:"at"`
	ClientRequestID string    `json:"client_request_id,omitempty"`
	// GraphStatus is 0 when no answer came (or none yet: the call is in
	// flight, or its process died during it).
	GraphStatus    int    `json:"graph_status,omitempty"`
	GraphCode      string `json:"graph_code,omitempty"`
	GraphRequestID string `json:"graph_request_id,omitempty"`
}

// Answer is what came back from a write call.
type Answer struct {
	ClientRequestID string
	GraphStatus     int // 0: no answer
	GraphCode       string
	GraphRequestID  string
}

// Earlier summarises the attempts dropped from a record's history.
type Earlier struct {
	Count int       `json:"count"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// ByStatus counts them by Graph status ("0" for no answer).
	ByStatus map[string]int `json:"by_status,omitempty"`
}

// Record is the ledger's entry for one idempotency key.
type Record struct {
	State State `json:"state"`
	// Claimed: who works on it and until when. An empty Owner is a claim
	// its owner released (handed back to the broker): anyone may take it
	// once LeaseUntil (zero, or the end of a settle time) has passed.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Token tells two claims of one owner apart (a process may take over
	// its own expired claim from another of its jobs).
	Token string `json:"token,omitempty"`
	// The command that holds the key, and its request id as it spelled it
	// (empty in records written before it was kept).
	Source    string `json:"source"`
	ID        string `json:"id"`
	RequestID string `json:"request_id,omitempty"`
	BodyHash  string `json:"body_hash,omitempty"`
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
	// Dead-lettered: the reason code and its description, as in the dead
	// letter and the outcome event (a redelivery publishes the same).
	Reason      string `json:"reason,omitempty"`
	Description string `json:"description,omitempty"`
	// SettledAt is when the record became applied or dead-lettered; it
	// is forgotten a retention after that.
	SettledAt time.Time `json:"settled_at,omitzero"`

	// History, for `worker history` (docs/SPEC.md §8). Since is when the ledger
	// first saw the command; History lists its last MaxHistory write
	// calls, oldest first, Earlier summarises the ones before; Replays
	// counts the operator's replays from the dead-letter store.
	Since       time.Time `json:"since,omitzero"`
	History     []Attempt `json:"history,omitempty"`
	Earlier     *Earlier  `json:"earlier,omitempty"`
	Replays     int       `json:"replays,omitempty"`
	DuplicateOf string    `json:"duplicate_of,omitempty"`
	// Indexed: the command is in the index of command ids (IndexKey).
	Indexed bool `json:"indexed,omitempty"`
}

// heldByAnother returns the live claim of a command other than key that
// holds the request at now, if any. It holds the request even when it is
// this process's: two of its jobs must not call for one request at once.
func (d RequestRecord) heldByAnother(key string, now time.Time) (Record, bool) {
	for k, other := range d.Commands {
		if k != key && other.holds(now) {
			return other, true
		}
	}
	return Record{}, false
}

// holds reports whether the record keeps its request closed at now: a
// claim whose lease (or settle time) has not run out.
func (r Record) holds(now time.Time) bool {
	return r.State == StateClaimed && now.Before(r.LeaseUntil)
}

// RequestRecord is what the store keeps under one request key: the records
// of every command for that Graph request id, by idempotency key. The
// request is busy while one of them holds a live claim: that is the
// per-request-id lease, so claiming a command and locking its request are
// one write, and recording its outcome frees the request in the same write.
type RequestRecord struct {
	// Request is the Identity.Request of its commands, for history.
	Request  string            `json:"request,omitempty"`
	Commands map[string]Record `json:"commands"`
}

// Identity is what the ledger needs to know about a command.
type Identity struct {
	Source, ID string
	// Request names the Graph request the command acts on: commands for one
	// request are serialized across the fleet (RequestOf: ids in lower case).
	Request string
	// RequestID is the command's request id as it spelled it, for
	// `worker history` (docs/SPEC.md §8).
	RequestID string
	// Key is the idempotency key within the request: see KeyOf.
	Key string
	// BodyHash tells JSON-equal bodies apart; two commands for one key with
	// different hashes conflict.
	BodyHash string
}

// LastCall is the last write call r's history keeps; false when none.
func (r Record) LastCall() (Attempt, bool) {
	if len(r.History) == 0 {
		return Attempt{}, false
	}
	return r.History[len(r.History)-1], true
}

// SameCommand reports whether r was written for the command id.
func (r Record) SameCommand(id Identity) bool { return r.Source == id.Source && r.ID == id.ID }

// KeyOf derives a store key from the parts of an identity. Hashing keeps
// arbitrary ids inside the store's key alphabet and length.
func KeyOf(kind string, parts ...string) string {
	b := make([]byte, 0, 256)
	for _, p := range parts {
		b = append(strconv.AppendInt(b, int64(len(p)), 10), ':')
		b = append(append(b, p...), ';')
	}
	sum := sha256.Sum256(b)
	return kind + "." + hex.EncodeToString(sum[:20])
}

// RequestKey is the store key of a request's record.
func RequestKey(request string) string { return KeyOf("request", request) }

// Decision is what Begin found.
type Decision int

// Decisions of Begin.
const (
	// Claimed: the caller owns the key, and with it the request, and must
	// settle it (Applied, DeadLettered or Release).
	Claimed Decision = iota
	// Duplicate: the command, or a JSON-equal one, is already settled.
	Duplicate
	// Conflict: another command for the key, with a different body, has
	// been applied or is being applied. Record names it.
	Conflict
	// Busy: a live claim holds the key or the request until
	// Record.LeaseUntil; Record is that claim.
	Busy
)

func (d Decision) String() string {
	return [...]string{"claimed", "duplicate", "conflict", "busy"}[d]
}

// Config of a Ledger.
type Config struct {
	// Owner identifies this process in claims; unique per process.
	Owner string
	// Lease is how long a claim lasts without renewal (default 30s). A
	// crashed owner's claim is taken over after it.
	Lease time.Duration
	// Retention is how long a settled record is remembered (default 7
	// days; keep it equal to the store's).
	Retention time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Observe, when set, sees every store operation (for metrics).
	Observe func(op, result string, d time.Duration)
}

// maxCommandsPerRequest bounds a request record: beyond it the oldest
// settled records are forgotten early.
const maxCommandsPerRequest = 256

// Ledger keeps claims and outcomes in a Store.
type Ledger struct {
	store  Store
	cfg    Config
	claims atomic.Uint64
}

// New returns a Ledger on s.
func New(s Store, cfg Config) (*Ledger, error) {
	if cfg.Owner == "" {
		return nil, errors.New("ledger: an owner id is required")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Ledger{store: s, cfg: cfg}, nil
}

// Claim is a key held by this process, and with it its request.
type Claim struct {
	l       *Ledger
	key     string // the idempotency key within the request
	reqKey  string // the store key of the request record
	token   string
	rev     uint64 // of the request record; 0 when it is not in the store
	doc     RequestRecord
	held    time.Time // the lease as last written
	settled bool
	// Record as this process knows it (Attempted updates it before the
	// next write).
	Record Record
	// Previous is the record this claim replaced when it took over from an
	// owner that died or handed the command back (nil for a fresh claim):
	// its Graph call may have happened, so a resume must be reconciled.
	Previous *Record
}

// Begin claims the key of id and locks its request, or says why not.
// replay is true when the message is an operator's replay of a dead letter:
// it may reclaim the dead-lettered record of the same command.
//
// A command the ledger has not seen before is also written to the index of
// command ids (ByCommandID): one more write, after the claim.
func (l *Ledger) Begin(ctx context.Context, id Identity, replay bool) (Decision, *Claim, error) {
	now := l.cfg.Now()
	fresh := Record{State: StateClaimed, Owner: l.cfg.Owner, LeaseUntil: now.Add(l.cfg.Lease),
		Token:  strconv.FormatUint(l.claims.Add(1), 36),
		Source: id.Source, ID: id.ID, RequestID: id.RequestID, BodyHash: id.BodyHash, Since: now}
	c := &Claim{l: l, key: id.Key, reqKey: RequestKey(id.Request), token: fresh.Token}
	// Most requests have no record yet: try to create it before reading.
	doc := RequestRecord{Request: id.Request, Commands: map[string]Record{id.Key: fresh}}
	rev, err := l.create(ctx, "claim", c.reqKey, doc)
	if err == nil {
		c.rev, c.doc, c.Record, c.held = rev, doc, fresh, fresh.LeaseUntil
		return l.indexed(ctx, c, id, replay)
	}
	if !errors.Is(err, ErrExists) {
		return 0, nil, err
	}
	var (
		decision Decision
		found    *Claim // what Begin answers when it does not claim
		isNew    bool   // the command is not in the index yet
	)
	err = l.retryCAS(ctx, c.reqKey, func() error {
		doc, rev, err := l.load(ctx, c.reqKey)
		if err != nil {
			return err
		}
		next := fresh
		var prev *Record
		ndoc := doc
		isNew = true
		if cur, ok := doc.Commands[id.Key]; ok {
			d, take := decide(cur, id, replay, now)
			if !take {
				decision, found = d, &Claim{l: l, Record: cur}
				isNew = false
				switch {
				case d == Duplicate && !cur.SameCommand(id):
					return l.noteAside(ctx, c.reqKey, doc, rev, id, asideDup, Record{State: StateDuplicate, DuplicateOf: cur.ID}, replay, now)
				case d == Conflict:
					// The caller dead-letters it, naming cur.
					return l.noteAside(ctx, c.reqKey, doc, rev, id, asideConflict, Record{State: StateDeadLettered, Reason: ReasonConflict}, replay, now)
				}
				return nil
			}
			switch {
			case cur.SameCommand(id):
				// The same command again: its history goes on.
				isNew = !cur.Indexed
				next.History, next.Earlier, next.Replays, next.Indexed = cur.History, cur.Earlier, cur.Replays, cur.Indexed
				if !cur.Since.IsZero() {
					next.Since = cur.Since
				}
				if cur.State == StateClaimed {
					// Keep the progress of the command's earlier deliveries.
					next.Attempts, next.FirstAttempt, next.LastAttempt = cur.Attempts, cur.FirstAttempt, cur.LastAttempt
				}
				if cur.State == StateDeadLettered && replay {
					next.Replays++
				}
			case cur.State != StateClaimed:
				// Another command takes over a key that never took effect:
				// the earlier one moves aside, for history.
				ndoc = doc.with(KeyOf(asideWas, cur.Source, cur.ID), cur, now, l.cfg.Retention)
			}
			prev = &cur
		}
		if other, ok := doc.heldByAnother(id.Key, now); ok {
			decision, found, isNew = Busy, &Claim{l: l, Record: other}, false
			return nil
		}
		ndoc = ndoc.with(id.Key, next, now, l.cfg.Retention)
		ndoc.Request = id.Request
		if rev == 0 {
			rev, err = l.create(ctx, "claim", c.reqKey, ndoc)
		} else {
			rev, err = l.update(ctx, "claim", c.reqKey, ndoc, rev)
		}
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
			return errLostRace // somebody else moved first; look again
		}
		if err != nil {
			return err
		}
		decision, found = Claimed, nil
		c.rev, c.doc, c.Record, c.held, c.Previous = rev, ndoc, next, next.LeaseUntil, prev
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if decision != Claimed {
		return decision, found, nil
	}
	if !isNew {
		return Claimed, c, nil
	}
	return l.indexed(ctx, c, id, replay)
}

// indexed writes the index entry of a command claimed by c that is not in
// the index yet; the claim's next write records that it is (Record.Indexed).
// A claim whose command cannot be indexed is given up, so that the command
// comes back and is indexed then.
//
// The index also tells when the command's source+id is known already at
// another key (docs/SPEC.md §3: the same source+id again is a duplicate,
// whatever it asks): a producer that reused an id for another callout
// instance or request. The claim is then undone and Begin answers
// Duplicate of the earlier command, or Busy while that one is not settled.
// Only a command not in the index yet is checked (most redeliveries are),
// and not an operator's replay.
func (l *Ledger) indexed(ctx context.Context, c *Claim, id Identity, replay bool) (Decision, *Claim, error) {
	known, err := l.index(ctx, id)
	if err == nil && len(known) > 0 && !replay {
		var earlier Record
		var found bool
		if earlier, found, err = l.elsewhere(ctx, id, known); err == nil && found {
			d, got, err := l.undo(ctx, c, id, earlier)
			if err != nil {
				_ = c.Release(ctx) // the command comes back and is checked again
			}
			return d, got, err
		}
	}
	if err != nil {
		_ = c.Release(ctx) // if this fails too, the lease runs out
		return 0, nil, err
	}
	c.Record.Indexed = true
	return Claimed, c, nil
}

// elsewhere finds a command of id's source and id that holds another key
// than id.Key of id.Request in one of the requests the index lists for id.
func (l *Ledger) elsewhere(ctx context.Context, id Identity, requests []string) (Record, bool, error) {
	for _, req := range requests {
		doc, _, err := l.load(ctx, RequestKey(req))
		if err != nil {
			return Record{}, false, err
		}
		for k, r := range doc.Commands {
			if !aside(k) && (req != id.Request || k != id.Key) && r.SameCommand(id) {
				return r, true, nil
			}
		}
	}
	return Record{}, false, nil
}

// undo gives back the key c claimed for a command whose source+id holds
// another key (earlier): the key goes, and once earlier is settled the
// command is noted aside as its duplicate, for history.
func (l *Ledger) undo(ctx context.Context, c *Claim, id Identity, earlier Record) (Decision, *Claim, error) {
	settled := earlier.State != StateClaimed
	err := l.retryCAS(ctx, c.reqKey, func() error {
		doc, rev, err := l.load(ctx, c.reqKey)
		if err != nil {
			return err
		}
		if cur, ok := doc.Commands[c.key]; !ok || cur.Token != c.token {
			return nil // not ours any more
		}
		now := l.cfg.Now()
		ndoc := RequestRecord{Request: doc.Request, Commands: maps.Clone(doc.Commands)}
		delete(ndoc.Commands, c.key)
		if settled {
			ndoc = ndoc.with(KeyOf(asideDup, id.Source, id.ID),
				notedAside(id, Record{State: StateDuplicate, DuplicateOf: earlier.ID}, now), now, l.cfg.Retention)
		}
		_, err = l.update(ctx, "claim", c.reqKey, ndoc, rev)
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
			return errLostRace
		}
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	if !settled {
		return Busy, &Claim{l: l, Record: earlier}, nil
	}
	return Duplicate, &Claim{l: l, Record: earlier}, nil
}

// The kinds of the keys of records kept aside in a request record (KeyOf
// kind, source, id): they hold no key of a command, only its history.
const (
	asideDup      = "dup"      // a duplicate of another command
	asideConflict = "conflict" // a conflicting decision, dead-lettered
	asideWas      = "was"      // a command another one took its key over from
	asideRefused  = "refused"  // refused by validation, dead-lettered
)

// aside reports whether key is the key of a record kept aside.
func aside(key string) bool {
	kind, _, _ := strings.Cut(key, ".")
	switch kind {
	case asideDup, asideConflict, asideWas, asideRefused:
		return true
	}
	return false
}

// ReasonConflict is the dead-letter reason of a command that competes
// with another one for its key (dlq.ReasonConflict).
const ReasonConflict = "conflict"

// noteAside records, once, a command that did not get its key because of
// another command: a duplicate of an applied one, or a conflicting decision
// (dead-lettered). It holds no key and is kept for `worker history` only, at
// a key of its own in the request record (kind.<hash of the command>). r
// gives its state and why; the rest comes from id. A replay (replay) of one
// noted already counts in its Replays. The index entry comes first: an entry without its
// record is harmless (lookups match records), a record missing from the
// index would not be found.
func (l *Ledger) noteAside(ctx context.Context, reqKey string, doc RequestRecord, rev uint64,
	id Identity, kind string, r Record, replay bool, now time.Time) error {
	key := KeyOf(kind, id.Source, id.ID)
	if cur, ok := doc.Commands[key]; ok {
		if !replay {
			return nil // a redelivery: noted already
		}
		// An operator's replay of its dead letter, decided the same way.
		cur.Replays++
		r = cur
	} else {
		if _, err := l.index(ctx, id); err != nil {
			return err
		}
		r = notedAside(id, r, now)
	}
	ndoc := doc.with(key, r, now, l.cfg.Retention)
	var err error
	if rev == 0 {
		ndoc.Request = id.Request
		_, err = l.create(ctx, "claim", reqKey, ndoc)
	} else {
		_, err = l.update(ctx, "claim", reqKey, ndoc, rev)
	}
	if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
		return errLostRace
	}
	return err
}

// notedAside is r, a record kept aside, with the command of id, noted now
// (and indexed: noteAside writes the index entry first).
func notedAside(id Identity, r Record, now time.Time) Record {
	r.Source, r.ID, r.RequestID, r.BodyHash, r.Since, r.SettledAt, r.Indexed = id.Source, id.ID, id.RequestID, id.BodyHash, now, now, true
	return r
}

// Refused records, once, a command dead-lettered before it could be
// claimed (docs/SPEC.md §2: validation_failed) whose id and request id
// could be read, so that `worker history` knows it. Like a conflict it
// holds no key; an operator's replay (replay) counts in its Replays.
func (l *Ledger) Refused(ctx context.Context, id Identity, reason, description string, replay bool) error {
	reqKey := RequestKey(id.Request)
	return l.retryCAS(ctx, reqKey, func() error {
		doc, rev, err := l.load(ctx, reqKey)
		if err != nil {
			return err
		}
		return l.noteAside(ctx, reqKey, doc, rev, id, asideRefused,
			Record{State: StateDeadLettered, Reason: reason, Description: description}, replay, l.cfg.Now())
	})
}

// errLostRace is a compare-and-swap that another writer won: read again and
// retry.
var errLostRace = errors.New("ledger: lost a compare-and-swap race")

// maxCASAttempts bounds the writes of one operation that lose the race
// for a request record to other writers.
const maxCASAttempts = 16

// retryCAS runs f again, at once, as long as it loses the race for the
// request record reqKey, at most maxCASAttempts times. Each try reads the
// record afresh, so waiting would only let more writers in first.
func (l *Ledger) retryCAS(ctx context.Context, reqKey string, f func() error) error {
	err := retry.Do(ctx, retry.Policy{Tries: maxCASAttempts}, func(context.Context) error {
		err := f()
		if err == nil || errors.Is(err, errLostRace) {
			return err
		}
		return backoff.Permanent(err)
	})
	if errors.Is(err, errLostRace) {
		return fmt.Errorf("ledger: request %s: too much contention", reqKey)
	}
	return err
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
		if cur.holds(now) {
			return Busy, false
		}
		return Claimed, true
	}
}

// with returns a copy of d with r at key, and without the settled records
// that are older than the retention (or the oldest, beyond the bound).
func (d RequestRecord) with(key string, r Record, now time.Time, retention time.Duration) RequestRecord {
	out := make(map[string]Record, len(d.Commands)+1)
	for k, v := range d.Commands {
		if v.State != StateClaimed && now.Sub(v.SettledAt) > retention {
			continue
		}
		out[k] = v
	}
	out[key] = r
	if len(out) > maxCommandsPerRequest {
		settled := slices.DeleteFunc(slices.Collect(maps.Keys(out)), func(k string) bool {
			return k == key || out[k].State == StateClaimed
		})
		slices.SortFunc(settled, func(a, b string) int { return out[a].SettledAt.Compare(out[b].SettledAt) })
		for _, k := range settled[:min(len(settled), len(out)-maxCommandsPerRequest)] {
			delete(out, k)
		}
	}
	return RequestRecord{Request: d.Request, Commands: out}
}

// Renew extends the claim's lease, and writes the progress noted by
// Attempted. ErrConflict means the claim was taken over.
func (c *Claim) Renew(ctx context.Context) error {
	next := c.Record
	next.LeaseUntil = c.l.cfg.Now().Add(c.l.cfg.Lease)
	return c.mutate(ctx, "renew", next, c.mine)
}

// Held reports whether the claim's lease is still comfortably valid: a
// Graph call must not start on a claim that another replica may take over
// during the call.
func (c *Claim) Held(margin time.Duration) bool {
	return c.l.cfg.Now().Add(margin).Before(c.held)
}

// Attempted notes a write call about to be made; the next write of the
// claim records it.
func (c *Claim) Attempted(at time.Time) {
	r := &c.Record
	r.Attempts++
	if r.FirstAttempt.IsZero() {
		r.FirstAttempt = at
	}
	r.LastAttempt = at
	// A new slice each time: the record's history is shared with the copy
	// the claim last wrote.
	h := append(slices.Clone(r.History), Attempt{At: at})
	if n := len(h) - MaxHistory; n > 0 {
		e := Earlier{}
		if r.Earlier != nil {
			e = *r.Earlier
			e.ByStatus = maps.Clone(e.ByStatus)
		}
		for _, a := range h[:n] {
			if e.Count == 0 {
				e.First = a.At
			}
			e.Count++
			e.Last = a.At
			if e.ByStatus == nil {
				e.ByStatus = map[string]int{}
			}
			e.ByStatus[strconv.Itoa(a.GraphStatus)]++
		}
		r.Earlier, h = &e, h[n:]
	}
	r.History = h
}

// Answered notes what came back from the write call last noted by
// Attempted; the next write of the claim records it.
func (c *Claim) Answered(a Answer) {
	n := len(c.Record.History)
	if n == 0 {
		return
	}
	h := slices.Clone(c.Record.History)
	h[n-1].ClientRequestID, h[n-1].GraphStatus, h[n-1].GraphCode, h[n-1].GraphRequestID =
		a.ClientRequestID, a.GraphStatus, a.GraphCode, a.GraphRequestID
	c.Record.History = h
}

// Release gives the claim up without an outcome (the message goes back to
// the broker), keeping the progress made so far. The request is free again.
func (c *Claim) Release(ctx context.Context) error {
	return c.ReleaseUntil(ctx, time.Time{})
}

// ReleaseUntil gives the claim up but keeps others off it, and off its
// request, until until: a call that got no answer may still be running at
// Graph, and reading the request before it finishes would see it waiting
// and resend.
func (c *Claim) ReleaseUntil(ctx context.Context, until time.Time) error {
	if c.settled {
		return nil
	}
	next := c.Record
	next.Owner, next.LeaseUntil = "", until
	return c.mutate(ctx, "release", next, c.mine)
}

// Applied records that Graph accepted the command, which frees its request.
func (c *Claim) Applied(ctx context.Context, status int, graphRequestID string, reconciled bool) error {
	now := c.l.cfg.Now()
	next := c.Record
	next.State, next.Owner, next.LeaseUntil, next.SettledAt = StateApplied, "", time.Time{}, now
	next.AppliedAt, next.GraphStatus, next.GraphRequestID, next.Reconciled = now, status, graphRequestID, reconciled
	return c.settle(ctx, next)
}

// DeadLettered records that the command went to the dead-letter store.
func (c *Claim) DeadLettered(ctx context.Context, reason, description string) error {
	next := c.Record
	next.State, next.Owner, next.LeaseUntil, next.Reason, next.Description, next.SettledAt =
		StateDeadLettered, "", time.Time{}, reason, description, c.l.cfg.Now()
	return c.settle(ctx, next)
}

// settle writes a final state. If the claim was taken over meanwhile (this
// process was too slow and its lease ran out), the outcome still has to be
// recorded: an applied command must never look unapplied. It overwrites
// what it finds unless that is already final.
func (c *Claim) settle(ctx context.Context, next Record) error {
	err := c.mutate(ctx, "complete", next, func(cur Record, ok bool) (bool, error) {
		switch {
		case !ok:
			return true, nil
		case cur.State == StateApplied:
			return false, nil // already final; applied wins over anything
		case cur.State == StateDeadLettered && next.State == StateDeadLettered:
			return false, nil
		}
		return true, nil
	})
	if err == nil {
		c.settled = true
	}
	return err
}

// mine lets a write through only while the record is still this claim.
func (c *Claim) mine(cur Record, ok bool) (bool, error) {
	if !ok || cur.State != StateClaimed || cur.Owner != c.l.cfg.Owner || cur.Token != c.token {
		return false, fmt.Errorf("ledger: claim taken over: %w", ErrConflict)
	}
	return true, nil
}

// mutate writes next at the claim's key with compare-and-swap on the request
// record, reading it again when another command's write got there first.
// admit sees the record currently at the key and says whether to write.
func (c *Claim) mutate(ctx context.Context, op string, next Record, admit func(cur Record, ok bool) (bool, error)) error {
	doc, rev := c.doc, c.rev
	first := true
	return c.l.retryCAS(ctx, c.reqKey, func() error {
		if !first {
			var err error
			if doc, rev, err = c.l.load(ctx, c.reqKey); err != nil {
				return err
			}
		}
		first = false
		cur, ok := doc.Commands[c.key]
		write, err := admit(cur, ok)
		if err != nil || !write {
			return err
		}
		ndoc := doc.with(c.key, next, c.l.cfg.Now(), c.l.cfg.Retention)
		var nrev uint64
		if rev == 0 {
			nrev, err = c.l.create(ctx, op, c.reqKey, ndoc)
		} else {
			nrev, err = c.l.update(ctx, op, c.reqKey, ndoc, rev)
		}
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) {
			return errLostRace
		}
		if err != nil {
			return err
		}
		c.rev, c.doc, c.Record = nrev, ndoc, next
		if next.State == StateClaimed && next.Owner != "" {
			c.held = next.LeaseUntil
		}
		return nil
	})
}

// load reads a request record; an absent one is empty with revision 0.
func (l *Ledger) load(ctx context.Context, key string) (RequestRecord, uint64, error) {
	start := time.Now()
	e, err := l.store.Get(ctx, key)
	l.observe("read", err, start)
	if errors.Is(err, ErrNotFound) {
		return RequestRecord{}, 0, nil
	}
	if err != nil {
		return RequestRecord{}, 0, err
	}
	var d RequestRecord
	if err := json.Unmarshal(e.Value, &d); err != nil {
		return RequestRecord{}, 0, fmt.Errorf("ledger: record %s: %w", key, err)
	}
	return d, e.Revision, nil
}

// Lookup returns the record of id, if the ledger has one.
func (l *Ledger) Lookup(ctx context.Context, id Identity) (Record, bool, error) {
	d, _, err := l.load(ctx, RequestKey(id.Request))
	if err != nil {
		return Record{}, false, err
	}
	r, ok := d.Commands[id.Key]
	return r, ok, nil
}

func (l *Ledger) create(ctx context.Context, op, key string, d RequestRecord) (uint64, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("ledger: record %s: %w", key, err)
	}
	start := time.Now()
	rev, err := l.store.Create(ctx, key, b, 0)
	l.observe(op, err, start)
	return rev, err
}

func (l *Ledger) update(ctx context.Context, op, key string, d RequestRecord, rev uint64) (uint64, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("ledger: record %s: %w", key, err)
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
