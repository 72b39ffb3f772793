package outcome

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

type recordingSender struct{ got []*azservicebus.Message }

func (s *recordingSender) SendMessage(_ context.Context, m *azservicebus.Message, _ *azservicebus.SendMessageOptions) error {
	s.got = append(s.got, m)
	return nil
}

func TestServiceBusSetsMessageIdContentTypeAndSession(t *testing.T) {
	s := &recordingSender{}
	p := NewServiceBus(s, "outcomes")
	e, err := New(Data{CommandID: "c1", CommandSource: "urn:s", Type: "role_request_update",
		RequestID: "azureResources/e13e", Outcome: "applied"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	m := s.got[0]
	if *m.MessageID != e.ID || *m.ContentType != "application/cloudevents+json; charset=utf-8" ||
		*m.SessionID != "azureResources/e13e" || string(m.Body) != string(e.Body) {
		t.Fatalf("sent %+v", m)
	}
}
