package servicebus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/dlq"
)

var enqueued = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// workerDeadLetter is a dead letter as DeadLetter leaves it: docs/SPEC.md §4
// properties, Service Bus's own DeadLetter* properties, and what the
// command carried (a binary-mode attribute, hand-back counts).
func workerDeadLetter(seq int64) *azservicebus.ReceivedMessage {
	reason, desc := "graph_rejected", "Graph said no"
	ct := "application/json"
	rm := msg(seq, fmt.Sprintf(`{"n":%d}`, seq), map[string]any{
		dlq.HeaderReason: reason, dlq.HeaderDescription: desc, dlq.HeaderType: "resume",
		dlq.HeaderCommandID: "c1", dlq.HeaderCommandSource: "urn:s", dlq.HeaderRequestID: "r1",
		dlq.HeaderAttempts: "2", dlq.HeaderFirstAttempt: "2026-11-23T10:00:00Z", dlq.HeaderLastAttempt: "2026-11-23T10:01:00Z",
		dlq.HeaderOriginalSubject: "commands", dlq.HeaderGraphStatus: "403", dlq.HeaderGraphCode: "Forbidden",
		dlq.HeaderGraphRequestID: "g1", dlq.HeaderClientRequestID: "cr1",
		"DeadLetterReason": reason, "DeadLetterErrorDescription": desc,
		"cloudEvents:specversion": "1.0", servicebus.PropHandbacks: int64(1), servicebus.PropPriorDeliveries: int64(3),
		dlq.HeaderReplay: "1",
	})
	rm.DeadLetterReason, rm.DeadLetterErrorDescription = &reason, &desc
	rm.ContentType = &ct
	rm.EnqueuedTime = &enqueued
	return rm
}

// brokerDeadLetter is a dead letter Service Bus made itself.
func brokerDeadLetter(seq int64) *azservicebus.ReceivedMessage {
	reason, desc := "MaxDeliveryCountExceeded", "Message could not be consumed after 10 delivery attempts."
	rm := msg(seq, "raw", map[string]any{"DeadLetterReason": reason, "DeadLetterErrorDescription": desc})
	rm.DeadLetterReason, rm.DeadLetterErrorDescription = &reason, &desc
	rm.EnqueuedTime = &enqueued
	return rm
}

func newDeadLetters(t *testing.T, cfg servicebus.Config, b *broker) *servicebus.DeadLetters {
	t.Helper()
	d, err := servicebus.NewTestDeadLetters(cfg, b, b, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// dlqWith is a dead-letter sub-queue holding 3 (the worker's), 7 (Service
// Bus's own) and 9 (the worker's).
func dlqWith() *broker {
	b := newBroker()
	b.add(workerDeadLetter(3), brokerDeadLetter(7), workerDeadLetter(9))
	return b
}

func TestListReadsTheWorkersAndServiceBussDeadLetters(t *testing.T) {
	var got []dlq.Entry
	err := newDeadLetters(t, queueCfg, dlqWith()).List(context.Background(), func(e dlq.Entry) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	want := []dlq.Entry{
		{Seq: 3, Stored: enqueued, Reason: dlq.ReasonGraphRejected, Description: "Graph said no", Type: "resume",
			CommandID: "c1", CommandSource: "urn:s", RequestID: "r1", Attempts: 2,
			FirstAttempt: first, LastAttempt: first.Add(time.Minute), OriginalSubject: "commands",
			GraphStatus: 403, GraphCode: "Forbidden", GraphRequestID: "g1", ClientRequestID: "cr1", Payload: []byte(`{"n":3}`),
			Headers: map[string][]string{"cloudEvents:specversion": {"1.0"}}, Where: "commands/$DeadLetterQueue",
			Extra: map[string][]string{"DeadLetterReason": {"graph_rejected"}, "DeadLetterErrorDescription": {"Graph said no"},
				servicebus.PropHandbacks: {"1"}, servicebus.PropPriorDeliveries: {"3"}, dlq.HeaderReplay: {"1"}}},
		{Seq: 7, Stored: enqueued, Reason: "MaxDeliveryCountExceeded", Description: "Message could not be consumed after 10 delivery attempts.",
			Type: "unknown", OriginalSubject: "commands", Payload: []byte("raw"), Where: "commands/$DeadLetterQueue",
			Extra: map[string][]string{"DeadLetterReason": {"MaxDeliveryCountExceeded"},
				"DeadLetterErrorDescription": {"Message could not be consumed after 10 delivery attempts."}}},
	}
	if len(got) != 3 || got[2].Seq != 9 {
		t.Fatalf("got %d entries %v, want 3, 7, 9", len(got), got)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("entry %d\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestListPagesThroughTheSubQueueAndStopsAtTheCallersError(t *testing.T) {
	b := newBroker()
	for i := range 250 {
		b.add(brokerDeadLetter(int64(2*i + 1)))
	}
	d := newDeadLetters(t, queueCfg, b)
	var seqs []uint64
	if err := d.List(context.Background(), func(e dlq.Entry) error {
		seqs = append(seqs, e.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 250 || !slices.IsSorted(seqs) || seqs[249] != 499 {
		t.Errorf("listed %d dead letters, last %d, sorted %v", len(seqs), seqs[len(seqs)-1], slices.IsSorted(seqs))
	}
	stop := errors.New("enough")
	n := 0
	err := d.List(context.Background(), func(dlq.Entry) error {
		if n++; n == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 5 {
		t.Errorf("List = %v after %d calls, want the callback's error after 5", err, n)
	}
}

func TestGetFindsADeadLetterBySequenceNumber(t *testing.T) {
	d := newDeadLetters(t, queueCfg, dlqWith())
	e, err := d.Get(context.Background(), 7)
	if err != nil || e.Seq != 7 || e.Reason != "MaxDeliveryCountExceeded" {
		t.Errorf("Get(7) = %+v, %v", e, err)
	}
	for _, seq := range []uint64{0, 5, 10} {
		if _, err := d.Get(context.Background(), seq); !errors.Is(err, dlq.ErrNotFound) {
			t.Errorf("Get(%d) = %v, want ErrNotFound", seq, err)
		}
	}
}

func TestShowPrintsTheSpecPropertiesFirstThenTheOthersAndTheBody(t *testing.T) {
	var out bytes.Buffer
	if err := newDeadLetters(t, queueCfg, dlqWith()).Show(context.Background(), &out, 3); err != nil {
		t.Fatal(err)
	}
	want := "Seq: 3\nStored: 2026-11-23T09:00:00Z\nSubject: commands/$DeadLetterQueue\n" +
		"Graphops-Reason: graph_rejected\nGraphops-Description: Graph said no\nGraphops-Type: resume\n" +
		"Graphops-Command-Id: c1\nGraphops-Command-Source: urn:s\nGraphops-Request-Id: r1\nGraphops-Attempts: 2\n" +
		"Graphops-First-Attempt: 2026-11-23T10:00:00Z\nGraphops-Last-Attempt: 2026-11-23T10:01:00Z\n" +
		"Graphops-Original-Subject: commands\nGraphops-Graph-Status: 403\nGraphops-Graph-Code: Forbidden\n" +
		"Graphops-Graph-Request-Id: g1\nGraphops-Client-Request-Id: cr1\n" +
		"DeadLetterErrorDescription: Graph said no\nDeadLetterReason: graph_rejected\n" +
		"Graphops-Handbacks: 1\nGraphops-Prior-Deliveries: 3\nGraphops-Replay: 1\ncloudEvents:specversion: 1.0\n" +
		"\n{\"n\":3}"
	if out.String() != want {
		t.Errorf("Show wrote\n%s\nwant\n%s", out.String(), want)
	}
}

func TestReplaySendsACleanCopyThenCompletesAndLeavesTheOthers(t *testing.T) {
	tests := []struct {
		name         string
		cfg          servicebus.Config
		subscription any
	}{
		{"to a queue", queueCfg, nil},
		{"to the topic of a subscription, naming the subscription", topicCfg, "graphops-worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := dlqWith()
			replayed, err := newDeadLetters(t, tt.cfg, b).Replay(context.Background(), []uint64{9, 9})
			if err != nil || !slices.Equal(replayed, []uint64{9}) {
				t.Fatalf("Replay = %v, %v; want [9]", replayed, err)
			}
			if ops := b.opsSoFar(); !slices.Equal(ops, []string{"send 9", "complete 9", "abandon 3", "abandon 7"}) {
				t.Errorf("ops %v: want the copy sent before the dead letter is completed, and those before it abandoned", ops)
			}
			if left, locked := b.seqs(), b.lockedSeqs(); !slices.Equal(left, []int64{3, 7}) || len(locked) != 0 {
				t.Errorf("left %v, locked %v; want 3 and 7 back, unlocked", left, locked)
			}
			c := b.sent[0]
			wantProps := map[string]any{"cloudEvents:specversion": "1.0", dlq.HeaderReplay: "9"}
			if tt.subscription != nil {
				wantProps[servicebus.PropSubscription] = tt.subscription
			}
			if !reflect.DeepEqual(c.ApplicationProperties, wantProps) {
				t.Errorf("copy properties\n got %v\nwant %v", c.ApplicationProperties, wantProps)
			}
			if string(c.Body) != `{"n":9}` || *c.ContentType != "application/json" {
				t.Errorf("copy body %q content type %q", c.Body, *c.ContentType)
			}
			entity := strings.TrimSuffix(tt.cfg.Queue+tt.cfg.Topic+"/Subscriptions/"+tt.cfg.Subscription, "/Subscriptions/")
			if want := dlq.ReplayMsgID(entity, 9); *c.MessageID != want {
				t.Errorf("copy MessageID %q, want %q", *c.MessageID, want)
			}
		})
	}
}

func TestReplayKeepsWhatFailsAndReplaysTheRest(t *testing.T) {
	tests := []struct {
		name     string
		fail     func(op string, seq int64) error
		seqs     []uint64
		replayed []uint64
		failed   map[uint64]error // the error each failure must wrap
		left     []int64
	}{
		{
			name:     "a send that fails keeps its dead letter",
			fail:     failOn("send", 7),
			seqs:     []uint64{3, 7, 9},
			replayed: []uint64{3, 9},
			failed:   map[uint64]error{7: dlq.ErrPublishFailed},
			left:     []int64{7},
		},
		{
			name:     "a complete that fails after the send is reported as such",
			fail:     failOn("complete", 9),
			seqs:     []uint64{3, 9},
			replayed: []uint64{3},
			failed:   map[uint64]error{9: dlq.ErrDeleteFailed},
			left:     []int64{7, 9},
		},
		{
			name:     "an unknown sequence number is not found",
			seqs:     []uint64{5, 7},
			replayed: []uint64{7},
			failed:   map[uint64]error{5: dlq.ErrNotFound},
			left:     []int64{3, 9},
		},
		{
			name:   "a dead letter locked by another receiver is not received",
			seqs:   []uint64{9},
			failed: map[uint64]error{9: servicebus.ErrNotReceived},
			left:   []int64{3, 7, 9},
		},
		{
			name:   "a receive that fails fails what it did not receive",
			fail:   failOn("receive", 0),
			seqs:   []uint64{3},
			failed: map[uint64]error{3: errBroker},
			left:   []int64{3, 7, 9},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := dlqWith()
			if strings.Contains(tt.name, "locked by another") {
				b.lock(9)
			}
			b.fail = tt.fail
			replayed, err := newDeadLetters(t, queueCfg, b).Replay(context.Background(), tt.seqs)
			if !slices.Equal(replayed, tt.replayed) {
				t.Errorf("replayed %v, want %v", replayed, tt.replayed)
			}
			var re *dlq.ReplayError
			if !errors.As(err, &re) || len(re.Failed) != len(tt.failed) {
				t.Fatalf("err = %v, want a ReplayError for %v", err, tt.failed)
			}
			for seq, want := range tt.failed {
				if !errors.Is(re.Failed[seq], want) {
					t.Errorf("dead letter %d: %v, want %v", seq, re.Failed[seq], want)
				}
			}
			if left := b.seqs(); !slices.Equal(left, tt.left) {
				t.Errorf("left %v, want %v", left, tt.left)
			}
			if locked := b.lockedSeqs(); len(locked) > 0 && !strings.Contains(tt.name, "locked by another") {
				t.Errorf("still locked: %v", locked)
			}
		})
	}
}

var errBroker = errors.New("broker down")

func failOn(op string, seq int64) func(string, int64) error {
	return func(o string, s int64) error {
		if o == op && s == seq {
			return errBroker
		}
		return nil
	}
}

func TestReplayAllReplaysWhatWasThereWhenItStarted(t *testing.T) {
	b := dlqWith()
	b.fail = func(op string, seq int64) error {
		if op == "send" && seq == 3 {
			// The replayed command fails at once and is dead-lettered
			// again while the replay runs. (fail runs with b locked.)
			b.msgs = append(b.msgs, &stored{rm: brokerDeadLetter(20)})
		}
		return nil
	}
	replayed, err := newDeadLetters(t, queueCfg, b).ReplayAll(context.Background())
	if err != nil || !slices.Equal(replayed, []uint64{3, 7, 9}) {
		t.Fatalf("ReplayAll = %v, %v; want 3, 7, 9", replayed, err)
	}
	if left := b.seqs(); !slices.Equal(left, []int64{20}) {
		t.Errorf("left %v, want only the new dead letter 20", left)
	}
	if len(b.sent) != 3 {
		t.Errorf("sent %d copies, want 3", len(b.sent))
	}
}

func TestPurgeRemovesWhatWasThereAndNamesWhatItCouldNot(t *testing.T) {
	b := dlqWith()
	n, err := newDeadLetters(t, queueCfg, b).Purge(context.Background())
	if err != nil || n != 3 || len(b.seqs()) != 0 {
		t.Errorf("Purge = %d, %v, left %v; want 3 removed", n, err, b.seqs())
	}

	b = dlqWith()
	b.fail = failOn("complete", 7)
	n, err = newDeadLetters(t, queueCfg, b).Purge(context.Background())
	var re *dlq.ReplayError
	if n != 2 || !errors.As(err, &re) || !errors.Is(re.Failed[7], errBroker) || len(re.Failed) != 1 {
		t.Errorf("Purge = %d, %v; want 2 and dead letter 7 named", n, err)
	}
	if left, locked := b.seqs(), b.lockedSeqs(); !slices.Equal(left, []int64{7}) || len(locked) != 0 {
		t.Errorf("left %v locked %v, want 7 back", left, locked)
	}

	n, err = newDeadLetters(t, queueCfg, newBroker()).Purge(context.Background())
	if n != 0 || err != nil {
		t.Errorf("Purge of an empty sub-queue = %d, %v", n, err)
	}
}
