package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/graphops/worker/internal/consumer/servicebus/sbemu"
	"github.com/graphops/worker/internal/graphsim"
)

// The crash point between the outcome event and the acknowledgement.
const afterEvent = "after-event"

// The outcome stream (NATS) and entity (Service Bus) of docs/SPEC.md §9.
const (
	outcomeStream = "GRAPHOPS_OUTCOMES"
	sbOutcomes    = "graphops-outcomes"
)

// outcomeEnv turns outcome events on; on Service Bus it makes the entity
// they go to (with duplicate detection off, as a default entity has it, so
// that every repeat is seen).
func outcomeEnv(b broker) map[string]string {
	env := map[string]string{"OUTCOME_EVENTS": "on"}
	if sb, ok := b.(*sbBroker); ok {
		sb.emu.CreateQueue(sbOutcomes, sbemu.Entity{})
		env["SERVICEBUS_OUTCOMES"] = sbOutcomes
	}
	return env
}

type event struct {
	ID, Type, MsgID string
	CommandID       string
	Outcome         string
}

func decodeEvent(t *testing.T, body []byte, msgID string) event {
	t.Helper()
	var e struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Data struct {
			CommandID string `json:"command_id"`
			Outcome   string `json:"outcome"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("event %s: %v", body, err)
	}
	return event{ID: e.ID, Type: e.Type, MsgID: msgID, CommandID: e.Data.CommandID, Outcome: e.Data.Outcome}
}

// outcomeEvents reads every event the broker holds, in order, repeats
// included.
func (c *cluster) outcomeEvents() []event {
	t := c.t
	t.Helper()
	var out []event
	switch b := c.b.(type) {
	case *sbBroker:
		for _, m := range b.emu.State(sbOutcomes).Messages {
			out = append(out, decodeEvent(t, m.Body, m.MessageID))
		}
	case *jsBroker:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cons, err := b.js.OrderedConsumer(ctx, outcomeStream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatalf("outcome stream: %v", err)
		}
		for {
			batch, err := cons.FetchNoWait(100)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for m := range batch.Messages() {
				n++
				out = append(out, decodeEvent(t, m.Data(), m.Headers().Get("Nats-Msg-Id")))
			}
			if n == 0 {
				return out
			}
		}
	}
	return out
}

// A subscriber to the outcome events receives exactly one distinct event
// (by id) per command, with its outcome, across a kill -9 at either side of
// the publication and the redelivery that follows (docs/SPEC.md §9, issue 14). On
// NATS the stream also stores it once (Nats-Msg-Id); a Service Bus entity
// without duplicate detection may hold a repeat, with the same id.
func TestOutcomeEventsAreOnePerCommandAcrossAKillAndARedelivery(t *testing.T) {
	for _, point := range []string{afterLedger, afterEvent} {
		t.Run("killed at "+point, func(t *testing.T) {
			onBothBrokers(t, func(t *testing.T, kind string) {
				skipWithoutWorker(t)
				b := newBroker(t, kind, crashEnv(nil))
				c := newClusterOn(t, b, graphsim.Config{Latency: 5 * time.Millisecond}, crashEnv(outcomeEnv(b)))
				w1 := c.start("worker-1 (GRAPHOPS_CRASH_AT="+point+")", map[string]string{"GRAPHOPS_CRASH_AT": point})
				var ids []string
				for range 6 {
					id, arid, iid := uuid.NewString(), uuid.NewString(), uuid.NewString()
					c.sim.AddAssignmentRequest(arid, iid)
					ids = append(ids, id)
					c.publish(resumeCmd(id, arid, iid, "verified", false))
				}
				for range 2 {
					id, rid := uuid.NewString(), uuid.NewString()
					c.sim.AddRoleRequest(privAccessID, rid)
					ids = append(ids, id)
					c.publish(roleCmd(id, rid))
				}
				if st := w1.waitExit(30 * time.Second); !killedBySIGKILL(st) {
					t.Fatalf("worker-1 ended with %s, want killed by SIGKILL at %s", st, point)
				}
				c.start("worker-2", nil)
				c.waitAcked(60 * time.Second)

				distinct := map[string]map[string]bool{}
				for _, e := range c.outcomeEvents() {
					if e.Type != "graphops.command.outcome" || e.MsgID != e.ID || e.Outcome != "applied" {
						t.Errorf("event %+v: want an applied outcome whose message id is the event id", e)
					}
					if distinct[e.CommandID] == nil {
						distinct[e.CommandID] = map[string]bool{}
					}
					distinct[e.CommandID][e.ID] = true
				}
				for _, id := range ids {
					if len(distinct[id]) != 1 {
						t.Errorf("command %s: %d distinct events, want exactly one", id, len(distinct[id]))
					}
				}
				if len(distinct) != len(ids) {
					t.Errorf("events for %d commands, want %d", len(distinct), len(ids))
				}
				if st := c.sim.Stats(); st.DoubleApplies != 0 {
					t.Errorf("%d double applies", st.DoubleApplies)
				}
			})
		})
	}
}

// An outcome stream that refuses events (full, or deleted) makes commands
// wait — applied once, recorded, not acknowledged — and /readyz says why;
// when the stream takes events again every command's event arrives and
// nothing is applied twice (docs/SPEC.md §9). (JetStream: the stand-in of Service
// Bus models no quota, and the worker never deletes entities.)
func TestAFullOrMissingOutcomeStreamMakesCommandsWaitAndLosesNothing(t *testing.T) {
	for _, mode := range []string{"full", "deleted"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			skipWithoutWorker(t)
			b := newBroker(t, jetStream, crashEnv(nil))
			js := b.(*jsBroker).js
			c := newClusterOn(t, b, graphsim.Config{}, crashEnv(map[string]string{"OUTCOME_EVENTS": "on"}))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfg := jetstream.StreamConfig{Name: outcomeStream, Subjects: []string{"graphops.outcomes.>"},
				MaxMsgs: 1, Discard: jetstream.DiscardNew}
			if _, err := js.CreateStream(ctx, cfg); err != nil { // the operator's: one event at most
				t.Fatal(err)
			}
			w := c.start("worker", nil)
			if mode == "deleted" {
				if err := js.DeleteStream(ctx, outcomeStream); err != nil {
					t.Fatal(err)
				}
			}
			var ids []string
			for range 3 {
				id, rid := uuid.NewString(), uuid.NewString()
				c.sim.AddRoleRequest(privAccessID, rid)
				ids = append(ids, id)
				c.publish(roleCmd(id, rid))
			}
			eventually(t, 20*time.Second, "/readyz reports the outcome stream", func() (bool, string) {
				code, body := get("http://" + w.admin + "/readyz")
				return code == http.StatusServiceUnavailable && strings.Contains(body, "outcome events"), fmt.Sprint(code, " ", body)
			})
			if waiting, inFlight := c.backlog(); waiting+inFlight == 0 {
				t.Fatal("every command acknowledged without its event")
			}
			// The operator makes room.
			cfg.MaxMsgs = -1
			var err error
			if mode == "full" {
				_, err = js.UpdateStream(ctx, cfg)
			} else {
				_, err = js.CreateStream(ctx, cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			c.waitAcked(60 * time.Second)
			per := map[string]int{}
			for _, e := range c.outcomeEvents() {
				per[e.CommandID]++
			}
			for _, id := range ids {
				if per[id] != 1 {
					t.Errorf("command %s: %d events, want one", id, per[id])
				}
			}
			if n := len(callsOf(c.sim.Calls(), graphsim.OpRoleRequestUpdate)); n != 3 {
				t.Errorf("%d PATCHes for 3 commands: want each applied once", n)
			}
			w.waitReady(10 * time.Second)
		})
	}
}

func get(url string) (int, string) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
