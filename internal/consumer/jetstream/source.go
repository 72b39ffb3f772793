// Package jetstream is the NATS JetStream adapter of consumer.Source. It owns
// the command stream (GRAPHOPS) and the durable pull consumer: their names and
// settings, creating them at start, and pulling messages no faster than the
// handlers free up. It does not decode or apply commands, keep the ledger, or
// write dead letters; it does not open or close the NATS connection either.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/consumer"
)

// Pull request timing. A pull request waits on the server for up to
// pullExpiry; the server sends a heartbeat every pullHeartbeat while it
// waits, so a request lost with a broker restart is noticed within two
// heartbeats and a new one is sent.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = time.Second

	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
)

// ErrRunning is returned by a second Run while one is running.
var ErrRunning = errors.New("jetstream: Run is already running")

// Source pulls commands from the durable consumer.
type Source struct {
	js  js.JetStream
	nc  *nats.Conn
	cfg Config
	log *slog.Logger

	cons       js.Consumer // used by Run only, after New
	consumerOK atomic.Bool // the consumer answered the last pull or setup
	running    atomic.Bool
}

var _ consumer.Source = (*Source)(nil)

// New validates cfg, creates the stream and the durable consumer where they
// are missing, updates the settings of theirs this package owns where they
// differ, and returns a Source reading the consumer. A nil log discards.
func New(ctx context.Context, jsc js.JetStream, cfg Config, log *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jetstream config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		js:  jsc,
		nc:  jsc.Conn(),
		cfg: cfg,
		log: log.With("stream", cfg.Stream, "consumer", cfg.Durable),
	}
	c, err := s.ensure(ctx)
	if err != nil {
		return nil, err
	}
	s.cons = c
	s.consumerOK.Store(true)
	return s, nil
}

// Ready reports that the connection is up and the consumer answered the last
// pull. It makes no round trip.
func (s *Source) Ready() bool {
	return s.nc.Status() == nats.CONNECTED && s.consumerOK.Load()
}

// Run pulls messages and calls h for each in a goroutine of its own, with at
// most Concurrency handlers at once. It asks the server for no more messages
// than there are free handlers, so a message never waits in this process
// with its AckWait clock running.
//
// A handler's slot is free again when it returns; a message it left
// unsettled stays pending on the server until AckWait.
//
// When ctx is done Run stops pulling, hands back at once what was pulled but
// not yet given to a handler (except a last delivery, which is handled: the
// server would drop it), waits for the running handlers to return and returns
// nil. Cancel ctx before draining or closing the connection. Broker errors are
// logged and retried with backoff, and a deleted consumer is recreated; Run
// returns an error only when the connection is closed for good.
func (s *Source) Run(ctx context.Context, h consumer.Handler) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)

	free := consumer.NewSlots(s.cfg.Concurrency, s.cfg.Limit)
	handlers := consumer.NewPool(s.cfg.Concurrency)
	defer handlers.Close()

	retry := time.Duration(0)
	for {
		n := free.Acquire(ctx)
		if n == 0 {
			return nil
		}
		err := s.pull(ctx, n, free, handlers, h)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			retry = 0
			continue
		}
		if s.nc.IsClosed() {
			return fmt.Errorf("jetstream: consumer %s: %w", s.cfg.Durable, nats.ErrConnectionClosed)
		}
		retry = min(max(2*retry, retryMin), retryMax)
		s.log.Warn("pull failed; retrying", "error", err, "retry_in", retry)
		if !consumer.Sleep(ctx, retry) {
			return nil
		}
		if consumerGone(err) {
			s.recreate(ctx)
		}
	}
}

// pull sends one pull request for n messages, n being the free handler slots
// taken from free, and starts a handler for each message it brings. Slots
// the request did not fill go back to free.
func (s *Source) pull(ctx context.Context, n int, free *consumer.Slots, handlers *consumer.Pool, h consumer.Handler) error {
	started := 0
	defer func() {
		for range n - started {
			free.Release()
		}
	}()

	// Cancelling ctx ends the request at once. A message the server sent
	// in the instant before it saw the request go is dropped by the
	// client library and comes back after AckWait.
	pctx, cancel := context.WithTimeout(ctx, pullExpiry)
	defer cancel()
	batch, err := s.cons.Fetch(n, js.FetchContext(pctx), js.FetchHeartbeat(pullHeartbeat))
	if err != nil {
		return err
	}
	for jm := range batch.Messages() {
		m, err := newMessage(jm, s.cfg.MaxDeliver, s.cfg.AckAsync)
		if err != nil {
			// Cannot happen for a message of a pull consumer.
			s.log.Error("message without JetStream metadata; handing it back", "error", err)
			_ = jm.Nak()
			continue
		}
		if ctx.Err() != nil && !m.Last() {
			// Pulled but not started: another replica may take it now.
			// Not so a last delivery, which the server would drop: its
			// handler runs (in a slot this request holds) and settles it.
			if err := jm.Nak(); err != nil {
				s.log.Warn("cannot hand back a message at shutdown", "id", m.ID(), "error", err)
			}
			continue
		}
		started++
		handlers.Go(func() {
			defer free.Release()
			h(m)
		})
	}

	err = batch.Error()
	switch {
	case err == nil:
		// Filled, or expired with the server's answer: the consumer is there.
		s.consumerOK.Store(true)
		return nil
	case errors.Is(err, context.Canceled):
		// Run is stopping.
		return nil
	case consumerGone(err):
		s.consumerOK.Store(false)
	}
	return err
}

// recreate finds the consumer again after a pull it did not answer, and
// puts it back (with the stream) if it was deleted. Right after a broker
// restart the consumer may not answer for a moment though it exists.
func (s *Source) recreate(ctx context.Context) {
	c, err := s.js.Consumer(ctx, s.cfg.Stream, s.cfg.Durable)
	if err == nil {
		s.log.Info("consumer answers again")
	} else if errors.Is(err, js.ErrConsumerNotFound) || errors.Is(err, js.ErrStreamNotFound) {
		if c, err = s.ensure(ctx); err == nil {
			s.log.Warn("consumer was missing; recreated")
		}
	}
	if err != nil {
		s.log.Warn("cannot reach the consumer", "error", err)
		return
	}
	s.cons = c
	s.consumerOK.Store(true)
}

// consumerGone reports the errors of a pull to a consumer that is not there:
// deleted while the request waited, or no consumer answering requests.
func consumerGone(err error) bool {
	return errors.Is(err, js.ErrConsumerDeleted) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, js.ErrConsumerNotFound)
}
