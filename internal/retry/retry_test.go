package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/graphops/worker/internal/retry"
)

func TestDo(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name      string
		tries     int
		failFirst int // tries that fail before one succeeds (-1: all fail)
		permanent bool
		wantCalls int
		wantErr   error
	}{
		{"a success needs one try", 5, 0, false, 1, nil},
		{"failures are retried until one succeeds", 5, 3, false, 4, nil},
		{"the tries bound the calls and the last error is returned", 3, -1, false, 3, boom},
		{"a permanent error stops at once", 5, -1, true, 1, boom},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			err := retry.Do(context.Background(), retry.Policy{Initial: time.Microsecond, Max: time.Microsecond, Tries: c.tries},
				func(context.Context) error {
					calls++
					if c.failFirst < 0 || calls <= c.failFirst {
						if c.permanent {
							return backoff.Permanent(boom)
						}
						return boom
					}
					return nil
				})
			if calls != c.wantCalls || !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
				t.Fatalf("calls %d err %v, want %d %v", calls, err, c.wantCalls, c.wantErr)
			}
		})
	}
}

func TestDoStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := retry.Do(ctx, retry.Policy{Initial: time.Hour}, func(context.Context) error {
		calls++
		cancel()
		return errors.New("down")
	})
	if calls != 1 || err == nil {
		t.Fatalf("calls %d err %v: want one call and its error", calls, err)
	}
}

func TestEachTryHasItsOwnDeadline(t *testing.T) {
	var deadlines []time.Time
	_ = retry.Do(context.Background(), retry.Policy{Initial: time.Microsecond, Tries: 2, PerTry: time.Minute},
		func(ctx context.Context) error {
			d, ok := ctx.Deadline()
			if !ok {
				t.Fatal("a try without a deadline")
			}
			deadlines = append(deadlines, d)
			return errors.New("again")
		})
	if len(deadlines) != 2 || !deadlines[1].After(deadlines[0]) {
		t.Fatalf("deadlines %v: want a fresh one per try", deadlines)
	}
}

func TestTheBackoffGrowsWithinItsBounds(t *testing.T) {
	b := retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second}.Backoff()
	var last time.Duration
	for i := range 20 {
		d := b.NextBackOff()
		if d < 50*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("wait %d is %s, outside [Initial/2, 1.5 Max]", i, d)
		}
		last = d
	}
	if last < 500*time.Millisecond {
		t.Fatalf("after 20 waits the backoff is %s, want near Max", last)
	}
}
