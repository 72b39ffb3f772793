package servicebus_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/dlq"
)

func TestDeliveryAndLastCountAcrossHandBackCopies(t *testing.T) {
	tests := []struct {
		name          string
		deliveryCount uint32
		props         map[string]any
		peek          bool
		delivery      int
		last          bool
	}{
		{"a first delivery is 1", 1, nil, false, 1, false},
		{"a message without a delivery count counts as delivered once", 0, nil, false, 1, false},
		{"the delivery before MaxDeliveryCount is not the last", 9, nil, false, 9, false},
		{"delivery MaxDeliveryCount is the last", 10, nil, false, 10, true},
		{"a copy adds the deliveries of its original", 3, map[string]any{servicebus.PropPriorDeliveries: int64(7)}, false, 10, true},
		{"a copy's count may come as a string", 1, map[string]any{servicebus.PropPriorDeliveries: "4"}, false, 5, false},
		{"a peeked message is never the last", 10, nil, true, 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := queueCfg
			cfg.Peek = tt.peek
			rm := msg(1, "{}", tt.props)
			rm.DeliveryCount = tt.deliveryCount
			m := newSource(t, cfg, newBroker()).MessageOf(rm)
			if m.Delivery() != tt.delivery || m.Last() != tt.last {
				t.Errorf("Delivery %d Last %v, want %d %v", m.Delivery(), m.Last(), tt.delivery, tt.last)
			}
		})
	}
}

func TestMessageNamesTheEntityAndReadsApplicationProperties(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rm := msg(42, "{}", map[string]any{
		"Graphops-Replay": "7", "graphops-trace": "lower", "Count": int64(3), "At": at, "Raw": []byte("bytes"),
	})
	tests := []struct {
		name   string
		cfg    servicebus.Config
		header string
		want   string
	}{
		{"a property by its exact name", queueCfg, "Graphops-Replay", "7"},
		{"a property whatever the case", queueCfg, "Graphops-Trace", "lower"},
		{"an integer property as decimal", queueCfg, "Count", "3"},
		{"a timestamp property as RFC 3339", queueCfg, "At", "2026-01-02T03:04:05Z"},
		{"a binary property as its bytes", queueCfg, "Raw", "bytes"},
		{"a missing property as empty", queueCfg, "Graphops-Missing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newSource(t, tt.cfg, newBroker()).MessageOf(rm)
			if got := m.Header(tt.header); got != tt.want {
				t.Errorf("Header(%q) = %q, want %q", tt.header, got, tt.want)
			}
		})
	}
	if got := newSource(t, queueCfg, newBroker()).MessageOf(rm); got.Subject() != "commands" || got.ID() != "42" {
		t.Errorf("queue: Subject %q ID %q", got.Subject(), got.ID())
	}
	if got := newSource(t, topicCfg, newBroker()).MessageOf(rm).Subject(); got != "commands/Subscriptions/graphops-worker" {
		t.Errorf("subscription: Subject %q", got)
	}
}

// received puts rm in b and receives it, locked, as a Source's message.
func received(t *testing.T, cfg servicebus.Config, b *broker, rm *azservicebus.ReceivedMessage) consumer.Message {
	t.Helper()
	b.add(rm)
	got, err := b.ReceiveMessages(context.Background(), 1, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("receive: %v %v", got, err)
	}
	return newSource(t, cfg, b).MessageOf(got[0])
}

func TestHandBackAbandonsForAShortDelay(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Second} {
		b := newBroker()
		m := received(t, queueCfg, b, msg(5, "{}", nil))
		if err := m.HandBack(context.Background(), delay); err != nil {
			t.Fatal(err)
		}
		if ops := b.opsSoFar(); !reflect.DeepEqual(ops, []string{"abandon 5"}) {
			t.Errorf("delay %s: ops %v, want an abandon only", delay, ops)
		}
	}
}

func TestHandBackSchedulesACopyThenCompletesTheOriginal(t *testing.T) {
	b := newBroker()
	ct := "application/json"
	rm := msg(5, `{"x":1}`, map[string]any{"cloudEvents:specversion": "1.0", "Graphops-Replay": "3"})
	rm.ContentType = &ct
	rm.DeliveryCount = 2
	m := received(t, topicCfg, b, rm)

	if err := m.HandBack(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if ops := b.opsSoFar(); !reflect.DeepEqual(ops, []string{"schedule", "complete 5"}) {
		t.Fatalf("ops %v, want the copy scheduled before the original is completed", ops)
	}
	if !b.scheduledAt[0].Equal(fixedNow.Add(30 * time.Second)) {
		t.Errorf("scheduled at %s, want now+30s", b.scheduledAt[0])
	}
	c := b.scheduled[0]
	if string(c.Body) != `{"x":1}` || c.ContentType == nil || *c.ContentType != ct {
		t.Errorf("copy body %q content type %v", c.Body, c.ContentType)
	}
	if *c.MessageID != "m-5/handback/1" {
		t.Errorf("copy MessageID %q, want m-5/handback/1", *c.MessageID)
	}
	want := map[string]any{
		"cloudEvents:specversion": "1.0", "Graphops-Replay": "3",
		servicebus.PropHandbacks: int64(1), servicebus.PropPriorDeliveries: int64(2),
		servicebus.PropSubscription: "graphops-worker",
	}
	if !reflect.DeepEqual(c.ApplicationProperties, want) {
		t.Errorf("copy properties\n got %v\nwant %v", c.ApplicationProperties, want)
	}

	// The copy arrives, is delivered twice and handed back again.
	seq := int64(1001)
	again := &azservicebus.ReceivedMessage{SequenceNumber: &seq, MessageID: *c.MessageID, Body: c.Body,
		ApplicationProperties: c.ApplicationProperties, ContentType: c.ContentType, DeliveryCount: 2}
	m2 := received(t, topicCfg, b, again)
	if m2.Delivery() != 4 {
		t.Errorf("copy's Delivery = %d, want 4 (2 of the original + 2 of its own)", m2.Delivery())
	}
	if err := m2.HandBack(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	c2 := b.scheduled[1]
	if *c2.MessageID != "m-5/handback/2" || c2.ApplicationProperties[servicebus.PropHandbacks] != int64(2) ||
		c2.ApplicationProperties[servicebus.PropPriorDeliveries] != int64(4) {
		t.Errorf("second copy: MessageID %q properties %v", *c2.MessageID, c2.ApplicationProperties)
	}
	if _, ok := rm.ApplicationProperties[servicebus.PropHandbacks]; ok {
		t.Error("HandBack changed the received message's properties")
	}
}

func TestHandBackKeepsMessageIDsWithinTheServiceBusLimit(t *testing.T) {
	b := newBroker()
	rm := msg(5, "{}", nil)
	rm.MessageID = strings.Repeat("x", 128)
	if err := received(t, queueCfg, b, rm).HandBack(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	rm2 := msg(6, "{}", map[string]any{servicebus.PropHandbacks: int64(1)})
	rm2.MessageID = strings.Repeat("x", 128) + "/handback/1"
	if err := received(t, queueCfg, b, rm2).HandBack(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	id1, id2 := *b.scheduled[0].MessageID, *b.scheduled[1].MessageID
	if len(id1) > 128 || len(id2) > 128 || id1 == id2 {
		t.Errorf("MessageIDs %q (%d) and %q (%d): want distinct and at most 128 bytes", id1, len(id1), id2, len(id2))
	}
}

func TestHandBackFailures(t *testing.T) {
	tests := []struct {
		name     string
		failOp   string
		ops      []string
		lockLost bool
	}{
		{"a copy that cannot be scheduled leaves the original locked", "schedule", nil, false},
		{"a lost lock after the copy is scheduled is reported as such", "complete", []string{"schedule"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker()
			m := received(t, queueCfg, b, msg(5, "{}", nil))
			b.fail = func(op string, _ int64) error {
				if op != tt.failOp {
					return nil
				}
				if tt.lockLost {
					return &azservicebus.Error{Code: azservicebus.CodeLockLost}
				}
				return errors.New("broker down")
			}
			err := m.HandBack(context.Background(), time.Minute)
			if err == nil {
				t.Fatal("HandBack = nil, want an error")
			}
			if errors.Is(err, servicebus.ErrLockLost) != tt.lockLost {
				t.Errorf("errors.Is(%v, ErrLockLost) = %v, want %v", err, !tt.lockLost, tt.lockLost)
			}
			if ops := b.opsSoFar(); !slices.Equal(ops, tt.ops) {
				t.Errorf("ops %v, want %v", ops, tt.ops)
			}
		})
	}
}

func TestSettlingAfterTheLockIsLostSaysSo(t *testing.T) {
	ops := []struct {
		name string
		do   func(consumer.Message) error
	}{
		{"Ack", func(m consumer.Message) error { return m.Ack(context.Background()) }},
		{"KeepAlive", func(m consumer.Message) error { return m.KeepAlive(context.Background()) }},
		{"HandBack", func(m consumer.Message) error { return m.HandBack(context.Background(), 0) }},
	}
	for _, op := range ops {
		t.Run(op.name+" with a lost lock wraps ErrLockLost and the SDK's error", func(t *testing.T) {
			b := newBroker()
			m := received(t, queueCfg, b, msg(5, "{}", nil))
			b.fail = func(string, int64) error { return &azservicebus.Error{Code: azservicebus.CodeLockLost} }
			err := op.do(m)
			var sbErr *azservicebus.Error
			if !errors.Is(err, servicebus.ErrLockLost) || !errors.As(err, &sbErr) || !strings.Contains(err.Error(), "message 5") {
				t.Errorf("err = %v", err)
			}
		})
		t.Run(op.name+" with another failure does not claim a lost lock", func(t *testing.T) {
			b := newBroker()
			m := received(t, queueCfg, b, msg(5, "{}", nil))
			cause := errors.New("connection reset")
			b.fail = func(string, int64) error { return cause }
			if err := op.do(m); !errors.Is(err, cause) || errors.Is(err, servicebus.ErrLockLost) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestAckCompletesAndKeepAliveRenews(t *testing.T) {
	b := newBroker()
	m := received(t, queueCfg, b, msg(5, "{}", nil))
	if err := m.KeepAlive(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Ack(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ops := b.opsSoFar(); !slices.Equal(ops, []string{"renew 5", "complete 5"}) || len(b.seqs()) != 0 {
		t.Errorf("ops %v, left %v", ops, b.seqs())
	}
}

type deadLetterer interface {
	DeadLetter(context.Context, dlq.Entry) error
}

func TestDeadLetterMapsTheEntryToServiceBus(t *testing.T) {
	b := newBroker()
	m := received(t, topicCfg, b, msg(5, "{}", map[string]any{"Producer": "kept"}))
	first := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	long := strings.Repeat("é", 3000) // 6000 bytes
	e := dlq.Entry{
		Reason: dlq.ReasonGraphRejected, Description: long, Type: "resume", CommandID: "c1",
		CommandSource: "urn:s", RequestID: "r1", Attempts: 2, FirstAttempt: first, LastAttempt: first.Add(time.Minute),
		GraphStatus: 403, GraphCode: "Forbidden", GraphRequestID: "g1", ClientRequestID: "cr1",
	}
	if err := m.(deadLetterer).DeadLetter(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	o := b.deadLettered[5]
	if o == nil || *o.Reason != "graph_rejected" {
		t.Fatalf("dead-letter options %+v", o)
	}
	if d := *o.ErrorDescription; len(d) > 4096 || !utf8.ValidString(d) || !strings.HasPrefix(long, d) || len(d) < 4000 {
		t.Errorf("description of %d bytes, valid UTF-8 %v: want the first ≤4096 bytes of the description", len(d), utf8.ValidString(d))
	}
	want := map[string]any{
		dlq.HeaderReason: "graph_rejected", dlq.HeaderType: "resume", dlq.HeaderCommandID: "c1",
		dlq.HeaderCommandSource: "urn:s", dlq.HeaderRequestID: "r1", dlq.HeaderAttempts: "2",
		dlq.HeaderFirstAttempt: "2026-11-23T10:00:00Z", dlq.HeaderLastAttempt: "2026-11-23T10:01:00Z",
		dlq.HeaderOriginalSubject: "commands/Subscriptions/graphops-worker",
		dlq.HeaderGraphStatus:     "403", dlq.HeaderGraphCode: "Forbidden", dlq.HeaderGraphRequestID: "g1",
		dlq.HeaderClientRequestID: "cr1",
	}
	desc := o.PropertiesToModify[dlq.HeaderDescription]
	delete(o.PropertiesToModify, dlq.HeaderDescription)
	if !reflect.DeepEqual(o.PropertiesToModify, want) {
		t.Errorf("properties\n got %v\nwant %v", o.PropertiesToModify, want)
	}
	if s, _ := desc.(string); s == "" || len(s) > 1024 {
		t.Errorf("Graphops-Description property of %d bytes, want the entry's header value (≤1 KiB)", len(s))
	}
	if ops := b.opsSoFar(); !slices.Equal(ops, []string{"deadletter 5"}) {
		t.Errorf("ops %v", ops)
	}
}

func TestDeadLetterWithoutAGraphCallLeavesTheGraphPropertiesOut(t *testing.T) {
	b := newBroker()
	m := received(t, queueCfg, b, msg(5, "not json", nil))
	if err := m.(deadLetterer).DeadLetter(context.Background(), dlq.Entry{Reason: dlq.ReasonInvalidMessage, Description: "not JSON"}); err != nil {
		t.Fatal(err)
	}
	p := b.deadLettered[5].PropertiesToModify
	if _, ok := p[dlq.HeaderGraphStatus]; ok {
		t.Errorf("Graph properties present: %v", p)
	}
	if p[dlq.HeaderType] != "unknown" || p[dlq.HeaderOriginalSubject] != "commands" {
		t.Errorf("properties %v", p)
	}
}

func TestAPeekedMessageIsNeverSettled(t *testing.T) {
	b := newBroker()
	cfg := queueCfg
	cfg.Peek = true
	b.add(msg(5, "{}", nil))
	peeked, _ := b.PeekMessages(context.Background(), 1, nil)
	m := newSource(t, cfg, b).MessageOf(peeked[0])
	ctx := context.Background()
	errs := errors.Join(m.Ack(ctx), m.KeepAlive(ctx), m.HandBack(ctx, time.Minute),
		m.(deadLetterer).DeadLetter(ctx, dlq.Entry{Reason: dlq.ReasonExpired}))
	if errs != nil || len(b.opsSoFar()) != 0 || len(b.seqs()) != 1 {
		t.Errorf("errors %v, ops %v, left %v: want nothing done", errs, b.opsSoFar(), b.seqs())
	}
}
