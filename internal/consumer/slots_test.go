package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/graphops/worker/internal/consumer"
)

func TestAcquireTakesEveryFreeSlotAndNoMore(t *testing.T) {
	s := consumer.NewSlots(4, nil)
	if n := s.Acquire(context.Background()); n != 4 {
		t.Fatalf("took %d of 4 free slots", n)
	}
	s.Release()
	if n := s.Acquire(context.Background()); n != 1 {
		t.Fatalf("took %d after one release", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if n := s.Acquire(ctx); n != 0 {
		t.Fatalf("took %d with none free", n)
	}
}

func TestSleepStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if consumer.Sleep(ctx, time.Hour) {
		t.Fatal("slept an hour through a cancelled context")
	}
	if !consumer.Sleep(context.Background(), time.Millisecond) {
		t.Fatal("a short sleep did not complete")
	}
}

func TestALimitCapsTheSlotsInUseAndZeroStopsFetching(t *testing.T) {
	limit := 2
	s := consumer.NewSlots(8, func() int { return limit })
	if n := s.Acquire(context.Background()); n != 2 {
		t.Fatalf("took %d with a limit of 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if n := s.Acquire(ctx); n != 0 {
		t.Fatalf("took %d more while 2 of 2 are in use", n)
	}
	s.Release()
	s.Release()
	limit = 0
	ctx2, cancel2 := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel2()
	if n := s.Acquire(ctx2); n != 0 {
		t.Fatalf("took %d with a limit of 0", n)
	}
	limit = 100
	if n := s.Acquire(context.Background()); n != 8 {
		t.Fatalf("took %d of 8 with a large limit", n)
	}
}
