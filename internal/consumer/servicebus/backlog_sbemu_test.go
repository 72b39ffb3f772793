package servicebus_test

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/consumer/servicebus/sbemu"
)

// The peek path of the backlog through the real SDK against the stand-in
// (sbemu does not serve runtime properties; that path is tested over TLS in
// backlog_test.go): scheduled messages are skipped, a locked message still
// counts, and a completed one no longer does.
func TestPeekOldestThroughTheSDK(t *testing.T) {
	emu := sbemu.Start(t)
	emu.CreateQueue("commands", sbemu.Entity{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := emu.Client(t)
	snd, err := cl.NewSender("commands", nil)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := cl.NewReceiverForQueue("commands", nil)
	if err != nil {
		t.Fatal(err)
	}
	peek := func(now time.Time) time.Duration {
		t.Helper()
		age, err := servicebus.PeekOldest(ctx, recv, now)
		if err != nil {
			t.Fatalf("PeekOldest: %v", err)
		}
		return age
	}

	if got := peek(time.Now()); got != 0 {
		t.Errorf("an empty queue: oldest %v, want 0", got)
	}
	// A hand-back scheduled for later comes first in sequence, and is not
	// waiting to be worked on.
	if _, err := snd.ScheduleMessages(ctx, []*azservicebus.Message{{Body: []byte("later")}}, time.Now().Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // so that taking it for active would show
	if err := snd.SendMessage(ctx, &azservicebus.Message{Body: []byte("first")}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := snd.SendMessage(ctx, &azservicebus.Message{Body: []byte("second")}, nil); err != nil {
		t.Fatal(err)
	}

	now := time.Now().Add(time.Minute) // one clock for every peek: ages compare exactly
	both := peek(now)
	if both < time.Minute || both > time.Minute+30*time.Second {
		t.Fatalf("oldest %v, want about a minute (the first message's age at now)", both)
	}
	msgs, err := recv.ReceiveMessages(ctx, 1, nil)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "first" {
		t.Fatalf("receive: %v, %d messages", err, len(msgs))
	}
	if want := now.Sub(*msgs[0].EnqueuedTime); both != want {
		t.Errorf("oldest %v, want the first active message's age %v (the scheduled one is skipped)", both, want)
	}
	if got := peek(now); got != both {
		t.Errorf("with the first message locked by a worker: oldest %v, want %v (still not settled)", got, both)
	}
	if err := recv.CompleteMessage(ctx, msgs[0], nil); err != nil {
		t.Fatal(err)
	}
	second := peek(now)
	if d := both - second; d < time.Second || d > 10*time.Second {
		t.Errorf("after completing the first: oldest %v, want the second's, about 1.1s younger than %v", second, both)
	}
}
