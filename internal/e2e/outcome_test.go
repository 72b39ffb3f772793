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

	"github.com/graphops/worker/internal/graphsim"
)

// The crash point between the outcome event and the acknowledgement.
const afterEvent = "after-event"

const outcomeStream = "GRAPHOPS_OUTCOMES"

// outcomeEvents reads every event of the outcome stream: event id by
// command id, each id once per stored copy.
func (c *cluster) outcomeEvents() map[string][]string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := c.js.OrderedConsumer(ctx, outcomeStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		c.t.Fatalf("outcome stream: %v", err)
	}
	out := map[string][]string{}
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			c.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var e struct {
				ID   string `json:"id"`
				Type string `json:"type"`
				Data struct {
					CommandID string `json:"command_id"`
					Outcome   string `json:"outcome"`
				} `json:"data"`
			}
			if err := json.Unmarshal(m.Data(), &e); err != nil || e.Type != "graphops.command.outcome" ||
				m.Headers().Get("Nats-Msg-Id") != e.ID {
				c.t.Fatalf("event %s (%v) with Nats-Msg-Id %q", m.Data(), err, m.Headers().Get("Nats-Msg-Id"))
			}
			out[e.Data.CommandID] = append(out[e.Data.CommandID], e.ID+"/"+e.Data.Outcome)
		}
		if n == 0 {
			return out
		}
	}
}

// A subscriber to graphops.outcomes.> receives exactly one distinct event
// per command, with its outcome, across a kill -9 at either side of the
// publication and the redelivery that follows (SPEC §9, issue 14).
func TestOutcomeEventsAreOnePerCommandAcrossAKillAndARedelivery(t *testing.T) {
	for _, point := range []string{afterLedger, afterEvent} {
		t.Run("killed at "+point, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, graphsim.Config{Latency: 5 * time.Millisecond},
				crashEnv(map[string]string{"OUTCOME_EVENTS": "on"}))
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
			c.waitAcked(30 * time.Second)

			events := c.outcomeEvents()
			for _, id := range ids {
				got := events[id]
				if len(got) != 1 || !strings.HasSuffix(got[0], "/applied") {
					t.Errorf("command %s: events %v, want exactly one, applied", id, got)
				}
			}
			if len(events) != len(ids) {
				t.Errorf("events for %d commands, want %d: %v", len(events), len(ids), events)
			}
			if st := c.sim.Stats(); st.DoubleApplies != 0 {
				t.Errorf("%d double applies", st.DoubleApplies)
			}
		})
	}
}

// An outcome stream that refuses events (full, or deleted) makes commands
// wait — applied once, recorded, not acknowledged — and /readyz says why;
// when the stream takes events again every command's event arrives and
// nothing is applied twice (SPEC §9).
func TestAFullOrMissingOutcomeStreamMakesCommandsWaitAndLosesNothing(t *testing.T) {
	for _, mode := range []string{"full", "deleted"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, graphsim.Config{}, crashEnv(map[string]string{"OUTCOME_EVENTS": "on"}))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfg := jetstream.StreamConfig{Name: outcomeStream, Subjects: []string{"graphops.outcomes.>"},
				MaxMsgs: 1, Discard: jetstream.DiscardNew}
			if _, err := c.js.CreateStream(ctx, cfg); err != nil { // the operator's: one event at most
				t.Fatal(err)
			}
			w := c.start("worker", nil)
			if mode == "deleted" {
				if err := c.js.DeleteStream(ctx, outcomeStream); err != nil {
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
				code, body := get(t, "http://"+w.admin+"/readyz")
				return code == http.StatusServiceUnavailable && strings.Contains(body, "outcome events"), fmt.Sprint(code, " ", body)
			})
			ci, err := c.consumerInfo()
			if err != nil {
				t.Fatal(err)
			}
			if ci.AckFloor.Stream >= 3 {
				t.Fatalf("every command acknowledged without its event: %s", consumerState(ci))
			}
			// The operator makes room.
			cfg.MaxMsgs = -1
			if mode == "full" {
				_, err = c.js.UpdateStream(ctx, cfg)
			} else {
				_, err = c.js.CreateStream(ctx, cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			c.waitAcked(60 * time.Second)
			events := c.outcomeEvents()
			for _, id := range ids {
				if len(events[id]) != 1 {
					t.Errorf("command %s: events %v, want one", id, events[id])
				}
			}
			if n := len(callsOf(c.sim.Calls(), graphsim.OpRoleRequestUpdate)); n != 3 {
				t.Errorf("%d PATCHes for 3 commands: want each applied once", n)
			}
			w.waitReady(10 * time.Second)
		})
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
