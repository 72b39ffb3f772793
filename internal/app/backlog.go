package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/config"
	jsconsumer "github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/metrics"
)

// backlogEvery is how often each replica reads its source's backlog: SPEC
// §7 asks for at least every 15 s, and the autoscaler polls every 30 s.
const backlogEvery = 10 * time.Second

// reading is one look at the source. A figure the source cannot give is
// marked unknown, and its series is then absent rather than 0.
type reading struct {
	messages, oldest     float64
	messagesOK, oldestOK bool
}

// backlogReader reads the source once. Its reading says what it learnt,
// even with an error (one figure may be known when the other failed).
type backlogReader func(ctx context.Context) (reading, error)

// startBacklog keeps graphops_backlog_messages and
// graphops_oldest_message_age_seconds up to date until ctx is done or the
// returned stop is called; stop waits for the poller to return. Nothing it
// meets stops the worker: a source it cannot read leaves the gauges absent.
func startBacklog(ctx context.Context, cfg *config.Config, jsc jetstream.JetStream, m *metrics.Metrics, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		var read backlogReader
		if cfg.Source == "servicebus" {
			r, closeSB, err := serviceBusBacklog(ctx, cfg, log)
			if err != nil {
				log.Warn("the backlog gauges are not reported: cannot reach Service Bus", "err", err)
				return
			}
			defer closeSB()
			read = r
		} else {
			durable := cfg.Durable
			if cfg.DryRun {
				durable += "-dryrun" // as openSource: the consumer this process reads
			}
			read = natsBacklog(jsc, cfg.Stream, durable)
		}
		pollBacklog(ctx, backlogEvery, read, m, log)
	})
	return func() { cancel(); wg.Wait() }
}

// pollBacklog reads the source every interval, starting at once, and
// publishes what it learns. A figure the read could not get is removed (a
// stale backlog would mislead the autoscaler); a change between failing and
// working is logged once, not at every tick.
func pollBacklog(ctx context.Context, every time.Duration, read backlogReader, m *metrics.Metrics, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		rctx, cancel := context.WithTimeout(ctx, every)
		r, err := read(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			log.Warn("cannot read the command backlog; what cannot be read is absent until it can", "err", err)
		case err == nil && failing:
			log.Info("the command backlog can be read again")
		}
		failing = err != nil
		m.SetBacklog(r.messages, r.messagesOK)
		m.SetOldestMessageAge(r.oldest, r.oldestOK)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// natsBacklog reads the durable consumer's backlog.
func natsBacklog(jsc jetstream.JetStream, stream, durable string) backlogReader {
	return func(ctx context.Context) (reading, error) {
		b, err := jsconsumer.ReadBacklog(ctx, jsc, stream, durable, time.Now())
		if err != nil {
			return reading{}, err
		}
		return reading{messages: float64(b.Messages), oldest: b.Oldest.Seconds(), messagesOK: true, oldestOK: true}, nil
	}
}

// serviceBusBacklog opens the clients the backlog needs, as the source opens
// its own (a connection string, or the namespace with azidentity), and
// finds out once what the identity may read: without the Manage right the
// count is never asked again (one warning, docs/SPEC.md §7); on a session-enabled
// entity the oldest age is never peeked.
func serviceBusBacklog(ctx context.Context, cfg *config.Config, log *slog.Logger) (backlogReader, func(), error) {
	sb := sbConfig(cfg)
	if err := sb.Validate(); err != nil {
		return nil, nil, err
	}
	var (
		ac  *admin.Client
		cl  *azservicebus.Client
		err error
	)
	// One retry at most: the next tick is the retry, and a read must not
	// outlast the interval.
	adminOpts := &admin.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry: policy.RetryOptions{MaxRetries: 1, TryTimeout: backlogEvery / 3}}}
	if sb.ConnectionString != "" {
		if ac, err = admin.NewClientFromConnectionString(sb.ConnectionString, adminOpts); err == nil {
			cl, err = azservicebus.NewClientFromConnectionString(sb.ConnectionString, nil)
		}
	} else {
		var cred azcore.TokenCredential
		if cred, err = azidentity.NewDefaultAzureCredential(nil); err == nil {
			if ac, err = admin.NewClient(sb.Namespace, cred, adminOpts); err == nil {
				cl, err = azservicebus.NewClient(sb.Namespace, cred, nil)
			}
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("backlog clients: %w", err)
	}
	var recv *azservicebus.Receiver
	if sb.Queue != "" {
		recv, err = cl.NewReceiverForQueue(sb.Queue, nil)
	} else {
		recv, err = cl.NewReceiverForSubscription(sb.Topic, sb.Subscription, nil)
	}
	if err != nil {
		_ = cl.Close(ctx)
		return nil, nil, fmt.Errorf("backlog receiver: %w", err)
	}
	closeAll := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = recv.Close(cctx)
		_ = cl.Close(cctx)
	}

	entity := servicebus.BacklogEntity{Queue: sb.Queue, Topic: sb.Topic, Subscription: sb.Subscription}
	countOK, peekOK := true, true
	session, err := servicebus.RequiresSession(ctx, ac, entity)
	switch {
	case errors.Is(err, servicebus.ErrBacklogNotPermitted):
		countOK = false
		log.Warn("graphops_backlog_messages is not reported: the identity may not read the entity's runtime properties; grant it Manage or the Azure Service Bus Data Owner role, or scale on the native azure-servicebus trigger", "err", err)
	case cfg.SBSessions || (err == nil && session):
		// SERVICEBUS_SESSIONS says so even where the entity's properties
		// cannot be read (and a session-less peek would lock a session).
		peekOK = false
		log.Info("graphops_oldest_message_age_seconds is not reported: a session-enabled entity cannot be peeked as a whole")
	}
	// A transient error here is left to the reads below, which retry.

	var mu sync.Mutex // the reader runs on one goroutine; the lock keeps the flags honest if that changes
	read := func(ctx context.Context) (reading, error) {
		mu.Lock()
		defer mu.Unlock()
		var (
			r    reading
			errs []error
		)
		if countOK {
			n, err := servicebus.ReadActiveMessages(ctx, ac, entity)
			switch {
			case errors.Is(err, servicebus.ErrBacklogNotPermitted):
				// Rights can be taken away after start-up too.
				countOK = false
				log.Warn("graphops_backlog_messages is no longer reported: the identity may not read the entity's runtime properties", "err", err)
			case err != nil:
				errs = append(errs, err)
			default:
				r.messages, r.messagesOK = float64(n), true
			}
		}
		if peekOK {
			age, err := servicebus.PeekOldest(ctx, recv, time.Now())
			switch {
			case errors.Is(err, servicebus.ErrSessionEntity):
				peekOK = false
				log.Info("graphops_oldest_message_age_seconds is not reported: a session-enabled entity cannot be peeked as a whole")
			case err != nil:
				errs = append(errs, err)
			default:
				r.oldest, r.oldestOK = age.Seconds(), true
			}
		}
		return r, errors.Join(errs...)
	}
	return read, closeAll, nil
}
