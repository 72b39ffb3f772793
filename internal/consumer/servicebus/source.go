// Package servicebus is the Azure Service Bus adapter of consumer.Source. It
// owns the Service Bus wire: the client and its authentication, receiving
// from a queue or a topic subscription in PeekLock mode no faster than the
// handlers free up, settling (complete, abandon, hand-back copies,
// dead-lettering into the entity's own dead-letter sub-queue), lock
// renewal, turning a binary-mode CloudEvent into a structured one, and the
// operator's view of the dead-letter sub-queue (list, show, replay, purge).
// It does not parse or validate commands, retry Graph calls, keep the
// ledger, or decide when a command is dead-lettered; and it does not create
// entities or change their settings (that needs Manage rights a worker
// should not have).
package servicebus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
)

// Receive timing. A receive waits up to receiveWait for a first message,
// then asks again, so that slots freed meanwhile are asked for and Ready
// notices a namespace that stopped answering. A peek that finds nothing new
// is repeated after peekIdle.
const (
	receiveWait = 10 * time.Second
	peekIdle    = 2 * time.Second

	retryMin = 500 * time.Millisecond
	retryMax = 30 * time.Second

	// settleTimeout bounds the abandons of a dead-letter scan, when its
	// ctx may be done already.
	settleTimeout = 10 * time.Second
)

// ErrRunning is returned by a second Run while one is running.
var ErrRunning = consumer.ErrRunning

// receiver is what this package uses of *azservicebus.Receiver.
type receiver interface {
	ReceiveMessages(ctx context.Context, maxMessages int, options *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
	PeekMessages(ctx context.Context, maxMessageCount int, options *azservicebus.PeekMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
	CompleteMessage(ctx context.Context, m *azservicebus.ReceivedMessage, options *azservicebus.CompleteMessageOptions) error
	AbandonMessage(ctx context.Context, m *azservicebus.ReceivedMessage, options *azservicebus.AbandonMessageOptions) error
	DeadLetterMessage(ctx context.Context, m *azservicebus.ReceivedMessage, options *azservicebus.DeadLetterOptions) error
	RenewMessageLock(ctx context.Context, m *azservicebus.ReceivedMessage, options *azservicebus.RenewMessageLockOptions) error
	Close(ctx context.Context) error
}

// settler is what a message's verbs use of a receiver: the entity's
// *azservicebus.Receiver, or a session's *azservicebus.SessionReceiver.
type settler interface {
	CompleteMessage(ctx context.Context, m *azservicebus.ReceivedMessage, options *azservicebus.CompleteMessageOptions) error
	AbandonMessage(ctx context.Context, m *azservicebus.ReceivedMessage, options *azservicebus.AbandonMessageOptions) error
	DeadLetterMessage(ctx context.Context, m *azservicebus.ReceivedMessage, options *azservicebus.DeadLetterOptions) error
}

var _ settler = (*azservicebus.SessionReceiver)(nil)

// sender is what this package uses of *azservicebus.Sender.
type sender interface {
	SendMessage(ctx context.Context, m *azservicebus.Message, options *azservicebus.SendMessageOptions) error
	ScheduleMessages(ctx context.Context, ms []*azservicebus.Message, at time.Time, options *azservicebus.ScheduleMessagesOptions) ([]int64, error)
	Close(ctx context.Context) error
}

var (
	_ receiver = (*azservicebus.Receiver)(nil)
	_ sender   = (*azservicebus.Sender)(nil)
)

// Source receives commands from the entity.
type Source struct {
	cfg    Config
	log    *slog.Logger
	client *azservicebus.Client // nil with test fakes
	recv   receiver
	send   sender
	now    func() time.Time

	receiveWait, peekIdle, retryMin, retryMax time.Duration

	runner   *consumer.Runner
	sessions sessions    // Config.Sessions
	ok       atomic.Bool // the last receive or peek worked
}

var _ consumer.Source = (*Source)(nil)

// New validates cfg, opens a client, a PeekLock receiver on the entity and
// a sender to it (the topic, for a subscription), and peeks once, so that a
// wrong name or missing rights stop start-up. A nil log discards. Close
// the Source after Run has returned.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("servicebus config: %w", err)
	}
	cl, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	var recv receiver = noReceiver{}
	if !cfg.Sessions {
		// With sessions, each accepted session has a receiver of its own.
		r, err := newReceiver(cl, cfg, 0)
		if err != nil {
			_ = cl.Close(ctx)
			return nil, fmt.Errorf("servicebus: receiver on %s: %w", cfg.entityPath(), err)
		}
		recv = r
	}
	send, err := cl.NewSender(cfg.sendTarget(), nil)
	if err != nil {
		_ = cl.Close(ctx)
		return nil, fmt.Errorf("servicebus: sender to %s: %w", cfg.sendTarget(), err)
	}
	s, err := newSource(cfg, recv, send, log)
	if err != nil {
		_ = cl.Close(ctx)
		return nil, err
	}
	s.client = cl
	// From an explicit sequence number, which leaves the receiver's own
	// peek position (Config.Peek) at the start.
	first := int64(1)
	if cfg.Sessions {
		// Accepting a session reaches the entity as a peek would (a
		// session-enabled entity cannot be peeked without one).
		r, err := s.acceptSession(ctx)
		if err != nil {
			_ = s.Close(ctx)
			return nil, fmt.Errorf("servicebus: %s: %w", cfg.entityPath(), err)
		}
		if r != nil {
			// Released at once: Run accepts the sessions it can handle.
			_ = r.Close(ctx)
		}
	} else if _, err := recv.PeekMessages(ctx, 1, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &first}); err != nil {
		_ = s.Close(ctx)
		return nil, fmt.Errorf("servicebus: %s: %w", cfg.entityPath(), err)
	}
	s.ok.Store(true)
	return s, nil
}

// newSource builds a Source on a receiver and sender; cfg is valid.
func newSource(cfg Config, recv receiver, send sender, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg:         cfg,
		log:         log.With("entity", cfg.entityPath()),
		recv:        recv,
		send:        send,
		now:         time.Now,
		receiveWait: receiveWait,
		peekIdle:    peekIdle,
		retryMin:    retryMin,
		retryMax:    retryMax,
	}
	return s, s.newRunner()
}

// newRunner (re)builds the runner from the source's settings.
func (s *Source) newRunner() error {
	r, err := consumer.NewRunner(s, consumer.Config{Concurrency: s.cfg.Concurrency, Limit: s.cfg.Limit,
		RetryMin: s.retryMin, RetryMax: s.retryMax, Log: s.log})
	if err != nil {
		return fmt.Errorf("servicebus config: %w", err)
	}
	s.runner = r
	return nil
}

// Ready reports that the last receive (or peek) reached the entity. It
// makes no round trip.
func (s *Source) Ready() bool { return s.ok.Load() }

// Close closes the receiver, the sender and the client. Messages still
// locked are released by Service Bus when their locks expire.
func (s *Source) Close(ctx context.Context) error {
	err := errors.Join(s.recv.Close(ctx), s.send.Close(ctx))
	if s.client != nil {
		err = errors.Join(err, s.client.Close(ctx))
	}
	return err
}

// Run receives messages and calls h for each in a goroutine of its own,
// with at most Concurrency handlers at once (consumer.Runner.Run). It asks
// Service Bus for no more messages than there are free handlers, so that a
// message never waits in this process with its lock running, and renews the
// lock of every message a handler holds from the message's own LockedUntil.
//
// When ctx is done Run stops receiving, abandons at once what it received
// but did not give to a handler (except a last delivery, which abandoning
// would dead-letter: its handler runs), waits for the running handlers to
// return and returns nil. Errors are logged and retried with backoff (the
// SDK has retried already); Run returns an error only when the receiver is
// closed.
//
// With Config.Peek, Run browses the entity instead: each message present or
// arriving is handled once, nothing is locked or settled.
func (s *Source) Run(ctx context.Context, h consumer.Handler) error {
	return s.runner.Run(ctx, h)
}

// Receive asks for up to n messages (or peeks them) and delivers each
// (consumer.Receiver).
func (s *Source) Receive(ctx context.Context, n int, deliver func(consumer.Leased)) error {
	var err error
	switch {
	case s.cfg.Sessions:
		err = s.receiveSessions(ctx, n, deliver)
	case s.cfg.Peek:
		err = s.peek(ctx, n, deliver)
	default:
		err = s.receive(ctx, n, deliver)
	}
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		s.ok.Store(true)
		return nil
	}
	s.ok.Store(false)
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeClosed {
		return fmt.Errorf("servicebus: %s: %w: %w", s.cfg.entityPath(), consumer.ErrClosed, err)
	}
	return fmt.Errorf("servicebus: receive from %s: %w", s.cfg.entityPath(), err)
}

// receive asks for up to n messages and delivers each.
func (s *Source) receive(ctx context.Context, n int, deliver func(consumer.Leased)) error {
	rctx, cancel := context.WithTimeout(ctx, s.receiveWait)
	defer cancel()
	// The SDK may return messages together with a cancellation: those
	// that had arrived when ctx ended. The runner hands them back.
	msgs, err := s.recv.ReceiveMessages(rctx, n, nil)
	for _, rm := range msgs {
		deliver(s.newMessage(rm))
	}
	switch {
	case err != nil && rctx.Err() != nil && ctx.Err() == nil:
		// Nothing arrived within receiveWait, or the namespace cannot be
		// reached: the SDK retries a lost connection until the context
		// ends and then says no more than a quiet entity would. A peek,
		// answered at once while connected, tells them apart (Ready).
		pctx, cancel := context.WithTimeout(ctx, s.receiveWait/2)
		defer cancel()
		if _, perr := s.recv.PeekMessages(pctx, 1, nil); perr != nil && ctx.Err() == nil {
			return fmt.Errorf("nothing received, and a peek failed too: %w", perr)
		}
		return nil
	case err == nil && len(msgs) == 0:
		// The SDK's answer after it recovered from a link error; the next
		// receive reconnects. A pause keeps a flapping link from making
		// this a busy loop.
		consumer.Sleep(ctx, s.retryMin)
	}
	return err
}

// peek browses up to n messages after the last one peeked; when there are
// none it waits peekIdle, so that an idle entity is not polled hard.
func (s *Source) peek(ctx context.Context, n int, deliver func(consumer.Leased)) error {
	msgs, err := s.recv.PeekMessages(ctx, n, nil)
	if err != nil {
		return err
	}
	used := 0
	for _, rm := range msgs {
		// Scheduled messages (hand-back copies of the real consumers)
		// and deferred ones are not commands waiting to be processed.
		if rm.State != azservicebus.MessageStateActive || used == n {
			continue
		}
		used++
		deliver(s.newMessage(rm))
	}
	if len(msgs) == 0 {
		consumer.Sleep(ctx, s.peekIdle)
	}
	return nil
}

// noReceiver stands for the entity's receiver with sessions, where only
// the sessions' receivers are used.
type noReceiver struct{ receiver }

func (noReceiver) Close(context.Context) error { return nil }
