package pacer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/retry"
)

// FleetState is what the replicas share about one operation.
type FleetState struct {
	// Curve is the fleet rate law in force.
	Curve Curve `json:"curve"`
	// Until is the fleet's gate: no call leaves before it.
	Until time.Time `json:"until,omitzero"`
	// Members are the replicas sharing the rate, by ReplicaID.
	Members map[string]Member `json:"members,omitempty"`
}

// Member is one replica in a FleetState.
type Member struct {
	// Seen is the replica's last sync; it counts for MemberLease after.
	Seen time.Time `json:"seen"`
	// Limited says the rate held one of the replica's calls back in the
	// second before Seen: it uses its whole share.
	Limited bool `json:"limited,omitempty"`
	// Sent is how many calls the replica sent in the second before Seen.
	Sent float64 `json:"sent,omitempty"`
	// Burst is how many calls Graph answered with success in the second
	// before the replica's first throttle out of the open phase, at BurstAt.
	// BurstSpan is how long those successes took, seconds (at most 1).
	Burst     float64   `json:"burst,omitempty"`
	BurstSpan float64   `json:"burstSpan,omitempty"`
	BurstAt   time.Time `json:"burstAt,omitzero"`
	// Bucket is the share of Graph's bucket that Burst shows, its refill
	// while the successes came taken out (bucketShare).
	Bucket float64 `json:"bucket,omitempty"`
}

// Fleet is the state shared across replicas, one FleetState per operation.
type Fleet interface {
	// Update reads the state of op (the zero FleetState when there is
	// none), lets modify change it, and writes it back atomically; it
	// returns what it wrote. modify may run more than once (on write
	// conflicts), each time on a fresh copy.
	Update(ctx context.Context, op string, modify func(*FleetState)) (FleetState, error)
}

// ErrContention is returned by a store Fleet that lost every
// compare-and-swap of one Update to other replicas.
var ErrContention = errors.New("pacer: fleet state contended")

// stateTTL is how long a fleet record outlives its last write: a fleet
// restarted within it (a deploy) starts from what the last one learned.
const stateTTL = 15 * time.Minute

// storeAttempts bounds the compare-and-swap attempts of one Update.
const storeAttempts = 8

// NewStoreFleet returns a Fleet kept in a ledger.Store (JetStream KV or
// Redis): one JSON record per operation under the key "<keyPrefix>.<op>",
// read, modified and written back with compare-and-swap on its revision.
func NewStoreFleet(s ledger.Store, keyPrefix string) Fleet {
	return &storeFleet{s: s, prefix: keyPrefix}
}

type storeFleet struct {
	s      ledger.Store
	prefix string
}

// key maps an operation to a store key: bytes outside [a-z0-9._-] become
// '-' (operations are short types like "role_request_update").
func (f *storeFleet) key(op string) string {
	k := op
	if f.prefix != "" {
		k = f.prefix + "." + op
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '-'
	}, k)
}

func (f *storeFleet) Update(ctx context.Context, op string, modify func(*FleetState)) (FleetState, error) {
	key := f.key(op)
	var st FleetState
	// A lost compare-and-swap is tried again at once: each try reads afresh.
	err := retry.Do(ctx, retry.Policy{Tries: storeAttempts}, func(ctx context.Context) error {
		st = FleetState{}
		e, err := f.s.Get(ctx, key)
		absent := errors.Is(err, ledger.ErrNotFound)
		switch {
		case absent:
		case err != nil:
			return backoff.Permanent(fmt.Errorf("pacer: reading %s: %w", key, err))
		default:
			// A record that does not decode (another version wrote it)
			// is replaced rather than blocking pacing forever.
			if json.Unmarshal(e.Value, &st) != nil {
				st = FleetState{}
			}
		}
		modify(&st)
		b, err := json.Marshal(st)
		if err != nil {
			return backoff.Permanent(fmt.Errorf("pacer: encoding %s: %w", key, err))
		}
		if absent {
			_, err = f.s.Create(ctx, key, b, stateTTL)
		} else {
			_, err = f.s.Update(ctx, key, b, e.Revision, stateTTL)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ledger.ErrExists), errors.Is(err, ledger.ErrConflict):
			return errLostRace
		default:
			return backoff.Permanent(fmt.Errorf("pacer: writing %s: %w", key, err))
		}
	})
	switch {
	case errors.Is(err, errLostRace):
		return FleetState{}, fmt.Errorf("pacer: writing %s: %w", key, ErrContention)
	case err != nil:
		return FleetState{}, err
	}
	return st, nil
}

// errLostRace is a compare-and-swap another writer won.
var errLostRace = errors.New("pacer: lost a compare-and-swap race")

// report is what one sync round brings to the fleet record.
type report struct {
	now    time.Time
	member Member
	events []event
	leave  bool
}

// Sync runs one round of fleet synchronization now: it writes this
// replica's heartbeat and throttles into the fleet record and adopts the
// record's law, gate and membership. Run calls it every SyncInterval and
// after each throttle; it is exported for callers (and tests) that drive
// their own loop. It never holds up Reserve. Without a Fleet it does nothing.
func (p *Pacer) Sync(ctx context.Context) error {
	return p.sync(ctx, false)
}

func (p *Pacer) sync(ctx context.Context, leave bool) error {
	if p.cfg.Fleet == nil {
		return nil
	}
	p.mu.Lock()
	now := p.clock.Now()
	rep := report{now: now, member: p.memberLocked(now), events: slices.Clone(p.events), leave: leave}
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, p.cfg.SyncTimeout)
	defer cancel()
	st, err := p.cfg.Fleet.Update(ctx, p.cfg.Operation, func(s *FleetState) { p.merge(s, rep) })
	if err != nil {
		return fmt.Errorf("pacer: sync of %s: %w", p.cfg.Operation, err)
	}
	if leave {
		return nil
	}
	p.mu.Lock()
	p.adoptLocked(st, rep)
	p.mu.Unlock()
	return nil
}

// merge folds a replica's report into the fleet record st. It depends on
// rep and st only: a Fleet may run it again after a write conflict.
func (p *Pacer) merge(st *FleetState, rep report) {
	if st.Curve.Mode == "" {
		st.Curve.Mode = ModeOpen
	}
	if st.Members == nil {
		st.Members = map[string]Member{}
	}
	// Drop the members silent for longer than their lease, unless this
	// replica was silent as long (the store was down for everyone): then
	// the others get one more round to come back, and nobody believes it
	// is alone for a while and sends the whole fleet's rate.
	if self, ok := st.Members[p.cfg.ReplicaID]; ok && rep.now.Sub(self.Seen) <= p.cfg.MemberLease {
		for id := range st.Members {
			if id != p.cfg.ReplicaID && rep.now.Sub(st.Members[id].Seen) > p.cfg.MemberLease {
				delete(st.Members, id)
			}
		}
	}
	if rep.leave {
		delete(st.Members, p.cfg.ReplicaID)
	} else {
		st.Members[p.cfg.ReplicaID] = rep.member
	}
	for _, e := range rep.events {
		p.applyEvent(st, e)
	}
	// While the gate that ended the open phase is closed, the members
	// report their bursts: the law starts from their sum.
	if st.Curve.fromBurst() && rep.now.Before(st.Curve.From) {
		p.law.rebase(st)
	}
}

// adoptLocked makes the record written by a sync this process's view,
// with the throttles that arrived since the report applied on top.
func (p *Pacer) adoptLocked(st FleetState, rep report) {
	var last uint64
	if n := len(rep.events); n > 0 {
		last = rep.events[n-1].seq
	}
	var later []event
	for _, e := range p.events {
		if e.seq > last {
			later = append(later, e)
		}
	}
	old := p.view
	p.view = st
	p.view.Members = maps.Clone(st.Members)
	for _, e := range later {
		p.applyEvent(&p.view, e)
	}
	if old.Until.After(p.view.Until) {
		// A gate never opens early, whatever the record says.
		p.view.Until = old.Until
	}
	if p.view.Until.After(old.Until) {
		p.gateJitter = p.cfg.Rand()
	}
	p.events = later
	if c, now := p.view.Curve, p.clock.Now(); c.fromBurst() && now.Before(c.From) && !p.burstTaken {
		// The fleet learnt of the throttle that ended the open phase
		// before Graph told this replica: its share of the burst is
		// measured at that throttle all the same, if only to say it had
		// none. Otherwise the fleet scales the shares it has up to every
		// member, and a replica that joined late, or had sent nothing
		// yet, makes Graph's burst look larger than it is.
		p.takeBurstLocked(c.Cut, time.Time{}, now)
	}
	alive := members(&p.view)
	p.members = max(1, len(alive))
	p.rank = max(0, slices.Index(alive, p.cfg.ReplicaID))
	p.signalLocked()
}

// Run synchronizes with the fleet every SyncInterval (with ±10% jitter, so
// replicas do not contend in step) and at once after a throttle, and calls
// OnChange after every round, until ctx is done. It then removes this
// replica from the fleet so that its share is reclaimed at once. A failing
// store is logged once when it starts failing and once when it recovers;
// pacing goes on locally meanwhile.
func (p *Pacer) Run(ctx context.Context) {
	for {
		p.round(ctx)
		d := time.Duration(float64(p.cfg.SyncInterval) * (0.9 + 0.2*p.cfg.Rand()))
		t := p.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.SyncTimeout)
			if err := p.sync(lctx, true); err != nil {
				p.cfg.Log.Warn("pacer: leaving the fleet failed; the others drop this replica after its lease",
					"operation", p.cfg.Operation, "err", err)
			}
			cancel()
			return
		case <-t.C():
		case <-p.kick:
			t.Stop()
		}
	}
}

// round is one sync and report of Run.
func (p *Pacer) round(ctx context.Context) {
	err := p.Sync(ctx)
	switch {
	case err != nil && !p.syncFailing && ctx.Err() == nil:
		p.syncFailing = true
		p.cfg.Log.Warn("pacer: fleet sync failing; pacing this replica alone with what it knows",
			"operation", p.cfg.Operation, "err", err)
	case err == nil && p.syncFailing:
		p.syncFailing = false
		p.cfg.Log.Info("pacer: fleet sync recovered", "operation", p.cfg.Operation)
	}
	now := p.clock.Now()
	p.mu.Lock()
	rate, until := p.rateLocked(now), p.view.Until
	p.mu.Unlock()
	p.changedHook(rate, until)
}
