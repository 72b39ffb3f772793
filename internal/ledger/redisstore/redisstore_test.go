package redisstore_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/redisstore"
	"github.com/graphops/worker/internal/ledger/storetest"
	"github.com/redis/go-redis/v9"
)

// redisAddr is the Redis the integration tests use: REDIS_ADDR, default
// 127.0.0.1:6379. Under -short they skip; otherwise an unreachable Redis
// fails them.
func redisAddr(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs Redis at REDIS_ADDR")
	}
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = redisstore.DefaultAddr
	}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is unreachable (%v): start redis-server (CI starts one) or set REDIS_ADDR, or run with -short", addr, err)
	}
	return addr
}

// factory makes a store per call, each under its own prefix, whose keys
// are removed when the test ends.
func factory(addr string) storetest.Factory {
	return func(t *testing.T, o storetest.Options) ledger.Store {
		t.Helper()
		prefix := "graphops:storetest:" + o.Name + ":"
		s, err := redisstore.New(t.Context(), redisstore.Config{Addr: addr, Prefix: prefix, Retention: o.Retention})
		if err != nil {
			t.Fatalf("redisstore.New: %v", err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		if !o.Attach {
			t.Cleanup(func() { storetest.RemoveRedisPrefix(t, addr, prefix) })
		}
		return s
	}
}

func TestStore(t *testing.T) {
	addr := redisAddr(t)
	storetest.Run(t, factory(addr), storetest.Features{
		MinTTL:    500 * time.Millisecond,
		ChildTest: "TestStoreChild",
		ChildEnv:  []string{"REDIS_ADDR=" + addr},
	})
}

// TestStoreChild is a racer process of TestStore; on its own it skips.
func TestStoreChild(t *testing.T) {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = redisstore.DefaultAddr
	}
	storetest.RunChild(t, factory(addr))
}

func TestRevisionsStayAboveEarlierOnesWhenTheCounterIsLost(t *testing.T) {
	addr := redisAddr(t)
	prefix := "graphops:storetest:" + storetest.NewName() + ":"
	t.Cleanup(func() { storetest.RemoveRedisPrefix(t, addr, prefix) })
	s, err := redisstore.New(t.Context(), redisstore.Config{Addr: addr, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	before := uint64(time.Now().UnixMicro())
	rev1, err := s.Create(t.Context(), "k", []byte("v1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rev1 < before {
		t.Fatalf("first revision %d is below the clock in microseconds %d", rev1, before)
	}
	last := rev1
	for i := range 100 {
		if last, err = s.Update(t.Context(), "k", []byte("v"), last, 0); err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
	}
	// Redis loses everything under the prefix, the counter included.
	storetest.RemoveRedisPrefix(t, addr, prefix)
	rev2, err := s.Create(t.Context(), "k", []byte("v2"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rev2 <= last {
		t.Fatalf("after the counter was lost Create returned revision %d, not above the earlier %d", rev2, last)
	}
	if _, err := s.Update(t.Context(), "k", []byte("stale"), last, 0); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("Update at a revision of the key's earlier life: got %v, want ErrConflict", err)
	}
}

func TestNewNamesREDIS_ADDRWhenRedisIsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, redisstore.Config{Addr: addr})
	if err == nil {
		s.Close()
		t.Fatal("New succeeded with nothing listening")
	}
	if !strings.Contains(err.Error(), "REDIS_ADDR") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("New error %q does not name REDIS_ADDR and %s", err, addr)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     redisstore.Config
		want    redisstore.Config
		wantErr string // a substring naming the field; "" for none
	}{
		{
			name: "an empty config gets the defaults",
			want: redisstore.Config{Addr: "127.0.0.1:6379", Prefix: "graphops:ledger:", Retention: 7 * 24 * time.Hour},
		},
		{
			name: "set fields are kept",
			cfg:  redisstore.Config{Addr: "redis.example:6380", Password: "p", DB: 2, Prefix: "x:", Retention: time.Hour, PoolSize: 4, TLS: true},
			want: redisstore.Config{Addr: "redis.example:6380", Password: "p", DB: 2, Prefix: "x:", Retention: time.Hour, PoolSize: 4, TLS: true},
		},
		{name: "an address without a port is refused", cfg: redisstore.Config{Addr: "localhost"}, wantErr: "Addr"},
		{name: "a negative DB is refused", cfg: redisstore.Config{DB: -1}, wantErr: "DB"},
		{name: "a retention under a millisecond is refused", cfg: redisstore.Config{Retention: time.Microsecond}, wantErr: "Retention"},
		{name: "a negative retention is refused", cfg: redisstore.Config{Retention: -time.Hour}, wantErr: "Retention"},
		{name: "a negative pool size is refused", cfg: redisstore.Config{PoolSize: -1}, wantErr: "PoolSize"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			err := cfg.Validate()
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if cfg != c.want {
					t.Fatalf("after Validate: %+v, want %+v", cfg, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Validate = %v, want an error naming %s", err, c.wantErr)
			}
		})
	}
}

// BenchmarkStore measures the ledger's cycle for one command (see
// storetest.Benchmark).
func BenchmarkStore(b *testing.B) {
	addr := redisAddr(b)
	prefix := "graphops:storetest:" + storetest.NewName() + ":"
	b.Cleanup(func() { storetest.RemoveRedisPrefix(b, addr, prefix) })
	s, err := redisstore.New(b.Context(), redisstore.Config{Addr: addr, Prefix: prefix, Retention: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.Benchmark(b, s)
}
