package kvstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestMsgTTL(t *testing.T) {
	const retention = time.Hour
	cases := []struct {
		name      string
		ttl       time.Duration
		perKeyTTL bool
		want      time.Duration
	}{
		{"a zero ttl is left to the bucket's MaxAge", 0, true, 0},
		{"a negative ttl is left to the bucket's MaxAge", -time.Second, true, 0},
		{"whole seconds are kept", 30 * time.Second, true, 30 * time.Second},
		{"a fraction of a second is rounded up", 1500 * time.Millisecond, true, 2 * time.Second},
		{"less than a second becomes the server's minimum of one", time.Millisecond, true, time.Second},
		{"a ttl of the retention is left to MaxAge", retention, true, 0},
		{"a ttl beyond the retention is left to MaxAge", 2 * retention, true, 0},
		{"a ttl just under the retention is kept", retention - time.Second, true, retention - time.Second},
		{"without per-key TTL every ttl is left to MaxAge", 30 * time.Second, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := msgTTL(c.ttl, retention, c.perKeyTTL); got != c.want {
				t.Fatalf("msgTTL(%s) = %s, want %s", c.ttl, got, c.want)
			}
		})
	}
}

// fakeCreator answers like a server: old ones refuse limit markers.
type fakeCreator struct {
	old   bool
	calls []jetstream.KeyValueConfig
}

func (f *fakeCreator) CreateOrUpdateKeyValue(_ context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	f.calls = append(f.calls, cfg)
	if f.old && cfg.LimitMarkerTTL != 0 {
		return nil, jetstream.ErrLimitMarkerTTLNotSupported
	}
	return nil, nil
}

func TestCreateBucket(t *testing.T) {
	cfg := Config{Bucket: "b", Retention: time.Hour, Replicas: 3}
	cases := []struct {
		name          string
		old           bool
		wantPerKeyTTL bool
		wantCalls     int
	}{
		{"a server with per-message TTL gets limit markers and per-key TTLs", false, true, 1},
		{"an older server gets a bucket with MaxAge only", true, false, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeCreator{old: c.old}
			_, perKeyTTL, err := createBucket(t.Context(), f, cfg)
			if err != nil {
				t.Fatalf("createBucket: %v", err)
			}
			if perKeyTTL != c.wantPerKeyTTL {
				t.Fatalf("perKeyTTL = %v, want %v", perKeyTTL, c.wantPerKeyTTL)
			}
			if len(f.calls) != c.wantCalls {
				t.Fatalf("%d create calls, want %d", len(f.calls), c.wantCalls)
			}
			last := f.calls[len(f.calls)-1]
			if last.Bucket != "b" || last.TTL != time.Hour || last.Replicas != 3 || last.History != 1 {
				t.Fatalf("bucket config %+v does not carry the store's config", last)
			}
			if (last.LimitMarkerTTL != 0) != c.wantPerKeyTTL {
				t.Fatalf("LimitMarkerTTL = %s with per-key TTL %v", last.LimitMarkerTTL, c.wantPerKeyTTL)
			}
		})
	}
	t.Run("other errors are returned", func(t *testing.T) {
		boom := errors.New("boom")
		_, _, err := createBucket(t.Context(), errCreator{boom}, cfg)
		if !errors.Is(err, boom) {
			t.Fatalf("createBucket = %v, want %v", err, boom)
		}
	})
}

type errCreator struct{ err error }

func (e errCreator) CreateOrUpdateKeyValue(context.Context, jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return nil, e.err
}
