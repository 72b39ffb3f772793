package servicebus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/dlq"
)

const (
	// peekPage is how many dead letters one peek reads.
	peekPage = 100
	// scanBatch is how many dead letters one receive of a scan asks for.
	scanBatch = 50
	// scanIdle: a scan ends when nothing arrives for this long (the dead
	// letters it still wants are locked by another receiver).
	scanIdle = 15 * time.Second
)

// ErrNotReceived: a dead letter that a peek showed could not be received
// (another receiver holds its lock, or it was removed meanwhile); it was
// not replayed or purged.
var ErrNotReceived = errors.New("not received: locked by another receiver, or removed meanwhile")

// DeadLetters is the entity's dead-letter sub-queue as an operator sees it
// (docs/SPEC.md §8). A dead letter's ID is its sequence number.
type DeadLetters struct {
	cfg    Config
	client *azservicebus.Client // nil with test fakes
	recv   receiver             // PeekLock, on the sub-queue
	send   sender               // to the entity, for replays
	idle   time.Duration

	heldMu sync.Mutex
	held   map[uint64]*azservicebus.ReceivedMessage // by Take, for Republish
}

var _ dlq.Backend = (*DeadLetters)(nil)

// NewDeadLetters validates cfg and opens a PeekLock receiver on the entity's
// dead-letter sub-queue and a sender to the entity (the topic, for a
// subscription). Nothing is sent on the wire until the first operation.
// Close it when done.
func NewDeadLetters(cfg Config) (*DeadLetters, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("servicebus config: %w", err)
	}
	cl, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	recv, err := newReceiver(cl, cfg, azservicebus.SubQueueDeadLetter)
	if err != nil {
		_ = cl.Close(context.Background())
		return nil, fmt.Errorf("servicebus: dead-letter receiver on %s: %w", cfg.entityPath(), err)
	}
	send, err := cl.NewSender(cfg.sendTarget(), nil)
	if err != nil {
		_ = cl.Close(context.Background())
		return nil, fmt.Errorf("servicebus: sender to %s: %w", cfg.sendTarget(), err)
	}
	d := newDeadLetters(cfg, recv, send)
	d.client = cl
	return d, nil
}

func newDeadLetters(cfg Config, recv receiver, send sender) *DeadLetters {
	return &DeadLetters{cfg: cfg, recv: recv, send: send, idle: scanIdle, held: map[uint64]*azservicebus.ReceivedMessage{}}
}

// Close closes the receiver, the sender and the client.
func (d *DeadLetters) Close(ctx context.Context) error {
	err := errors.Join(d.recv.Close(ctx), d.send.Close(ctx))
	if d.client != nil {
		err = errors.Join(err, d.client.Close(ctx))
	}
	return err
}

// List calls fn for each dead letter in sequence order, peeking (nothing is
// locked); it stops at fn's first error and returns it. A dead letter
// Service Bus made itself (MaxDeliveryCountExceeded, TTLExpiredException)
// has its DeadLetterReason as Reason. Stored is the original enqueue time:
// Service Bus keeps no dead-lettering time the SDK shows.
func (d *DeadLetters) List(ctx context.Context, fn func(dlq.Entry) error) error {
	return d.each(ctx, func(rm *azservicebus.ReceivedMessage) error {
		return fn(d.entryOf(rm))
	})
}

// Get returns the dead letter with sequence number seq, or an error
// wrapping dlq.ErrNotFound.
func (d *DeadLetters) Get(ctx context.Context, seq uint64) (dlq.Entry, error) {
	rm, err := d.peekOne(ctx, seq)
	if err != nil {
		return dlq.Entry{}, err
	}
	return d.entryOf(rm), nil
}

// Show writes one dead letter (`worker dlq show ID`, dlq.CmdShow).
func (d *DeadLetters) Show(ctx context.Context, w io.Writer, seq uint64) error {
	return dlq.CmdShow(ctx, d, w, seq)
}

// Name is the dead-letter sub-queue's path.
func (d *DeadLetters) Name() string { return d.cfg.entityPath() + "/$DeadLetterQueue" }

// Replay sends a copy of each dead letter to the entity (the topic, for a
// subscription), then completes the dead letter (dlq.Replay, docs/SPEC.md §8). See
// Republish for the copy.
func (d *DeadLetters) Replay(ctx context.Context, seqs []uint64) ([]uint64, error) {
	return dlq.Replay(ctx, d, seqs, nil)
}

// ReplayAll replays every dead letter present when it starts; those
// dead-lettered while it runs (a replayed command failing again) are left.
func (d *DeadLetters) ReplayAll(ctx context.Context) ([]uint64, error) {
	return dlq.ReplayAll(ctx, d, nil)
}

// Purge completes every dead letter present when it starts and returns how
// many it removed. Those it could not remove are named in its error.
func (d *DeadLetters) Purge(ctx context.Context) (uint64, error) {
	return dlq.Purge(ctx, d)
}

// Take receives the wanted dead letters (dlq.Backend), calls fn for each
// and completes it when fn returns nil. Service Bus receives a sub-queue in
// order only, so Take receives (and holds locked) the dead letters before
// the wanted ones, and abandons them at the end.
func (d *DeadLetters) Take(ctx context.Context, ids []uint64, fn func(dlq.Entry) error) map[uint64]error {
	want := map[uint64]bool{}
	failed := map[uint64]error{}
	for _, seq := range ids {
		if want[seq] || failed[seq] != nil {
			continue
		}
		if _, err := d.peekOne(ctx, seq); err != nil {
			failed[seq] = err
			continue
		}
		want[seq] = true
	}
	if len(want) == 0 {
		return failed
	}
	received, err := d.scan(ctx, want, func(rm *azservicebus.ReceivedMessage, seq uint64) bool {
		d.heldMu.Lock()
		d.held[seq] = rm
		d.heldMu.Unlock()
		defer func() {
			d.heldMu.Lock()
			delete(d.held, seq)
			d.heldMu.Unlock()
		}()
		if err := fn(d.entryOf(rm)); err != nil {
			failed[seq] = err
			return false
		}
		if err := d.recv.CompleteMessage(ctx, rm, nil); err != nil {
			failed[seq] = fmt.Errorf("%w (replay it again to remove it): %w", dlq.ErrDeleteFailed, err)
			return false
		}
		return true
	})
	notReceived(want, received, failed, err)
	return failed
}

// Republish sends a copy of a dead letter Take holds to the entity (the
// topic, for a subscription). The copy has the original body, system
// properties (SessionId among them) and application properties, without
// the dead-letter ones, with Graphops-Replay set to the sequence number
// and a MessageID derived from it (so that, where the entity detects
// duplicates, replaying again after a failed complete sends nothing new).
func (d *DeadLetters) Republish(ctx context.Context, e dlq.Entry) (string, error) {
	d.heldMu.Lock()
	rm := d.held[e.Seq]
	d.heldMu.Unlock()
	if rm == nil {
		return "", fmt.Errorf("dead letter %d is not received", e.Seq)
	}
	target := d.cfg.sendTarget()
	if err := d.send.SendMessage(ctx, d.replayCopy(rm, e.Seq), nil); err != nil {
		return "", fmt.Errorf("to %s: %w", target, err)
	}
	return target, nil
}

// notReceived adds the wanted dead letters a scan did not receive to
// failed, with the scan's error if it failed.
func notReceived(want, received map[uint64]bool, failed map[uint64]error, scanErr error) {
	if scanErr == nil {
		scanErr = ErrNotReceived
	}
	for seq := range want {
		if !received[seq] && failed[seq] == nil {
			failed[seq] = scanErr
		}
	}
}

// scan receives from the sub-queue until every wanted dead letter has been
// received, and calls fn for each of them; fn reports whether it settled
// it. The others, and those fn left, stay locked so that the next receive
// moves past them, and are abandoned at the end. The scan also ends when
// nothing arrives for d.idle, or a receive brings only dead letters seen
// before (their locks expired: the sub-queue has been gone through).
func (d *DeadLetters) scan(ctx context.Context, want map[uint64]bool, fn func(*azservicebus.ReceivedMessage, uint64) bool) (map[uint64]bool, error) {
	received := map[uint64]bool{}
	var held []*azservicebus.ReceivedMessage
	defer func() {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		for _, rm := range held {
			// An expired lock makes the abandon fail; the dead letter is
			// back all the same.
			_ = d.recv.AbandonMessage(actx, rm, nil)
		}
	}()
	seen := map[uint64]bool{}
	for len(received) < len(want) {
		rctx, cancel := context.WithTimeout(ctx, d.idle)
		msgs, err := d.recv.ReceiveMessages(rctx, scanBatch, nil)
		idle := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		fresh := false
		for _, rm := range msgs {
			seq := seqOf(rm)
			if seen[seq] {
				held = append(held, rm)
				continue
			}
			seen[seq], fresh = true, true
			if want[seq] {
				received[seq] = true
				if fn(rm, seq) {
					continue
				}
			}
			held = append(held, rm)
		}
		switch {
		case err != nil && idle:
			return received, nil
		case err != nil:
			return received, fmt.Errorf("servicebus: receive dead letters of %s: %w", d.cfg.entityPath(), err)
		case !fresh:
			return received, nil
		}
	}
	return received, nil
}

// each peeks through the sub-queue in pages, in sequence order.
func (d *DeadLetters) each(ctx context.Context, fn func(*azservicebus.ReceivedMessage) error) error {
	from := int64(1)
	for {
		page, err := d.recv.PeekMessages(ctx, peekPage, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
		if err != nil {
			return fmt.Errorf("servicebus: peek dead letters of %s from %d: %w", d.cfg.entityPath(), from, err)
		}
		next := from
		for _, rm := range page {
			if rm.SequenceNumber == nil || *rm.SequenceNumber < next {
				continue
			}
			if err := fn(rm); err != nil {
				return err
			}
			next = *rm.SequenceNumber + 1
		}
		if next == from {
			// Empty, or nothing past where it started: the end.
			return nil
		}
		from = next
	}
}

// peekOne peeks the dead letter seq.
func (d *DeadLetters) peekOne(ctx context.Context, seq uint64) (*azservicebus.ReceivedMessage, error) {
	from := int64(seq)
	if seq == 0 || from < 0 {
		return nil, fmt.Errorf("servicebus: dead letter %d: %w", seq, dlq.ErrNotFound)
	}
	page, err := d.recv.PeekMessages(ctx, 1, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
	if err != nil {
		return nil, fmt.Errorf("servicebus: peek dead letter %d of %s: %w", seq, d.cfg.entityPath(), err)
	}
	if len(page) == 0 || seqOf(page[0]) != seq {
		return nil, fmt.Errorf("servicebus: dead letter %d: %w", seq, dlq.ErrNotFound)
	}
	return page[0], nil
}

// entryOf reads a dead letter: the docs/SPEC.md §4 properties where this worker
// dead-lettered it, else what Service Bus recorded.
func (d *DeadLetters) entryOf(rm *azservicebus.ReceivedMessage) dlq.Entry {
	h := map[string]string{}
	for _, name := range specHeaders() {
		if v, ok := rm.ApplicationProperties[name]; ok {
			h[name] = propString(v)
		}
	}
	if h[dlq.HeaderReason] == "" && rm.DeadLetterReason != nil {
		h[dlq.HeaderReason] = *rm.DeadLetterReason
	}
	if h[dlq.HeaderDescription] == "" && rm.DeadLetterErrorDescription != nil {
		h[dlq.HeaderDescription] = *rm.DeadLetterErrorDescription
	}
	if h[dlq.HeaderOriginalSubject] == "" {
		h[dlq.HeaderOriginalSubject] = d.cfg.entityPath()
	}
	var stored time.Time
	if rm.EnqueuedTime != nil {
		stored = *rm.EnqueuedTime
	}
	// A property that does not parse leaves its field zero; the dead
	// letter is shown, replayed or purged all the same.
	e, _ := dlq.EntryFromProperties(bodyOf(rm), func(name string) string { return h[name] }, seqOf(rm), stored)
	e.Where = d.cfg.entityPath() + "/$DeadLetterQueue"
	for name, v := range rm.ApplicationProperties {
		if name != dlq.HeaderReplay && dlq.IsDeadLetterHeader(name) {
			continue
		}
		switch {
		case name == dlq.HeaderReplay || ownProperty(name):
			if e.Extra == nil {
				e.Extra = map[string][]string{}
			}
			e.Extra[name] = []string{propString(v)}
		default:
			if e.Headers == nil {
				e.Headers = map[string][]string{}
			}
			e.Headers[name] = []string{propString(v)}
		}
	}
	return e
}

// ownProperty: the properties Service Bus or this package add to a
// command, which are not the producer's.
func ownProperty(name string) bool {
	switch name {
	case "DeadLetterReason", "DeadLetterErrorDescription", PropHandbacks, PropPriorDeliveries, PropSubscription:
		return true
	}
	return false
}

// replayCopy is the message Replay sends for dead letter seq.
func (d *DeadLetters) replayCopy(rm *azservicebus.ReceivedMessage, seq uint64) *azservicebus.Message {
	drop := map[string]bool{
		"DeadLetterReason": true, "DeadLetterErrorDescription": true,
		PropHandbacks: true, PropPriorDeliveries: true, PropSubscription: true, dlq.HeaderReplay: true,
	}
	for _, name := range specHeaders() {
		drop[name] = true
	}
	props := map[string]any{}
	for k, v := range rm.ApplicationProperties {
		if !drop[k] {
			props[k] = v
		}
	}
	props[dlq.HeaderReplay] = strconv.FormatUint(seq, 10)
	if d.cfg.Queue == "" {
		props[PropSubscription] = d.cfg.Subscription
	}
	c := copyOf(rm, bodyOf(rm), props)
	c.MessageID = messageID(dlq.ReplayMsgID(d.cfg.entityPath(), seq))
	return c
}

// specHeaders are the dead-letter headers of docs/SPEC.md §4, in its order.
func specHeaders() []string {
	return []string{
		dlq.HeaderReason, dlq.HeaderDescription, dlq.HeaderType, dlq.HeaderCommandID,
		dlq.HeaderCommandSource, dlq.HeaderRequestID, dlq.HeaderAttempts, dlq.HeaderFirstAttempt,
		dlq.HeaderLastAttempt, dlq.HeaderOriginalSubject, dlq.HeaderGraphStatus, dlq.HeaderGraphCode,
		dlq.HeaderGraphRequestID, dlq.HeaderClientRequestID,
	}
}

func seqOf(rm *azservicebus.ReceivedMessage) uint64 {
	if rm.SequenceNumber == nil || *rm.SequenceNumber < 0 {
		return 0
	}
	return uint64(*rm.SequenceNumber)
}
