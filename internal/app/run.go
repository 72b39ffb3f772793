// Package app wires the worker's packages into the programs of the command
// line: run (consume), dev (the whole flow on one machine), submit and the
// dead-letter commands. It owns start-up order and shutdown; behaviour lives
// in the packages it wires.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/kvstore"
	"github.com/graphops/worker/internal/ledger/redisstore"
	"github.com/graphops/worker/internal/natsembed"
	"github.com/graphops/worker/internal/outcome"
	"github.com/graphops/worker/internal/pacer"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Hooks let `worker dev` and tests watch a running worker.
type Hooks struct {
	// OnSettled sees every outcome.
	OnSettled func(worker.Settled)
	// OnStarted is called once the worker consumes, with the admin
	// address and the broker URL.
	OnStarted func(adminAddr, natsURL string)
	// Credential replaces the azidentity/GRAPH_TOKEN credential.
	Credential azcore.TokenCredential
}

// Run consumes commands until ctx is done (SIGTERM/SIGINT), then drains
// within SHUTDOWN_GRACE and returns nil.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, hooks Hooks) error {
	m := metrics.New()
	var draining, started, storeDown atomic.Bool
	warnRoleRequests(cfg, log)

	// Graph first: bad credentials or URL stop start-up before any message
	// is touched.
	cred := hooks.Credential
	if cred == nil {
		var err error
		if cred, err = graphops.NewCredential(graphops.AuthConfig{StaticToken: cfg.GraphToken}); err != nil {
			return err
		}
		if cfg.GraphToken == "" {
			// Credentials that cannot give a token (none configured, a
			// wrong secret, no managed identity) would dead-letter every
			// command; the credential caches the token for the first call.
			tctx, cancel := context.WithTimeout(ctx, cfg.GraphTimeout)
			_, err := cred.GetToken(tctx, policy.TokenRequestOptions{Scopes: []string{graphops.Scope}})
			cancel()
			if err != nil {
				return fmt.Errorf("GRAPH_TOKEN: unset, and azidentity (AZURE_* or the managed identity) gives no Graph token: %s",
					strings.Join(strings.Fields(err.Error()), " "))
			}
		}
	}
	graph, err := graphops.NewClient(graphops.Config{
		BaseURL: cfg.GraphBaseURL, Timeout: cfg.GraphTimeout, Credential: cred,
		Observe: func(op graphops.Operation, code string, d time.Duration) { m.GraphRequest(string(op), code, d) },
	})
	if err != nil {
		return err
	}

	src, err := openBroker(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer src.Close()
	var proc atomic.Pointer[worker.Processor] // for /readyz, once made

	admin := metrics.NewAdmin(metrics.AdminConfig{Addr: cfg.AdminAddr, Ready: func() error {
		switch {
		case draining.Load():
			return errors.New("draining")
		case !started.Load():
			return errors.New("starting")
		case !src.Ready():
			return errors.New("broker disconnected")
		case storeDown.Load():
			return errors.New("idempotency store unreachable")
		}
		if p := proc.Load(); p != nil {
			return p.OutcomesReady()
		}
		return nil
	}}, m, log)
	if err := admin.Start(); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = admin.Shutdown(sctx)
	}()

	store, closeStore, err := openStore(ctx, cfg, src.JetStream(), log)
	if err != nil {
		return err
	}
	defer closeStore()
	if p, ok := store.(interface{ Ping(context.Context) error }); ok {
		// The JetStream store shares the broker's connection; a separate
		// store is probed so /readyz tells the truth about it.
		go probe(ctx, p.Ping, &storeDown, log)
	}
	owner := replicaID()
	led, err := ledger.New(store, ledger.Config{Owner: owner, Lease: cfg.LedgerLease, Retention: cfg.LedgerRetention, Observe: m.LedgerOp})
	if err != nil {
		return err
	}

	// pacers live until the worker has drained; their Run removes this
	// replica from the fleet so its share is reclaimed at once.
	pctx, stopPacers := context.WithCancel(context.WithoutCancel(ctx))
	var pacersDone sync.WaitGroup
	defer func() {
		// Before the store closes (earlier defers run later): leaving the
		// fleet needs it.
		stopPacers()
		pacersDone.Wait()
	}()
	pacers := map[command.Type]*pacer.Pacer{}
	for _, t := range command.Types() {
		op := string(t)
		pc, err := pacer.New(pacer.Config{Operation: op, ReplicaID: owner, Log: log,
			Fleet: pacer.NewStoreFleet(store, "pacer"),
			OnChange: func(rate float64, until time.Time) {
				m.SetPacerRate(op, rate)
				m.SetThrottledUntil(op, max(time.Until(until).Seconds(), 0))
			}})
		if err != nil {
			return err
		}
		pacers[t] = pc
		pacersDone.Go(func() { pc.Run(pctx) })
	}

	// Two clocks of a drain: drain (SIGTERM) hands waiting work back at
	// once; stop (grace over) abandons calls in flight.
	drain := ctx
	stop, cancelStop := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStop()
	go func() {
		<-drain.Done()
		draining.Store(true)
		log.Info("draining", "grace", cfg.ShutdownGrace)
		select {
		case <-time.After(cfg.ShutdownGrace - time.Second):
			cancelStop()
		case <-stop.Done():
		}
	}()

	outcomes, closeOutcomes, err := openOutcomes(ctx, cfg, src.JetStream())
	if err != nil {
		return err
	}
	defer closeOutcomes()
	p, err := worker.New(worker.Config{
		Command:         command.Options{RoleRequestUpdateDisabled: cfg.RoleRequestUpdate == "off"},
		RetryMaxElapsed: cfg.RetryMaxElapsed, HandbackAfter: cfg.HandbackAfter,
		BackoffInitial: cfg.RetryInitial, BackoffMax: cfg.RetryMax,
		// The ledger's leases only: the consumer runner renews each
		// message's broker lock from its own expiry.
		KeepAliveEvery:      cfg.LedgerLease / 3,
		SettleAfterNoAnswer: cfg.GraphSettle,
		DryRun:              cfg.DryRun,
	}, worker.Deps{Graph: graph, Ledger: led, Outcomes: outcomes, Pacers: pacers, Metrics: m, Log: log,
		OnSettled: hooks.OnSettled}, drain, stop)
	if err != nil {
		return err
	}
	proc.Store(p)

	commands, err := src.Consume(ctx, cfg, log, p.Admissible)
	if err != nil {
		return err
	}
	started.Store(true)
	defer startBacklog(ctx, cfg, src.JetStream(), m, log)() // docs/SPEC.md §7's source gauges; stops before the broker closes
	log.Info("consuming", "source", cfg.Source, "from", src.Name(), "replica", owner,
		"admin", admin.Addr(), "dry_run", cfg.DryRun, "concurrency", cfg.Concurrency, "outcome_events", cfg.OutcomeEvents)
	if hooks.OnStarted != nil {
		hooks.OnStarted(admin.Addr(), src.URL())
	}
	err = commands.Run(drain, p.Handle)
	draining.Store(true)
	cancelStop()
	stopPacers()
	log.Info("stopped")
	return err
}

// natsConn is a NATS connection, with the embedded server behind it when
// NATS_URL is empty.
type natsConn struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	url      string
	embedded *natsembed.Server
}

func (b *natsConn) close() {
	if b.nc != nil {
		_ = b.nc.Drain()
		b.nc.Close()
	}
	if b.embedded != nil {
		b.embedded.Stop()
	}
}

// connect connects to NATS_URL, or starts an embedded server under
// WORKER_DATA_DIR.
func connect(ctx context.Context, cfg *config.Config, log *slog.Logger) (*natsConn, error) {
	b := &natsConn{url: cfg.NATSURL}
	if b.url == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("WORKER_DATA_DIR: %w", err)
		}
		s, err := natsembed.Start(natsembed.Options{Dir: cfg.DataDir})
		if err != nil {
			return nil, fmt.Errorf("WORKER_DATA_DIR: %w", err)
		}
		b.embedded, b.url = s, s.URL()
		log.Info("embedded NATS server started", "url", b.url, "dir", cfg.DataDir)
	}
	opts := []nats.Option{nats.Name("graphops-worker"), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: the worker closed the connection itself
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	nc, err := nats.Connect(b.url, opts...)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("NATS_URL: cannot connect to %s: %w", b.url, err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		b.close()
		return nil, fmt.Errorf("NATS_URL: %w", err)
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		b.close()
		return nil, fmt.Errorf("NATS_URL: JetStream not available at %s: %w", b.url, err)
	}
	return b, nil
}

// openStore opens the idempotency store of LEDGER_STORE.
func openStore(ctx context.Context, cfg *config.Config, js jetstream.JetStream, log *slog.Logger) (ledger.Store, func(), error) {
	switch cfg.LedgerStore {
	case "redis":
		s, err := redisstore.New(ctx, redisstore.Config{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB, TLS: cfg.RedisTLS, Retention: cfg.LedgerRetention})
		if err != nil {
			setting := "REDIS_ADDR"
			if cfg.RedisTLS {
				setting = "REDIS_ADDR (with REDIS_TLS=true)"
			}
			return nil, nil, fmt.Errorf("%s: %w", setting, err)
		}
		return s, func() { _ = s.Close() }, nil
	default:
		s, err := kvstore.New(ctx, js, kvstore.Config{Bucket: cfg.LedgerBucket, Retention: cfg.LedgerRetention, Replicas: cfg.JSReplicas},
			kvstore.WithLogger(log))
		if err != nil {
			return nil, nil, fmt.Errorf("LEDGER_BUCKET: %w", err)
		}
		return s, func() {}, nil
	}
}

// openOutcomes opens the outcome-event publisher of OUTCOME_EVENTS (nil
// when off) on the broker of WORKER_SOURCE.
func openOutcomes(ctx context.Context, cfg *config.Config, js jetstream.JetStream) (worker.Publisher, func(), error) {
	if cfg.OutcomeEvents != "on" {
		return nil, func() {}, nil
	}
	if cfg.Source == "servicebus" {
		snd, closeSnd, err := servicebus.OpenSender(sbConfig(cfg), cfg.SBOutcomes)
		if err != nil {
			return nil, nil, fmt.Errorf("SERVICEBUS_OUTCOMES: %w", err)
		}
		return outcome.NewServiceBus(snd, cfg.SBOutcomes), func() { _ = closeSnd(context.Background()) }, nil
	}
	p, err := outcome.NewJetStream(ctx, js, outcome.JetStreamConfig{Stream: cfg.OutcomeStream,
		SubjectPrefix: cfg.OutcomePrefix, Replicas: cfg.JSReplicas})
	if err != nil {
		return nil, nil, fmt.Errorf("NATS_OUTCOME_STREAM: %w", err)
	}
	return p, func() {}, nil
}

// replicaID names this process in claims, leases and the pacer's fleet.
func replicaID() string {
	host, _ := os.Hostname()
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
}

// probe checks a dependency every few seconds and keeps the verdict for
// /readyz, which must not do I/O per request.
func probe(ctx context.Context, ping func(context.Context) error, down *atomic.Bool, log *slog.Logger) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := ping(pctx)
		cancel()
		if was := down.Swap(err != nil); was != (err != nil) {
			log.Warn("idempotency store health changed", "reachable", err == nil, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
