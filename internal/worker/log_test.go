package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
)

// logLines returns JSON log lines by their msg. (slog's handler writes one
// line at a time, and the job's renewals have stopped when Handle returns,
// so a plain buffer may be read then.)
func logLines(t *testing.T, b *bytes.Buffer) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		msg, _ := m["msg"].(string)
		out[msg] = append(out[msg], m)
	}
	return out
}

// The job's lines say which command, request and attempt they are about
// (issue 2, item 7), each line on its own: nothing carries over from one
// attempt's failure to the next line.
func TestJobLogLinesNameTheCommandTheRequestAndTheAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sink bytes.Buffer
		log := slog.New(slog.NewJSONHandler(&sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
		graph := &fakeGraph{status: graphops.StatusWaitingForCallback}
		throttled := throttle(10 * time.Millisecond).(*graphops.Error)
		throttled.GraphRequestID, throttled.ClientRequestID = "g-throttled", "c-throttled"
		graph.script = []error{throttled}
		led, err := ledger.New(newMemStore(), ledger.Config{Owner: "test", Lease: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		proc := mustNew(t, worker.Config{KeepAliveEvery: time.Second},
			worker.Deps{Graph: graph, Ledger: led, Metrics: metrics.New(), Log: log},
			context.Background(), context.Background())
		data := seed(t)
		cmd, err := command.Parse(data, command.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m := &fakeMsg{data: data, delivery: 2}
		proc.Handle(m)
		if m.acked != 1 {
			t.Fatalf("acked %d times", m.acked)
		}

		lines := logLines(t, &sink)
		want := map[string]any{"command_id": cmd.ID, "source": cmd.Source, "request_id": cmd.RequestID(),
			"type": string(command.TypeResume), "message": "7", "delivery": float64(2)}
		check := func(msg string, extra map[string]any, absent ...string) {
			t.Helper()
			got := lines[msg]
			if len(got) != 1 {
				t.Fatalf("%d lines %q, want 1; all lines: %v", len(got), msg, lines)
			}
			for k, v := range want {
				if got[0][k] != v {
					t.Errorf("%q: %s = %v, want %v", msg, k, got[0][k], v)
				}
			}
			for k, v := range extra {
				if got[0][k] != v {
					t.Errorf("%q: %s = %v, want %v", msg, k, got[0][k], v)
				}
			}
			for _, k := range absent {
				if _, ok := got[0][k]; ok {
					t.Errorf("%q carries %s = %v from another line", msg, k, got[0][k])
				}
			}
		}
		check("received", nil, "attempt")
		check("claimed", map[string]any{"level": "INFO", "attempts_before": float64(0)})
		check("waiting", map[string]any{"level": "INFO", "wait": "throttle"}, "attempt", "status")
		check("applied", map[string]any{"level": "INFO", "attempt": float64(2), "graph_request_id": "g-2",
			"client_request_id": "c-2", "status": float64(204)}, "retry_after", "code")
		calls := lines["graph call"]
		if len(calls) != 2 {
			t.Fatalf("%d lines per call, want 2 (one per attempt)", len(calls))
		}
		for i, want := range []map[string]any{
			{"level": "WARN", "attempt": float64(1), "status": float64(429), "graph_request_id": "g-throttled",
				"client_request_id": "c-throttled", "code": "TooManyRequests", "class": "throttled"},
			{"level": "INFO", "attempt": float64(2), "status": float64(204), "graph_request_id": "g-2", "client_request_id": "c-2"},
		} {
			for k, v := range want {
				if calls[i][k] != v {
					t.Errorf("call %d: %s = %v, want %v", i+1, k, calls[i][k], v)
				}
			}
			if _, ok := calls[i]["duration"]; !ok {
				t.Errorf("call %d has no duration", i+1)
			}
		}
	})
}

// A dead-letter line describes Graph's answer only when Graph answered, as
// the dead letter's headers do (docs/SPEC.md §4): a command that never reached Graph
// has no Graph status of 0 and no empty request ids in its line.
func TestDeadLetterLinesDescribeGraphOnlyWhenItAnswered(t *testing.T) {
	rejected := &graphops.Error{Operation: graphops.OpResume, Status: 404, Code: "ResourceNotFound",
		GraphRequestID: "g-404", ClientRequestID: "c-404"}
	graphFields := []string{"graph_status", "graph_code", "graph_request_id", "client_request_id"}
	cases := []struct {
		name   string
		data   []byte
		script []error
		want   map[string]any // nil: none of graphFields
	}{
		{"a malformed command", []byte(`{"specversion":"1.0"`), nil, nil},
		{"a command Graph refused", seed(t), []error{rejected}, map[string]any{"graph_status": float64(404),
			"graph_code": "ResourceNotFound", "graph_request_id": "g-404", "client_request_id": "c-404"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var sink bytes.Buffer
				log := slog.New(slog.NewJSONHandler(&sink, nil))
				graph := &fakeGraph{status: graphops.StatusWaitingForCallback, script: c.script}
				led, err := ledger.New(newMemStore(), ledger.Config{Owner: "test", Lease: 30 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				dead := &fakeDLQ{}
				proc := mustNew(t, worker.Config{KeepAliveEvery: time.Second},
					worker.Deps{Graph: graph, Ledger: led, Metrics: metrics.New(), Log: log},
					context.Background(), context.Background())
				proc.Handle(&fakeMsg{data: c.data, delivery: 1, dead: dead})
				if len(dead.entries) != 1 {
					t.Fatalf("%d dead letters, want 1", len(dead.entries))
				}
				lines := logLines(t, &sink)["dead-lettered"]
				if len(lines) != 1 {
					t.Fatalf("%d dead-lettered lines, want 1", len(lines))
				}
				for _, k := range graphFields {
					got, ok := lines[0][k]
					if want, wanted := c.want[k]; wanted != ok || got != want {
						t.Errorf("%s = %v (present %v), want %v (present %v)", k, got, ok, want, wanted)
					}
				}
			})
		})
	}
}
