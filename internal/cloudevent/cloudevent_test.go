package cloudevent_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/graphops/worker/internal/cloudevent"
)

func TestStructuredReadsBothBindingsTheSameWay(t *testing.T) {
	data := `{"accessPackageAssignmentRequestId":"a"}`
	want := map[string]any{"specversion": "1.0", "id": "x y", "source": "urn:s", "type": "graphops.t",
		"datacontenttype": "application/json", "data": map[string]any{"accessPackageAssignmentRequestId": "a"}}
	when := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		event []byte
		want  map[string]any
	}{
		{"NATS ce- headers, percent-decoded, with Content-Type", func() []byte {
			attrs, ct := cloudevent.FromNATS(map[string][]string{
				"ce-specversion": {"1.0"}, "ce-id": {"x%20y"}, "ce-source": {"urn:s"}, "ce-type": {"graphops.t"},
				"Content-Type": {"application/json"}, "X-Other": {"not an attribute"},
			})
			return cloudevent.Structured([]byte(data), ct, attrs)
		}(), want},
		{"NATS headers spelled the HTTP way", func() []byte {
			attrs, ct := cloudevent.FromNATS(map[string][]string{
				"Ce-Specversion": {"1.0"}, "Ce-Id": {"x y"}, "Ce-Source": {"urn:s"}, "Ce-Type": {"graphops.t"},
				"Ce-Datacontenttype": {"application/json"},
			})
			return cloudevent.Structured([]byte(data), ct, attrs)
		}(), want},
		{"AMQP cloudEvents: properties with the content type", cloudevent.Structured([]byte(data), "application/json",
			cloudevent.FromAMQP(map[string]any{"cloudEvents:specversion": "1.0", "cloudEvents:id": "x y",
				"cloudEvents:source": "urn:s", "cloudEvents_type": "graphops.t"})), want},
		{"AMQP timestamps as RFC 3339", cloudevent.Structured([]byte(data), "",
			cloudevent.FromAMQP(map[string]any{"cloudEvents:specversion": "1.0", "cloudEvents:time": when})),
			map[string]any{"specversion": "1.0", "time": "2026-11-23T10:00:00Z",
				"data": map[string]any{"accessPackageAssignmentRequestId": "a"}}},
		{"a body that is not an object leaves data out", func() []byte {
			attrs, ct := cloudevent.FromNATS(map[string][]string{"ce-specversion": {"1.0"}})
			return cloudevent.Structured([]byte(`"text"`), ct, attrs)
		}(), map[string]any{"specversion": "1.0"}},
		{"a bare % is taken as written", func() []byte {
			attrs, _ := cloudevent.FromNATS(map[string][]string{"ce-specversion": {"1.0"}, "ce-id": {"100%"}})
			return cloudevent.Structured([]byte(data), "", attrs)
		}(), map[string]any{"specversion": "1.0", "id": "100%", "data": map[string]any{"accessPackageAssignmentRequestId": "a"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got map[string]any
			if err := json.Unmarshal(c.event, &got); err != nil {
				t.Fatalf("%s: %v", c.event, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("event %s\nwant %v", c.event, c.want)
			}
		})
	}
}

func TestStructuredLeavesAStructuredMessageAlone(t *testing.T) {
	body := []byte(`{"specversion":"1.0","id":"a"}`)
	cases := []struct {
		name        string
		contentType string
		attrs       map[string]any
	}{
		{"no attributes", "", nil},
		{"attributes without specversion", "application/json", map[string]any{"id": "b"}},
		{"a cloudevents content type, whatever the headers", "application/cloudevents+json; charset=utf-8",
			map[string]any{"specversion": "1.0", "id": "b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := cloudevent.Structured(body, c.contentType, c.attrs); string(got) != string(body) {
				t.Errorf("got %s, want the body unchanged", got)
			}
		})
	}
}
