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
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/consumer"
)

// pullExpiry is how long a pull request waits on the server. The request is
// never cancelled from this side: the client library drops the messages the
// server sent in the instant before it saw a cancelled request go, and those
// would wait out AckWait. So a drain waits for the request under way to end
// (at most pullExpiry) and hands back what it brings. It is short, too, so
// that a request lost with a broker restart is noticed soon (the client
// gives up a second after the expiry).
const pullExpiry = 2 * time.Second

// drainHandBack is the redelivery delay of a message a draining replica's
// last pull request brings (consumer.Config.NotStartedDelay): past the
// request's end, so that it does not come straight back into it.
const drainHandBack = pullExpiry + time.Second

// ErrRunning is returned by a second Run while one is running.
var ErrRunning = consumer.ErrRunning

// Source pulls commands from the durable consumer.
type Source struct {
	js     js.JetStream
	nc     *nats.Conn
	cfg    Config
	log    *slog.Logger
	runner *consumer.Runner

	mu         sync.Mutex  // guards cons
	cons       js.Consumer // replaced when the consumer is recreated
	consumerOK atomic.Bool // the consumer answered the last pull or setup
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
	r, err := consumer.NewRunner(s, consumer.Config{Concurrency: cfg.Concurrency, Limit: cfg.Limit,
		NotStartedDelay: drainHandBack, Log: s.log})
	if err != nil {
		return nil, fmt.Errorf("jetstream config: %w", err)
	}
	s.runner = r
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
// most Concurrency handlers at once (consumer.Runner.Run). It asks the server
// for no more messages than there are free handlers, so a message never
// waits in this process with its AckWait clock running, and renews (with
// InProgress) the ack wait of every message a handler holds.
//
// When ctx is done Run stops pulling, hands back at once what was pulled but
// not yet given to a handler (except a last delivery, which is handled: the
// server would drop it), waits for the running handlers to return and returns
// nil. Cancel ctx before draining or closing the connection. Broker errors are
// logged and retried with backoff, and a deleted consumer is recreated; Run
// returns an error only when the connection is closed for good.
func (s *Source) Run(ctx context.Context, h consumer.Handler) error {
	return s.runner.Run(ctx, h)
}

// Receive sends one pull request for n messages and delivers each as it
// comes (consumer.Receiver).
func (s *Source) Receive(ctx context.Context, n int, deliver func(consumer.Leased)) error {
	s.mu.Lock()
	cons := s.cons
	s.mu.Unlock()
	batch, err := cons.Fetch(n, js.FetchMaxWait(pullExpiry))
	if err == nil {
		for jm := range batch.Messages() {
			m, merr := newMessage(jm, s.cfg, time.Now())
			if merr != nil {
				// Cannot happen for a message of a pull consumer.
				s.log.Error("message without JetStream metadata; handing it back", "err", merr)
				_ = jm.Nak()
				continue
			}
			deliver(m)
		}
		err = batch.Error()
	}
	switch {
	case err == nil:
		// Filled, or expired with the server's answer: the consumer is there.
		s.consumerOK.Store(true)
		return nil
	case s.nc.IsClosed():
		return fmt.Errorf("jetstream: consumer %s: %w: %w", s.cfg.Durable, consumer.ErrClosed, nats.ErrConnectionClosed)
	case consumerGone(err):
		s.consumerOK.Store(false)
		if ctx.Err() == nil {
			s.recreate(ctx)
		}
	}
	return fmt.Errorf("jetstream: pull from %s: %w", s.cfg.Durable, err)
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
		s.log.Warn("cannot reach the consumer", "err", err)
		return
	}
	s.mu.Lock()
	s.cons = c
	s.mu.Unlock()
	s.consumerOK.Store(true)
}

// consumerGone reports the errors of a pull to a consumer that is not there:
// deleted while the request waited, or no consumer answering requests.
func consumerGone(err error) bool {
	return errors.Is(err, js.ErrConsumerDeleted) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, js.ErrConsumerNotFound)
}
