package servicebus_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

func TestDataTurnsABinaryModeMessageIntoAStructuredEvent(t *testing.T) {
	sent := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	body := `{"accessPackageAssignmentRequestId":"r1","body":{"x":"<a&b>"}}`
	tests := []struct {
		name        string
		contentType string
		props       map[string]any
		body        string
		want        map[string]any // nil: Data is the body itself
	}{
		{
			name:        "all attributes with the colon prefix, time as an AMQP timestamp and a deadline extension",
			contentType: "application/json",
			props: map[string]any{
				"cloudEvents:specversion": "1.0", "cloudEvents:id": "c1", "cloudEvents:source": "urn:s",
				"cloudEvents:type": "graphops.accessPackageAssignmentRequest.resume", "cloudEvents:time": sent,
				"cloudEvents:deadline": "2026-11-24T10:00:00Z", "cloudEvents:subject": "sub",
				"cloudEvents:dataschema": "urn:schema", "Graphops-Other": "not an attribute",
			},
			body: body,
			want: map[string]any{
				"specversion": "1.0", "id": "c1", "source": "urn:s", "type": "graphops.accessPackageAssignmentRequest.resume",
				"time": "2026-11-23T10:00:00Z", "deadline": "2026-11-24T10:00:00Z", "subject": "sub",
				"dataschema": "urn:schema", "datacontenttype": "application/json",
				"data": map[string]any{"accessPackageAssignmentRequestId": "r1", "body": map[string]any{"x": "<a&b>"}},
			},
		},
		{
			name:  "the underscore prefix, a deadline as a timestamp, and the colon winning where both are set",
			props: map[string]any{"cloudEvents_specversion": "1.0", "cloudEvents_id": "underscore", "cloudEvents:id": "colon", "cloudEvents_deadline": sent},
			body:  `{"a":1}`,
			want:  map[string]any{"specversion": "1.0", "id": "colon", "deadline": "2026-11-23T10:00:00Z", "data": map[string]any{"a": 1.0}},
		},
		{
			name:  "a body that is not JSON leaves data out",
			props: map[string]any{"cloudEvents:specversion": "1.0", "cloudEvents:id": "c1"},
			body:  "not json",
			want:  map[string]any{"specversion": "1.0", "id": "c1"},
		},
		{
			name:  "a JSON body that is not an object leaves data out",
			props: map[string]any{"cloudEvents:specversion": "1.0", "cloudEvents:id": "c1"},
			body:  `["a"]`,
			want:  map[string]any{"specversion": "1.0", "id": "c1"},
		},
		{
			name:  "data properties are not attributes",
			props: map[string]any{"cloudEvents:specversion": "1.0", "cloudEvents:data": "x", "cloudEvents:data_base64": "eA=="},
			body:  `{}`,
			want:  map[string]any{"specversion": "1.0", "data": map[string]any{}},
		},
		{
			name:  "without specversion the body is the event",
			props: map[string]any{"cloudEvents:id": "c1"},
			body:  "\x00not touched",
		},
		{
			name:        "a cloudevents content type means structured mode whatever the properties",
			contentType: "application/cloudevents+json; charset=utf-8",
			props:       map[string]any{"cloudEvents:specversion": "1.0"},
			body:        `{"specversion":"1.0"}` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rm := msg(1, tt.body, tt.props)
			if tt.contentType != "" {
				rm.ContentType = &tt.contentType
			}
			got := newSource(t, queueCfg, newBroker()).MessageOf(rm).Data()
			if tt.want == nil {
				if !bytes.Equal(got, []byte(tt.body)) {
					t.Errorf("Data = %q, want the body %q", got, tt.body)
				}
				return
			}
			var event map[string]any
			if err := json.Unmarshal(got, &event); err != nil {
				t.Fatalf("Data %q is not JSON: %v", got, err)
			}
			if !reflect.DeepEqual(event, tt.want) {
				t.Errorf("event\n got %v\nwant %v", event, tt.want)
			}
			if bytes.Contains(got, []byte(`\u003c`)) {
				t.Errorf("Data escapes HTML characters: %s", got)
			}
		})
	}
}

func TestDataTakesTheBodyFromTheRawAMQPMessageWhenTheSDKLeavesBodyEmpty(t *testing.T) {
	tests := []struct {
		name string
		body azservicebus.AMQPAnnotatedMessageBody
		want string
	}{
		{"several data sections are joined", azservicebus.AMQPAnnotatedMessageBody{Data: [][]byte{[]byte(`{"a":`), []byte(`1}`)}}, `{"a":1}`},
		{"a string amqp-value", azservicebus.AMQPAnnotatedMessageBody{Value: `{"b":2}`}, `{"b":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rm := msg(1, "", nil)
			rm.Body = nil
			rm.RawAMQPMessage = &azservicebus.AMQPAnnotatedMessage{Body: tt.body}
			if got := newSource(t, queueCfg, newBroker()).MessageOf(rm).Data(); string(got) != tt.want {
				t.Errorf("Data = %q, want %q", got, tt.want)
			}
		})
	}
}
