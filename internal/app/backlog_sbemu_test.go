package app

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/consumer/servicebus/sbemu"
)

// The Service Bus reader as the worker opens it, against the stand-in: the
// stand-in has no management API (runtime properties), so the count is
// unknown and only the oldest age is reported, which is what an identity
// without the Manage right gets from real Service Bus too.
func TestServiceBusBacklogReportsTheOldestWhenTheCountCannotBeRead(t *testing.T) {
	emu := sbemu.Start(t)
	emu.CreateQueue("commands", sbemu.Entity{})
	env := map[string]string{"WORKER_SOURCE": "servicebus", "SERVICEBUS_CONNECTION_STRING": emu.ConnectionString(),
		"SERVICEBUS_QUEUE": "commands", "REDIS_ADDR": "127.0.0.1:6379"}
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cl := emu.Client(t)
	snd, err := cl.NewSender("commands", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snd.SendMessage(ctx, &azservicebus.Message{Body: []byte("{}")}, nil); err != nil {
		t.Fatal(err)
	}

	read, closeSB, err := serviceBusBacklog(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeSB()
	r, err := read(ctx)
	if err == nil {
		t.Error("no error for a count the stand-in cannot give")
	}
	if r.messagesOK {
		t.Errorf("the count is known (%v) though the stand-in serves no runtime properties", r.messages)
	}
	if !r.oldestOK || r.oldest < 0 || r.oldest > 30 {
		t.Errorf("oldest %v (known %v), want the age of the message just sent", r.oldest, r.oldestOK)
	}
}

// On an entity read with SERVICEBUS_SESSIONS=true the oldest age is not
// reported (docs/SPEC.md §7) even where the entity's properties cannot be
// read to say it needs sessions (the stand-in serves none): a session-less
// peek would lock one of its sessions instead.
func TestServiceBusBacklogReportsNoOldestOnASessionEntity(t *testing.T) {
	emu := sbemu.Start(t)
	emu.CreateQueue("sessions", sbemu.Entity{RequiresSession: true})
	env := map[string]string{"WORKER_SOURCE": "servicebus", "SERVICEBUS_CONNECTION_STRING": emu.ConnectionString(),
		"SERVICEBUS_QUEUE": "sessions", "SERVICEBUS_SESSIONS": "true", "REDIS_ADDR": "127.0.0.1:6379"}
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sid := "req-1"
	snd, err := emu.Client(t).NewSender("sessions", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snd.SendMessage(ctx, &azservicebus.Message{Body: []byte("{}"), SessionID: &sid}, nil); err != nil {
		t.Fatal(err)
	}
	read, closeSB, err := serviceBusBacklog(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeSB()
	if r, _ := read(ctx); r.oldestOK {
		t.Errorf("oldest age %v reported on a session entity", r.oldest)
	}
}
