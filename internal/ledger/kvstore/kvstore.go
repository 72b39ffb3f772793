// Package kvstore is the ledger.Store kept in a NATS JetStream key-value
// bucket: the default store when commands come from NATS.
//
// It owns the bucket's configuration and the mapping of the four Store
// primitives onto jetstream.PublishMsg with expected-last-subject-sequence
// checks; revisions are the bucket stream's sequence numbers, so they grow and
// never repeat. It does not know what the ledger stores in a value.
//
// Time to live: on nats-server 2.11 and later every write carries a
// per-message TTL (the bucket has LimitMarkerTTL set, which turns on the
// stream's AllowMsgTTL). Older servers have no per-message TTL: the store then
// falls back to the bucket's MaxAge (Retention) for every key, ignores the ttl
// of each call, logs that once and reports it through PerKeyTTL. In both modes
// no key outlives Retention: a ttl longer than Retention is cut to it.
package kvstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/retry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	DefaultBucket    = "GRAPHOPS_LEDGER"
	DefaultRetention = 7 * 24 * time.Hour
	DefaultReplicas  = 1
)

// markerTTL is how long delete markers (ours, and those the server leaves
// when a key expires) stay in the bucket. Long enough for `nats kv watch` to
// show them, short so that a later Create of the key is again one publish
// instead of publish, read and publish.
const markerTTL = time.Minute

// maxCreateAttempts bounds Create's retries while delete markers of the key
// come and go under it.
const maxCreateAttempts = 4

// Config of a Store.
type Config struct {
	// Bucket is the key-value bucket's name; default "GRAPHOPS_LEDGER".
	Bucket string
	// Retention is the bucket's MaxAge and the ttl of writes with ttl <= 0;
	// default 7 days, at least 1s (the server counts TTLs in whole seconds).
	Retention time.Duration
	// Replicas of the bucket's stream; default 1, at most 5.
	Replicas int
}

// Validate fills in defaults for zero fields, then checks the fields; the
// error names the bad one.
func (c *Config) Validate() error {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	for _, r := range c.Bucket {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("kvstore: Bucket %q: only letters, digits, '_' and '-' are allowed", c.Bucket)
		}
	}
	if c.Retention < time.Second {
		return fmt.Errorf("kvstore: Retention %s: must be at least 1s", c.Retention)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("kvstore: Replicas %d: must be between 1 and 5", c.Replicas)
	}
	return nil
}

// Option configures New.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger sets the logger of the store's one start-up warning (per-key
// TTL unsupported by the server); default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Store is a ledger.Store in a JetStream key-value bucket. It is safe for
// concurrent use.
type Store struct {
	js        jetstream.JetStream // writes: PublishMsg with the expected last sequence
	kv        jetstream.KeyValue
	stream    jetstream.Stream
	subject   string // "$KV.<bucket>." prefix of every key's subject
	retention time.Duration
	perKeyTTL bool
}

var _ ledger.Store = (*Store)(nil)

// bucketCreator is the part of jetstream.JetStream that creates buckets.
type bucketCreator interface {
	CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error)
}

// New creates the bucket when missing (or updates its configuration) and
// returns a store on it.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		opt(&o)
	}
	kv, perKeyTTL, err := createBucket(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	if !perKeyTTL {
		o.logger.Warn("nats-server has no per-message TTL (needs 2.11 or later): ledger keys expire only after the bucket's retention, whatever ttl they were written with",
			"bucket", cfg.Bucket, "retention", cfg.Retention)
	}
	// The stream handle reads a key's last message, markers included, which
	// the KeyValue API hides; one stream-info call here, none per operation.
	stream, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("kvstore: bucket %s: %w", cfg.Bucket, err)
	}
	return &Store{
		js:        js,
		kv:        kv,
		stream:    stream,
		subject:   "$KV." + cfg.Bucket + ".",
		retention: cfg.Retention,
		perKeyTTL: perKeyTTL,
	}, nil
}

// Open returns a store on the existing bucket cfg.Bucket, leaving its
// configuration as it is: for readers such as `worker history`, which must
// not create a ledger where there is none. A missing bucket is
// jetstream.ErrBucketNotFound.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("kvstore: bucket %s: %w", cfg.Bucket, err)
	}
	stream, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("kvstore: bucket %s: %w", cfg.Bucket, err)
	}
	sc := stream.CachedInfo().Config
	return &Store{
		js:        js,
		kv:        kv,
		stream:    stream,
		subject:   "$KV." + cfg.Bucket + ".",
		retention: cmp.Or(sc.MaxAge, cfg.Retention),
		perKeyTTL: sc.AllowMsgTTL,
	}, nil
}

// createBucket creates or updates the bucket with per-message TTLs, or
// without them when the server is too old to have them; it reports which.
func createBucket(ctx context.Context, js bucketCreator, cfg Config) (jetstream.KeyValue, bool, error) {
	kvc := jetstream.KeyValueConfig{
		Bucket:         cfg.Bucket,
		Description:    "graphops worker ledger",
		History:        1,
		TTL:            cfg.Retention,
		Replicas:       cfg.Replicas,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: markerTTL,
	}
	kv, err := createOrUpdate(ctx, js, kvc)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		kvc.LimitMarkerTTL = 0
		kv, err = createOrUpdate(ctx, js, kvc)
		if err != nil {
			return nil, false, fmt.Errorf("kvstore: bucket %s: %w", cfg.Bucket, err)
		}
		return kv, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("kvstore: bucket %s: %w", cfg.Bucket, err)
	}
	return kv, true, nil
}

// createOrUpdate creates or updates the bucket, trying again a few times
// when the server answers 500: a server that fails to set up a stream's
// store (seen under load: "error creating store for stream") often
// succeeds a moment later, and start-up should not fail for it.
func createOrUpdate(ctx context.Context, js bucketCreator, kvc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Tries: 4}, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, kvc)
		var apiErr *jetstream.APIError
		if err != nil && !(errors.As(err, &apiErr) && apiErr.Code == 500) {
			return backoff.Permanent(err)
		}
		return err
	})
	return kv, err
}

// PerKeyTTL reports whether writes honour their ttl; when false (servers
// before 2.11) every key lives for Retention after its last write.
func (s *Store) PerKeyTTL() bool { return s.perKeyTTL }

// Bucket is the name of the store's bucket.
func (s *Store) Bucket() string { return s.kv.Bucket() }

// Get returns the key's current value, or ledger.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (ledger.Entry, error) {
	if err := validKey(key); err != nil {
		return ledger.Entry{}, err
	}
	e, err := s.last(ctx, key)
	if err != nil {
		return ledger.Entry{}, fmt.Errorf("kvstore: get %s: %w", key, err)
	}
	if !e.live {
		return ledger.Entry{}, fmt.Errorf("kvstore: get %s: %w", key, ledger.ErrNotFound)
	}
	return ledger.Entry{Value: e.value, Revision: e.revision}, nil
}

// Create writes value only when key is absent: when the key's subject has no
// message, or only a delete marker (which Create then replaces), as
// jetstream.KeyValue.Create does.
func (s *Store) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	var expect uint64 // 0: the subject holds no message
	// Delete markers of the key may come and go under a create (ours, or
	// the server's when a key expires): a few tries, no waiting between
	// them, as each try learns the marker it must expect.
	var rev uint64
	err := retry.Do(ctx, retry.Policy{Tries: maxCreateAttempts}, func(context.Context) error {
		r, err := s.publish(ctx, key, value, expect, ttl)
		if err == nil {
			rev = r
			return nil
		}
		if !isWrongLastSeq(err) {
			return backoff.Permanent(err)
		}
		// The subject's last message is not the one expected: a value (the
		// key exists) or a marker left by a delete or an expiry, whose
		// revision the next attempt expects.
		e, err := s.last(ctx, key)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			expect = 0 // the marker expired meanwhile
		case err != nil:
			return backoff.Permanent(err)
		case e.live:
			return backoff.Permanent(ledger.ErrExists)
		default:
			expect = e.revision
		}
		return errMarkerMoved
	})
	if errors.Is(err, errMarkerMoved) {
		// Other writers kept changing the key under us: they won.
		return 0, fmt.Errorf("kvstore: create %s: key changed %d times during the create: %w", key, maxCreateAttempts, ledger.ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("kvstore: create %s: %w", key, err)
	}
	return rev, nil
}

// errMarkerMoved is a create that found a marker where it expected none, or
// another one: the next try expects what it found.
var errMarkerMoved = errors.New("kvstore: the key's delete marker changed")

// Update writes value only when key's current revision is rev. The publish
// expects rev as the subject's last sequence; a marker or an empty subject
// never matches, as no caller holds a marker's revision.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	if rev == 0 {
		// Expecting sequence 0 means "subject empty" to the server: a create.
		return 0, fmt.Errorf("kvstore: update %s: revision 0: %w", key, ledger.ErrConflict)
	}
	n, err := s.publish(ctx, key, value, rev, ttl)
	if isWrongLastSeq(err) {
		return 0, fmt.Errorf("kvstore: update %s at revision %d: %w", key, rev, ledger.ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("kvstore: update %s: %w", key, err)
	}
	return n, nil
}

// Delete removes key only when its current revision is rev: a purge marker
// (which drops the value at once) expecting rev as the last sequence, itself
// removed after markerTTL when the server has per-message TTL.
func (s *Store) Delete(ctx context.Context, key string, rev uint64) error {
	if err := validKey(key); err != nil {
		return err
	}
	if rev != 0 { // LastRevision(0) would purge unconditionally
		opts := []jetstream.KVDeleteOpt{jetstream.LastRevision(rev)}
		if s.perKeyTTL {
			opts = append(opts, jetstream.PurgeTTL(markerTTL))
		}
		err := s.kv.Purge(ctx, key, opts...)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("kvstore: delete %s: %w", key, err)
		}
	}
	// The revision differs: a conflict unless the key is absent.
	e, err := s.last(ctx, key)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("kvstore: delete %s: %w", key, err)
	case !e.live:
		return nil
	}
	return fmt.Errorf("kvstore: delete %s at revision %d (current %d): %w", key, rev, e.revision, ledger.ErrConflict)
}

// publish writes value to key's subject expecting the subject's last
// sequence to be expect, with the message TTL the store gives ttl, and
// returns the message's sequence. jetstream.PublishMsg brings the default
// timeout, the retries while a stream leader moves (no responders) and the
// reading of the ack.
func (s *Store) publish(ctx context.Context, key string, value []byte, expect uint64, ttl time.Duration) (uint64, error) {
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expect)}
	if d := msgTTL(ttl, s.retention, s.perKeyTTL); d > 0 {
		opts = append(opts, jetstream.WithMsgTTL(d))
	}
	ack, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: s.subject + key, Data: value}, opts...)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// msgTTL is the per-message TTL of a write with ttl, 0 for none (the bucket's
// MaxAge, retention, then applies). The server counts TTLs in whole seconds,
// truncating, and refuses less than 1s: round up so a key lives at least ttl.
// MaxAge removes a message at retention whatever its TTL, so longer ttls are
// left to it.
func msgTTL(ttl, retention time.Duration, perKeyTTL bool) time.Duration {
	if !perKeyTTL || ttl <= 0 {
		return 0
	}
	secs := (ttl + time.Second - 1) / time.Second
	d := secs * time.Second
	if d >= retention {
		return 0
	}
	return d
}

// entry is the last message of a key's subject.
type entry struct {
	value    []byte
	revision uint64
	live     bool // false: a delete, purge or expiry marker
}

// last reads the last message of key's subject (a direct get: one round trip
// to any replica); ledger.ErrNotFound when the subject has none.
func (s *Store) last(ctx context.Context, key string) (entry, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return entry{}, ledger.ErrNotFound
	}
	if err != nil {
		return entry{}, err
	}
	e := entry{value: m.Data, revision: m.Sequence, live: true}
	if len(m.Header) > 0 {
		switch {
		case m.Header.Get("KV-Operation") != "": // DEL or PURGE
			e.live = false
		case m.Header.Get(jetstream.MarkerReasonHeader) != "": // MaxAge, Purge, Remove
			e.live = false
		}
	}
	return e, nil
}

// isWrongLastSeq reports whether err is the server refusing a publish whose
// expected last subject sequence did not match (10071; 10164 on replicated
// streams).
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// validKey checks the ledger.Store key contract (ledger.ValidKey).
func validKey(key string) error {
	if err := ledger.ValidKey(key); err != nil {
		return fmt.Errorf("kvstore: %w", err)
	}
	return nil
}
