package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/history"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/kvstore"
	"github.com/graphops/worker/internal/ledger/redisstore"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// historyTimeout bounds `worker history`: a store that does not answer in
// this time is unreachable.
const historyTimeout = 30 * time.Second

// History runs `worker history ID [--json]` (docs/SPEC.md §8) on the ledger of
// LEDGER_STORE: a *UsageError for a bad argument, history.ErrUnknown when
// the ledger knows nothing of ID; any other error means the store could not
// be read.
func History(ctx context.Context, cfg *config.Config, args []string, out io.Writer) error {
	var (
		id      string
		jsonOut bool
		ids     int
	)
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--json" || a == "-json":
			jsonOut = true
		case a == "--":
			ids += len(args) - i - 1
			if len(args) > i+1 {
				id = args[i+1]
			}
			i = len(args)
		case strings.HasPrefix(a, "-"):
			return &UsageError{"unknown flag " + a + " (want ID [--json])"}
		default:
			id = a
			ids++
		}
	}
	if ids != 1 {
		return &UsageError{"want one ID: a command id, or a request id (accessPackageAssignmentRequestId, or privilegedAccessId/governanceRoleAssignmentRequestId)"}
	}

	if err := history.CheckID(id); err != nil {
		return &UsageError{err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	store, closeStore, err := openLedgerForReading(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()
	entries, err := history.Find(ctx, store, id)
	if err != nil {
		return err
	}
	if jsonOut {
		return history.WriteJSON(out, entries)
	}
	return history.WriteTable(out, entries)
}

// openLedgerForReading opens the ledger of LEDGER_STORE without creating
// anything: a missing JetStream bucket is a ledger that knows nothing.
func openLedgerForReading(ctx context.Context, cfg *config.Config) (ledger.Store, func(), error) {
	if cfg.LedgerStore == "redis" {
		s, err := redisstore.New(ctx, redisstore.Config{Addr: cfg.RedisAddr, Password: cfg.RedisPassword,
			DB: cfg.RedisDB, TLS: cfg.RedisTLS, Retention: cfg.LedgerRetention})
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_ADDR: %w", err)
		}
		return s, func() { _ = s.Close() }, nil
	}
	if cfg.NATSURL == "" {
		// An embedded server would open the data directory a running
		// worker holds.
		return nil, nil, errors.New("NATS_URL: history reads the ledger through the broker (e.g. NATS_URL=nats://127.0.0.1:4222)")
	}
	opts := []nats.Option{nats.Name("graphops-history"), nats.Timeout(5 * time.Second)}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS_URL: cannot connect to %s: %w", cfg.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("NATS_URL: %w", err)
	}
	s, err := kvstore.Open(ctx, js, kvstore.Config{Bucket: cfg.LedgerBucket, Retention: cfg.LedgerRetention})
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		nc.Close()
		return nil, nil, fmt.Errorf("%w (LEDGER_BUCKET %s does not exist at %s)", history.ErrUnknown, cfg.LedgerBucket, cfg.NATSURL)
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("LEDGER_BUCKET: %w", err)
	}
	return s, nc.Close, nil
}
