package redisstore

import (
	"testing"
	"time"
)

func TestPTTL(t *testing.T) {
	s := &Store{retention: time.Hour}
	cases := []struct {
		name string
		ttl  time.Duration
		want int64
	}{
		{"a zero ttl is the retention", 0, 3_600_000},
		{"a negative ttl is the retention", -time.Second, 3_600_000},
		{"whole milliseconds are kept", 1500 * time.Millisecond, 1500},
		{"a fraction of a millisecond is rounded up", 1500 * time.Microsecond, 2},
		{"a nanosecond becomes a millisecond", time.Nanosecond, 1},
		{"a ttl beyond the retention is cut to it", 2 * time.Hour, 3_600_000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := s.pttl(c.ttl); got != c.want {
				t.Fatalf("pttl(%s) = %d, want %d", c.ttl, got, c.want)
			}
		})
	}
}
