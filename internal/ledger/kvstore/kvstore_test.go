package kvstore_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/kvstore"
	"github.com/graphops/worker/internal/ledger/storetest"
	"github.com/graphops/worker/internal/natsembed/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// childURLEnv hands the URL of the parent's server to the racer processes.
const childURLEnv = "KVSTORE_TEST_NATS_URL"

// legacyURLEnv names a nats-server older than 2.11 (e.g. Debian's 2.9) to
// run the suite against in fallback mode; unset skips that test.
const legacyURLEnv = "KVSTORE_TEST_LEGACY_NATS_URL"

// factory makes a store per call, each in its own bucket named after
// o.Name, deleted when the test ends. wantPerKeyTTL is what the server
// should support.
func factory(js jetstream.JetStream, wantPerKeyTTL bool) storetest.Factory {
	return func(t *testing.T, o storetest.Options) ledger.Store {
		t.Helper()
		bucket := "ledger-" + o.Name
		s, err := kvstore.New(t.Context(), js, kvstore.Config{Bucket: bucket, Retention: o.Retention})
		if err != nil {
			t.Fatalf("kvstore.New: %v", err)
		}
		if s.PerKeyTTL() != wantPerKeyTTL {
			t.Fatalf("PerKeyTTL() = %v, want %v", s.PerKeyTTL(), wantPerKeyTTL)
		}
		if s.Bucket() != bucket {
			t.Fatalf("Bucket() = %q, want %q", s.Bucket(), bucket)
		}
		if !o.Attach {
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := js.DeleteKeyValue(ctx, bucket); err != nil {
					t.Errorf("deleting bucket %s: %v", bucket, err)
				}
			})
		}
		return s
	}
}

func TestStore(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs an embedded JetStream server")
	}
	srv, _, js := natstest.Start(t)
	storetest.Run(t, factory(js, true), storetest.Features{
		MinTTL:    time.Second,
		ChildTest: "TestStoreChild",
		ChildEnv:  []string{childURLEnv + "=" + srv.URL()},
	})
}

// TestStoreChild is a racer process of TestStore; on its own it skips.
func TestStoreChild(t *testing.T) {
	url := os.Getenv(childURLEnv)
	if url == "" {
		t.Skip("runs only as a child process of the conformance suite")
	}
	_, js := natstest.Connect(t, url)
	storetest.RunChild(t, factory(js, os.Getenv(legacyURLEnv) == ""))
}

// TestStoreOnLegacyServer runs the suite against a server without
// per-message TTL, where the store falls back to the bucket's MaxAge.
func TestStoreOnLegacyServer(t *testing.T) {
	url := os.Getenv(legacyURLEnv)
	if url == "" || testing.Short() {
		t.Skip("set " + legacyURLEnv + " to a nats-server older than 2.11 with JetStream, e.g. nats://127.0.0.1:4222")
	}
	_, js := natstest.Connect(t, url)
	storetest.Run(t, factory(js, false), storetest.Features{
		MinTTL:        time.Second,
		RetentionOnly: true,
		ChildTest:     "TestStoreChild",
		ChildEnv:      []string{childURLEnv + "=" + url},
	})
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     kvstore.Config
		want    kvstore.Config
		wantErr string // a substring naming the field; "" for none
	}{
		{
			name: "an empty config gets the defaults",
			want: kvstore.Config{Bucket: "GRAPHOPS_LEDGER", Retention: 7 * 24 * time.Hour, Replicas: 1},
		},
		{
			name: "set fields are kept",
			cfg:  kvstore.Config{Bucket: "my-ledger_2", Retention: time.Hour, Replicas: 3},
			want: kvstore.Config{Bucket: "my-ledger_2", Retention: time.Hour, Replicas: 3},
		},
		{name: "a bucket with a dot is refused", cfg: kvstore.Config{Bucket: "a.b"}, wantErr: "Bucket"},
		{name: "a retention under a second is refused", cfg: kvstore.Config{Retention: 500 * time.Millisecond}, wantErr: "Retention"},
		{name: "a negative retention is refused", cfg: kvstore.Config{Retention: -time.Hour}, wantErr: "Retention"},
		{name: "six replicas are refused", cfg: kvstore.Config{Replicas: 6}, wantErr: "Replicas"},
		{name: "negative replicas are refused", cfg: kvstore.Config{Replicas: -1}, wantErr: "Replicas"},
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
	_, _, js := natstest.Start(b)
	s, err := kvstore.New(b.Context(), js, kvstore.Config{Bucket: "bench", Retention: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	storetest.Benchmark(b, s)
}
