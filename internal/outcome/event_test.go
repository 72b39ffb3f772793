package outcome_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/graphops/worker/internal/outcome"
)

func TestTheEventIdDependsOnSourceIdAndOutcomeOnly(t *testing.T) {
	a := outcome.ID("urn:a", "1", "applied")
	cases := []struct {
		name          string
		src, id, outc string
		same          bool
	}{
		{"the same command and outcome is the same event", "urn:a", "1", "applied", true},
		{"another outcome is another event", "urn:a", "1", "dead_lettered", false},
		{"another source is another event", "urn:b", "1", "applied", false},
		{"another id is another event", "urn:a", "2", "applied", false},
		{"fields do not run into each other", "urn:a1", "", "applied", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := outcome.ID(c.src, c.id, c.outc); (got == a) != c.same {
				t.Fatalf("ID(%q,%q,%q)=%s, first %s, want same=%v", c.src, c.id, c.outc, got, a, c.same)
			}
		})
	}
}

func TestNewBuildsAStructuredCloudEventWithEverySpecField(t *testing.T) {
	d := outcome.Data{CommandID: "c1", CommandSource: "urn:s", Type: "resume", RequestID: "r1",
		Outcome: "dead_lettered", Reason: "graph_rejected", Description: "Graph answered 400", Attempts: 2}
	d.LastCall(400, "g-1", "c-1")
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	e, err := outcome.New(d, now)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(e.Body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"specversion": "1.0", "id": outcome.ID("urn:s", "c1", "dead_lettered"),
		"source": "urn:graphops:worker", "type": "graphops.command.outcome", "subject": "c1",
		"time": "2026-12-07T10:00:00Z", "datacontenttype": "application/json"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	data := got["data"].(map[string]any)
	wantData := map[string]any{"command_id": "c1", "command_source": "urn:s", "type": "resume", "request_id": "r1",
		"outcome": "dead_lettered", "reason": "graph_rejected", "description": "Graph answered 400",
		"reconciled": false, "attempts": 2.0, "graph_status": 400.0, "graph_request_id": "g-1", "client_request_id": "c-1"}
	for k, v := range wantData {
		if data[k] != v {
			t.Errorf("data.%s = %v, want %v", k, data[k], v)
		}
	}
	if e.ID != want["id"] || e.Type != "resume" || e.Request != "r1" {
		t.Fatalf("event %+v", e)
	}
}

func TestAnAnswerLostIsStatusZeroAndNoCallIsNoStatus(t *testing.T) {
	lost := outcome.Data{CommandID: "c", Outcome: "applied", Reconciled: true, Attempts: 1}
	lost.LastCall(0, "", "c-9")
	none := outcome.Data{CommandID: "c", Outcome: "dead_lettered", Reason: "expired"}
	for _, c := range []struct {
		d          outcome.Data
		wantStatus bool
	}{{lost, true}, {none, false}} {
		e, err := outcome.New(c.d, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Data map[string]any `json:"data"`
		}
		_ = json.Unmarshal(e.Body, &got)
		status, ok := got.Data["graph_status"]
		if ok != c.wantStatus || (ok && status != 0.0) {
			t.Fatalf("%+v: graph_status %v present %v", c.d, status, ok)
		}
	}
}
