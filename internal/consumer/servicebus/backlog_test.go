package servicebus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
)

func TestOldestActiveIsTheEarliestEnqueuedActiveMessage(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	msg := func(state azservicebus.MessageState, ago time.Duration) *azservicebus.ReceivedMessage {
		at := now.Add(-ago)
		return &azservicebus.ReceivedMessage{State: state, EnqueuedTime: &at}
	}
	tests := []struct {
		name string
		msgs []*azservicebus.ReceivedMessage
		want time.Duration
	}{
		{"nothing peeked is 0", nil, 0},
		{"one active message", []*azservicebus.ReceivedMessage{msg(azservicebus.MessageStateActive, 90*time.Second)}, 90 * time.Second},
		{"the earliest of several, in any order", []*azservicebus.ReceivedMessage{
			msg(azservicebus.MessageStateActive, time.Minute), msg(azservicebus.MessageStateActive, 5*time.Minute), msg(azservicebus.MessageStateActive, 2*time.Minute)}, 5 * time.Minute},
		{"scheduled hand-backs and deferred messages are not waiting", []*azservicebus.ReceivedMessage{
			msg(azservicebus.MessageStateScheduled, time.Hour), msg(azservicebus.MessageStateDeferred, 2*time.Hour), msg(azservicebus.MessageStateActive, 3*time.Second)}, 3 * time.Second},
		{"only scheduled messages is 0", []*azservicebus.ReceivedMessage{msg(azservicebus.MessageStateScheduled, time.Hour)}, 0},
		{"a clock behind the broker's gives 0, not a negative age", []*azservicebus.ReceivedMessage{msg(azservicebus.MessageStateActive, -time.Minute)}, 0},
		{"a message without an enqueued time is skipped", []*azservicebus.ReceivedMessage{{State: azservicebus.MessageStateActive}, nil}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oldestActive(tt.msgs, now); got != tt.want {
				t.Errorf("oldestActive = %v, want %v", got, tt.want)
			}
		})
	}
}

// fakePeeker records what PeekOldest asks for.
type fakePeeker struct {
	msgs  []*azservicebus.ReceivedMessage
	err   error
	froms []int64
	max   int
}

func (p *fakePeeker) PeekMessages(_ context.Context, n int, o *azservicebus.PeekMessagesOptions) ([]*azservicebus.ReceivedMessage, error) {
	p.max = n
	if o == nil || o.FromSequenceNumber == nil {
		p.froms = append(p.froms, -1)
	} else {
		p.froms = append(p.froms, *o.FromSequenceNumber)
	}
	return p.msgs, p.err
}

func TestPeekOldestPeeksFromTheStartEveryTime(t *testing.T) {
	now := time.Now()
	at := now.Add(-time.Minute)
	p := &fakePeeker{msgs: []*azservicebus.ReceivedMessage{{State: azservicebus.MessageStateActive, EnqueuedTime: &at}}}
	for range 2 {
		got, err := PeekOldest(context.Background(), p, now)
		if err != nil || got != time.Minute {
			t.Fatalf("PeekOldest = %v, %v; want 1m", got, err)
		}
	}
	if len(p.froms) != 2 || p.froms[0] != 0 || p.froms[1] != 0 {
		t.Errorf("peeked from sequence numbers %v, want [0 0] (the receiver's cursor would skip the oldest)", p.froms)
	}
	if p.max != peekWindow {
		t.Errorf("peeked %d messages, want %d", p.max, peekWindow)
	}
}

func TestPeekOldestErrors(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		wantSession bool
	}{
		{"a session entity refusing a plain receiver", errors.New(`amqp: link detached, reason: *Error{Condition: amqp:not-allowed, Description: It is not possible for an entity that requires sessions to create a non-sessionful message receiver.}`), true},
		{"a network failure is retried, not taken for a session entity", errors.New("dial tcp: connection refused"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PeekOldest(context.Background(), &fakePeeker{err: tt.err}, time.Now())
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrSessionEntity) != tt.wantSession {
				t.Errorf("errors.Is(%v, ErrSessionEntity) = %v, want %v", err, !tt.wantSession, tt.wantSession)
			}
		})
	}
}

type stubCredential struct{}

func (stubCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// entityXML is an ATOM entry as the management API returns it, shaped on the
// SDK's own captured responses.
func entityXML(kind string, active int, session bool) string {
	return fmt.Sprintf(`<entry xmlns="http://www.w3.org/2005/Atom"><title type="text">x</title><content type="application/xml">`+
		`<%[1]sDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">`+
		`<RequiresSession>%[3]t</RequiresSession><Status>Active</Status><MessageCount>%[2]d</MessageCount><SizeInBytes>0</SizeInBytes>`+
		`<CreatedAt>2026-12-01T00:00:00Z</CreatedAt><UpdatedAt>2026-12-01T00:00:00Z</UpdatedAt><AccessedAt>2026-12-01T00:00:00Z</AccessedAt>`+
		`<CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus"><d2p1:ActiveMessageCount>%[2]d</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>4</d2p1:DeadLetterMessageCount><d2p1:ScheduledMessageCount>5</d2p1:ScheduledMessageCount><d2p1:TransferMessageCount>0</d2p1:TransferMessageCount><d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount></CountDetails>`+
		`</%[1]sDescription></content></entry>`, kind, active, session)
}

// The management API over loopback TLS: the SDK's own admin client, request
// paths and XML decoding, and the status codes it answers a caller without
// the Manage right.
func TestRuntimePropertiesThroughTheAdminClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.ToLower(r.URL.Path) {
		case "/commands":
			_, _ = fmt.Fprint(w, entityXML("Queue", 7, false))
		case "/sessions":
			_, _ = fmt.Fprint(w, entityXML("Queue", 2, true))
		case "/events/subscriptions/worker":
			_, _ = fmt.Fprint(w, entityXML("Subscription", 11, false))
		case "/listen-only":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprint(w, `<Error><Code>401</Code><Detail>Manage,EntityRead claims required for this operation.</Detail></Error>`)
		case "/data-receiver":
			w.WriteHeader(http.StatusForbidden)
			_, _ = fmt.Fprint(w, `<Error><Code>403</Code><Detail>Unauthorized access.</Detail></Error>`)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	ac, err := admin.NewClient(host, stubCredential{}, &admin.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: srv.Client(), Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tests := []struct {
		name          string
		entity        BacklogEntity
		want          int64
		session       bool
		wantForbidden bool
		wantErr       bool
	}{
		{"a queue's active messages", BacklogEntity{Queue: "commands"}, 7, false, false, false},
		{"a session-enabled queue", BacklogEntity{Queue: "sessions"}, 2, true, false, false},
		{"a subscription's active messages", BacklogEntity{Topic: "events", Subscription: "worker"}, 11, false, false, false},
		{"a key without Manage (401)", BacklogEntity{Queue: "listen-only"}, 0, false, true, true},
		{"an identity without Data Owner (403)", BacklogEntity{Queue: "data-receiver"}, 0, false, true, true},
		{"a server error is an error, not a refusal", BacklogEntity{Queue: "broken"}, 0, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadActiveMessages(ctx, ac, tt.entity)
			if (err != nil) != tt.wantErr || errors.Is(err, ErrBacklogNotPermitted) != tt.wantForbidden {
				t.Fatalf("ReadActiveMessages err = %v, want error %v, not permitted %v", err, tt.wantErr, tt.wantForbidden)
			}
			if got != tt.want {
				t.Errorf("ReadActiveMessages = %d, want %d", got, tt.want)
			}
			if tt.wantErr {
				return
			}
			session, err := RequiresSession(ctx, ac, tt.entity)
			if err != nil || session != tt.session {
				t.Errorf("RequiresSession = %v, %v; want %v", session, err, tt.session)
			}
		})
	}
}
