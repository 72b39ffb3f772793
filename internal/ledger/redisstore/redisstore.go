// Package redisstore is the ledger.Store kept in Redis, for deployments whose
// commands come from Azure Service Bus.
//
// It owns the layout of the store's keys under its prefix and the Lua
// scripts that make Create, Update and Delete atomic compare-and-swaps; it
// does not know what the ledger stores in a value.
//
// Layout: each key is a hash at Prefix+key with fields v (the value) and r
// (the revision, decimal), with a PEXPIRE restarted by every write. Revisions
// come from one counter at Prefix+"#revision" (no TTL; '#' cannot appear in
// a key, so it never collides). A single counter makes revisions unique across
// all keys and all time, so a Create after a Delete or an expiry never hands
// out a revision that a stale writer of the key's earlier life could still
// hold; a per-key counter would expire with its key and restart. When the
// counter is missing (a new prefix, or a Redis that lost its data) it starts
// at the server's clock in microseconds, above any revision an earlier
// counter can have reached unless it served more than a million writes per
// second on average.
//
// Redis 5 or later (scripts replicate their effects, not their source, which
// the read of TIME needs); a single node or a primary with replicas, not
// Redis Cluster (a script touches its key and the counter, which Cluster
// would put in different slots).
package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultAddr      = "127.0.0.1:6379"
	DefaultPrefix    = "graphops:ledger:"
	DefaultRetention = 7 * 24 * time.Hour
)

// Config of a Store.
type Config struct {
	// Addr is Redis's host:port; default "127.0.0.1:6379".
	Addr string
	// Password for AUTH; empty for none.
	Password string
	// DB is the database number; default 0.
	DB int
	// Prefix starts every key the store writes; default "graphops:ledger:".
	Prefix string
	// Retention is the ttl of writes with ttl <= 0 and the longest any key
	// lives (longer ttls are cut to it, as in the JetStream store); default
	// 7 days, at least 1ms.
	Retention time.Duration
	// PoolSize is the number of connections; default go-redis's (10 per
	// CPU).
	PoolSize int
	// TLS connects with TLS (Azure Cache for Redis only serves TLS, on
	// port 6380).
	TLS bool
}

// Validate fills in defaults for zero fields, then checks the fields; the
// error names the bad one.
func (c *Config) Validate() error {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		return fmt.Errorf("redisstore: Addr %q: want host:port", c.Addr)
	}
	if c.DB < 0 {
		return fmt.Errorf("redisstore: DB %d: must not be negative", c.DB)
	}
	if c.Retention < time.Millisecond {
		return fmt.Errorf("redisstore: Retention %s: must be at least 1ms", c.Retention)
	}
	if c.PoolSize < 0 {
		return fmt.Errorf("redisstore: PoolSize %d: must not be negative", c.PoolSize)
	}
	return nil
}

// nextRevision is the Lua function every writing script uses.
const nextRevision = `
local function nextrev(counter)
  local n = redis.call('INCR', counter)
  if n == 1 then
    local t = redis.call('TIME')
    n = tonumber(t[1]) * 1000000 + tonumber(t[2])
    redis.call('SET', counter, string.format('%d', n))
  end
  return string.format('%d', n)
end
`

// The scripts' sources. KEYS[1] is the key, KEYS[2] the revision counter.
// Create and update answer the new revision as a decimal string, or nil when
// the key exists (create) or its revision differs (update); delete answers 1
// when the key is gone, 0 when its revision differs from ARGV[1].
const (
	createSource = nextRevision + `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local rev = nextrev(KEYS[2])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'r', rev)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return rev
`
	updateSource = nextRevision + `
if redis.call('HGET', KEYS[1], 'r') ~= ARGV[2] then return false end
local rev = nextrev(KEYS[2])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'r', rev)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return rev
`
	deleteSource = `
local r = redis.call('HGET', KEYS[1], 'r')
if not r then return 1 end
if r ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`
)

// Store is a ledger.Store in Redis. It is safe for concurrent use.
type Store struct {
	client    *redis.Client
	create    *redis.Script
	update    *redis.Script
	delete    *redis.Script
	prefix    string
	counter   string
	retention time.Duration
}

var _ ledger.Store = (*Store)(nil)

// New connects to Redis, checks it answers and loads the scripts.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := &redis.Options{
		Addr:     cfg.Addr,
		Password: cfg.Password,
		DB:       cfg.DB,
		PoolSize: cfg.PoolSize,
		// A retried script whose first run did write would answer "exists"
		// or "conflict" for our own write: surface the transport error
		// instead, which the ledger treats as an unknown outcome.
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
	}
	if cfg.TLS {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	client := redis.NewClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redisstore: cannot reach Redis at %s (REDIS_ADDR): %w", cfg.Addr, err)
	}
	s := &Store{
		client:    client,
		create:    redis.NewScript(createSource),
		update:    redis.NewScript(updateSource),
		delete:    redis.NewScript(deleteSource),
		prefix:    cfg.Prefix,
		counter:   cfg.Prefix + "#revision",
		retention: cfg.Retention,
	}
	// Loading now fails start-up on a Redis without scripting, and spares
	// the first calls a NOSCRIPT round trip.
	for _, sc := range []*redis.Script{s.create, s.update, s.delete} {
		if err := sc.Load(ctx, client).Err(); err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("redisstore: loading a script into Redis at %s: %w", cfg.Addr, err)
		}
	}
	return s, nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.client.Close() }

// Ping checks that Redis answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// Get returns the key's current value, or ledger.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (ledger.Entry, error) {
	if err := validKey(key); err != nil {
		return ledger.Entry{}, err
	}
	vals, err := s.client.HMGet(ctx, s.prefix+key, "v", "r").Result()
	if err != nil {
		return ledger.Entry{}, fmt.Errorf("redisstore: get %s: %w", key, err)
	}
	v, okV := vals[0].(string)
	r, okR := vals[1].(string)
	if !okV || !okR {
		return ledger.Entry{}, fmt.Errorf("redisstore: get %s: %w", key, ledger.ErrNotFound)
	}
	rev, err := strconv.ParseUint(r, 10, 64)
	if err != nil {
		return ledger.Entry{}, fmt.Errorf("redisstore: get %s: revision %q: %w", key, r, err)
	}
	return ledger.Entry{Value: []byte(v), Revision: rev}, nil
}

// Create writes value only when key is absent.
func (s *Store) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	res, err := s.create.Run(ctx, s.client, []string{s.prefix + key, s.counter}, value, s.pttl(ttl)).Text()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("redisstore: create %s: %w", key, ledger.ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("redisstore: create %s: %w", key, err)
	}
	return parseRevision("create", key, res)
}

// Update writes value only when key's current revision is rev.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	res, err := s.update.Run(ctx, s.client, []string{s.prefix + key, s.counter},
		value, strconv.FormatUint(rev, 10), s.pttl(ttl)).Text()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("redisstore: update %s at revision %d: %w", key, rev, ledger.ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("redisstore: update %s: %w", key, err)
	}
	return parseRevision("update", key, res)
}

// Delete removes key only when its current revision is rev.
func (s *Store) Delete(ctx context.Context, key string, rev uint64) error {
	if err := validKey(key); err != nil {
		return err
	}
	n, err := s.delete.Run(ctx, s.client, []string{s.prefix + key}, strconv.FormatUint(rev, 10)).Int()
	if err != nil {
		return fmt.Errorf("redisstore: delete %s: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("redisstore: delete %s at revision %d: %w", key, rev, ledger.ErrConflict)
	}
	return nil
}

// pttl is the PEXPIRE of a write with ttl, in milliseconds: the retention
// for ttl <= 0 or beyond it, else ttl rounded up to a millisecond.
func (s *Store) pttl(ttl time.Duration) int64 {
	if ttl <= 0 || ttl > s.retention {
		ttl = s.retention
	}
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}

func parseRevision(op, key, res string) (uint64, error) {
	rev, err := strconv.ParseUint(res, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redisstore: %s %s: revision %q: %w", op, key, res, err)
	}
	return rev, nil
}

// validKey checks the ledger.Store key contract (ledger.ValidKey).
func validKey(key string) error {
	if err := ledger.ValidKey(key); err != nil {
		return fmt.Errorf("redisstore: %w", err)
	}
	return nil
}
