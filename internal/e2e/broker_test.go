package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/graphops/worker/internal/consumer/servicebus/sbemu"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/natsembed/natstest"
)

// Every process-level test runs on both brokers (issue 11 item 4):
// JetStream with the KV ledger, and Service Bus (our AMQP stand-in, sbemu,
// through the real SDK) with the Redis ledger.
const (
	jetStream  = "jetstream"
	serviceBus = "servicebus"
)

// onBothBrokers runs f as a parallel subtest per broker.
func onBothBrokers(t *testing.T, f func(t *testing.T, broker string)) {
	t.Helper()
	for _, b := range []string{jetStream, serviceBus} {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			f(t, b)
		})
	}
}

// broker is what a test does with and sees of the broker and the ledger.
type broker interface {
	// env is the workers' environment for this broker and ledger.
	env() map[string]string
	publish(t *testing.T, data []byte)
	// backlog counts the commands not yet delivered (waiting) and those
	// delivered but not settled (inFlight).
	backlog() (waiting, inFlight int, err error)
	// redelivered counts deliveries after the first of any message.
	redelivered() (int, error)
	ledgerRecords(t *testing.T) map[string]ledger.Record
	deadLetters(t *testing.T) []deadLetter
}

// deadLetter is what the tests check of a dead letter on either broker.
type deadLetter struct {
	Reason, Description, CommandID string
	Body                           []byte
}

// The Service Bus entity every worker reads.
const sbQueue = "graphops-commands"

// sbLockEnv, in a test's env, sets the Service Bus queue's lock duration
// apart from NATS_ACK_WAIT; it is not passed to the workers.
const sbLockEnv = "E2E_SB_LOCK_DURATION"

// newBroker starts the broker of kind for one test. The Service Bus queue's
// lock duration is the test's sbLockEnv, else its NATS_ACK_WAIT (the
// worker's default 30s otherwise), so that a crashed worker's messages come
// back as quickly on both brokers.
func newBroker(t *testing.T, kind string, env map[string]string) broker {
	t.Helper()
	switch kind {
	case jetStream:
		srv := natstest.Server(t)
		_, js := natstest.Connect(t, srv.URL())
		return &jsBroker{url: srv.URL(), js: js}
	case serviceBus:
		lock := 30 * time.Second
		v := env["NATS_ACK_WAIT"]
		if l := env[sbLockEnv]; l != "" {
			v = l
		}
		if v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatal(err)
			}
			lock = d
		}
		return newSBBroker(t, lock)
	}
	t.Fatalf("unknown broker %q", kind)
	return nil
}

// JetStream with the KV ledger.

type jsBroker struct {
	url string
	js  jetstream.JetStream
}

func (b *jsBroker) env() map[string]string { return map[string]string{"NATS_URL": b.url} }

// publish publishes a command on graphops.commands.<short type>.
func (b *jsBroker) publish(t *testing.T, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: subjectOf(data), Data: data}); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func subjectOf(data []byte) string {
	if strings.Contains(string(data), `"graphops.accessPackageAssignmentRequest.resume"`) {
		return "graphops.commands.resume"
	}
	return "graphops.commands.role_request_update"
}

func (b *jsBroker) consumerInfo() (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := b.js.Consumer(ctx, streamName, consumerName)
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}

func (b *jsBroker) backlog() (int, int, error) {
	ci, err := b.consumerInfo()
	if err != nil {
		return 0, 0, err
	}
	return int(ci.NumPending), ci.NumAckPending, nil
}

func (b *jsBroker) redelivered() (int, error) {
	ci, err := b.consumerInfo()
	if err != nil {
		return 0, err
	}
	return ci.NumRedelivered, nil
}

// ledgerRecords reads every command record of the KV ledger, by key.
func (b *jsBroker) ledgerRecords(t *testing.T) map[string]ledger.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := b.js.KeyValue(ctx, ledgerBucket)
	if err != nil {
		t.Fatalf("ledger bucket: %v", err)
	}
	w, err := kv.Watch(ctx, "request.>", jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatalf("ledger: %v", err)
	}
	defer w.Stop()
	out := map[string]ledger.Record{}
	for e := range w.Updates() {
		if e == nil {
			break // the initial values are all in
		}
		var d ledger.RequestRecord
		if err := json.Unmarshal(e.Value(), &d); err != nil {
			t.Fatalf("ledger %s: %v", e.Key(), err)
		}
		maps.Copy(out, d.Commands)
	}
	return out
}

func (b *jsBroker) deadLetters(t *testing.T) []deadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := dlq.New(ctx, b.js, dlq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var out []deadLetter
	if err := s.List(ctx, func(e dlq.Entry) error {
		out = append(out, deadLetter{Reason: string(e.Reason), Description: e.Description, CommandID: e.CommandID, Body: e.Payload})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Service Bus (the stand-in) with the Redis ledger.

type sbBroker struct {
	emu    *sbemu.Emulator
	sender *azservicebus.Sender
	rdb    *redis.Client
	db     int // the Redis database of this test's ledger
}

// redisDBs hands each Service Bus test a Redis database of its own: the
// pacer's fleet records ("pacer.<operation>") share the ledger's key space,
// and tests running at once must not pace (or throttle) one another.
// Database 0 is left to everything else; 1-15 are this package's.
var redisDBs = struct {
	sync.Mutex
	used [16]bool
}{}

func takeRedisDB(t *testing.T) int {
	t.Helper()
	// Test processes running at once (go test runs packages, and a
	// developer's runs, side by side) share the server: a database is
	// also claimed there, by a key in database 0 that outlives no test.
	lock := redis.NewClient(&redis.Options{Addr: redisAddr()})
	t.Cleanup(func() { _ = lock.Close() })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		redisDBs.Lock()
		for db := 1; db < len(redisDBs.used); db++ {
			if redisDBs.used[db] {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			key := "graphops:e2e:db:" + strconv.Itoa(db)
			ok, err := lock.SetNX(ctx, key, os.Getpid(), 10*time.Minute).Result()
			cancel()
			if err != nil || !ok {
				continue
			}
			redisDBs.used[db] = true
			redisDBs.Unlock()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				lock.Del(ctx, key)
				redisDBs.Lock()
				redisDBs.used[db] = false
				redisDBs.Unlock()
			})
			return db
		}
		redisDBs.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no free Redis database for the test")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// redisAddr is the Redis of the Service Bus tests' ledger: REDIS_ADDR,
// default 127.0.0.1:6379 (CI starts one).
func redisAddr() string {
	if a := os.Getenv("REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// ledgerPrefix is redisstore's default key prefix, which the worker uses.
const ledgerPrefix = "graphops:ledger:"

func newSBBroker(t *testing.T, lock time.Duration) *sbBroker {
	t.Helper()
	db := takeRedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr(), DB: db})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is unreachable (%v): the Service Bus tests keep their ledger there; start redis-server (CI starts one) or set REDIS_ADDR, or run with -short", redisAddr(), err)
	}
	// What an earlier test left under the ledger's prefix in this database
	// (pacer state above all) must not steer this one.
	clearPrefix := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, ledgerPrefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	}
	clearPrefix()
	t.Cleanup(clearPrefix)

	emu := sbemu.Start(t)
	// Service Bus's default MaxDeliveryCount; the worker is told the same.
	emu.CreateQueue(sbQueue, sbemu.Entity{LockDuration: lock, MaxDeliveryCount: 10})
	cl, err := azservicebus.NewClientFromConnectionString(emu.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sender, err := cl.NewSender(sbQueue, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sender.Close(ctx)
		_ = cl.Close(ctx)
	})
	return &sbBroker{emu: emu, sender: sender, rdb: rdb, db: db}
}

func (b *sbBroker) env() map[string]string {
	return map[string]string{
		"WORKER_SOURCE": "servicebus", "SERVICEBUS_CONNECTION_STRING": b.emu.ConnectionString(),
		"SERVICEBUS_QUEUE": sbQueue, "SERVICEBUS_MAX_DELIVERY_COUNT": "10",
		"LEDGER_STORE": "redis", "REDIS_ADDR": redisAddr(), "REDIS_DB": strconv.Itoa(b.db),
	}
}

// publish sends a command with the SDK, as a producer would: the
// structured event as the body, with its content type.
func (b *sbBroker) publish(t *testing.T, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ct := "application/cloudevents+json"
	if err := b.sender.SendMessage(ctx, &azservicebus.Message{Body: data, ContentType: &ct}, nil); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func (b *sbBroker) backlog() (int, int, error) {
	st, err := b.emu.StateErr(sbQueue)
	if err != nil {
		return 0, 0, err
	}
	// A scheduled message is a hand-back copy waiting for its time.
	return st.Counts["active"] + st.Counts["scheduled"] + st.Counts["deferred"], st.Counts["locked"], nil
}

func (b *sbBroker) redelivered() (int, error) {
	st, err := b.emu.StateErr(sbQueue)
	if err != nil {
		return 0, err
	}
	return st.Counts["redelivered"], nil
}

// ledgerRecords reads every command record of the Redis ledger, by key
// (redisstore keeps each key as a hash whose field v is the value).
func (b *sbBroker) ledgerRecords(t *testing.T) map[string]ledger.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]ledger.Record{}
	iter := b.rdb.Scan(ctx, 0, ledgerPrefix+"request.*", 500).Iterator()
	for iter.Next(ctx) {
		v, err := b.rdb.HGet(ctx, iter.Val(), "v").Bytes()
		if err == redis.Nil {
			continue // deleted meanwhile
		}
		if err != nil {
			t.Fatalf("ledger %s: %v", iter.Val(), err)
		}
		var d ledger.RequestRecord
		if err := json.Unmarshal(v, &d); err != nil {
			t.Fatalf("ledger %s: %v", iter.Val(), err)
		}
		maps.Copy(out, d.Commands)
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("ledger scan: %v", err)
	}
	return out
}

// deadLetters reads the queue's dead-letter sub-queue in the stand-in.
func (b *sbBroker) deadLetters(t *testing.T) []deadLetter {
	t.Helper()
	var out []deadLetter
	for _, m := range b.emu.DeadLetters(sbQueue) {
		out = append(out, deadLetter{Reason: m.DeadLetterReason, Description: m.DeadLetterDescription,
			CommandID: m.Prop(dlq.HeaderCommandID), Body: m.Body})
	}
	return out
}

func (d deadLetter) String() string {
	return fmt.Sprintf("{%s %q command %s}", d.Reason, d.Description, d.CommandID)
}
