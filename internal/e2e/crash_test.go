package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/graphops/worker/internal/graphsim"
	"github.com/graphops/worker/internal/ledger"
)

// crashEnv makes a dead worker's messages and leases come back quickly,
// plus extra settings.
func crashEnv(extra map[string]string) map[string]string {
	env := map[string]string{"NATS_ACK_WAIT": "2s", "LEDGER_LEASE": "2s"}
	maps.Copy(env, extra)
	return env
}

// The crash points of internal/worker (built with -tags crashtest).
const (
	afterGraph   = "after-graph"   // Graph answered 2xx; the ledger does not know yet
	afterLedger  = "after-ledger"  // the ledger says applied; the broker has no ack
	holdingLease = "holding-lease" // claim and request lease held, the call about to leave
)

func TestAWorkerKilledAtACrashPointIsRestartedAndTheCommandTakesEffectExactlyOnce(t *testing.T) {
	cases := []struct {
		name  string
		point string
		role  bool
	}{
		{"a resume Graph accepted before the ledger write is reconciled by a read and not sent again", afterGraph, false},
		{"a role update Graph accepted before the ledger write is sent again with the same body", afterGraph, true},
		{"a resume recorded as applied but never acknowledged is a duplicate on redelivery", afterLedger, false},
		{"a role update recorded as applied but never acknowledged is a duplicate on redelivery", afterLedger, true},
		{"a resume whose worker died holding the request lease is read, then sent once, after the lease", holdingLease, false},
		{"a role update whose worker died holding the request lease is sent once after the lease", holdingLease, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			onBothBrokers(t, func(t *testing.T, broker string) {
				c := newCluster(t, broker, graphsim.Config{Latency: 10 * time.Millisecond}, crashEnv(nil))
				cmdID, arid, iid, rid := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
				var (
					data          []byte
					key, reqID    string
					typ, wantBody string
				)
				if tc.role {
					c.sim.AddRoleRequest(privAccessID, rid)
					data, key, reqID, typ = roleCmd(cmdID, rid), commandKey(roleSource, cmdID), privAccessID+"/"+rid, "role_request_update"
				} else {
					c.sim.AddAssignmentRequest(arid, iid)
					data, key, reqID, typ = resumeCmd(cmdID, arid, iid, "verified", false), calloutKey(arid, iid), arid, "resume"
				}
				wantBody = bodyOf(t, data)

				w1 := c.start("worker-1 (GRAPHOPS_CRASH_AT="+tc.point+")", map[string]string{"GRAPHOPS_CRASH_AT": tc.point})
				c.publish(data)
				if st := w1.waitExit(30 * time.Second); !killedBySIGKILL(st) {
					t.Fatalf("worker-1 ended with %s, want killed by SIGKILL at %s", st, tc.point)
				}

				// What the crash left behind proves it happened where it should.
				rec, ok := c.ledgerRecord(key)
				if !ok {
					t.Fatal("no ledger record after the crash: the command was never claimed")
				}
				if waiting, inFlight := c.backlog(); waiting != 0 || inFlight != 1 {
					t.Fatalf("after the crash: %d waiting, %d delivered unsettled; want the message delivered and not settled", waiting, inFlight)
				}
				switch tc.point {
				case afterGraph:
					if n := c.sim.AppliedCount(reqID); n != 1 || rec.State != ledger.StateClaimed || rec.Owner == "" {
						t.Fatalf("after the crash: Graph applied %d, ledger %s by %q; want applied once and still claimed", n, rec.State, rec.Owner)
					}
				case afterLedger:
					if n := c.sim.AppliedCount(reqID); n != 1 || rec.State != ledger.StateApplied {
						t.Fatalf("after the crash: Graph applied %d, ledger %s; want applied in both", n, rec.State)
					}
				case holdingLease:
					if n := len(c.sim.Calls()); n != 0 || rec.State != ledger.StateClaimed || rec.Owner == "" {
						t.Fatalf("after the crash: %d Graph calls, ledger %s by %q; want no call and a live claim", n, rec.State, rec.Owner)
					}
					if !time.Now().Before(rec.LeaseUntil) {
						t.Fatalf("after the crash: the claim, which is the request's lease, ran out at %s; the crash was not while holding it", rec.LeaseUntil)
					}
				}

				w2 := c.start("worker-2", nil)
				c.waitAcked(30 * time.Second)
				eventually(t, 10*time.Second, "worker-2 counts one outcome", func() (bool, string) {
					m, err := w2.metrics()
					if err != nil {
						return false, err.Error()
					}
					return total(m.outcomes()) == 1, fmt.Sprint(m.outcomes())
				})

				got := w2.mustMetrics().outcomes()
				st, calls := c.sim.Stats(), c.sim.Calls()
				if st.DoubleApplies != 0 || st.Overlaps != 0 {
					t.Errorf("simulator: %d double applies, %d overlapping calls; want none", st.DoubleApplies, st.Overlaps)
				}
				if rec, _ := c.ledgerRecord(key); rec.State != ledger.StateApplied {
					t.Errorf("ledger %s at the end, want applied", rec.State)
				}
				if dl := c.deadLetters(); len(dl) != 0 {
					t.Errorf("dead letters %+v, want none", dl)
				}
				writes := callsOf(calls, graphsim.OpResume)
				if tc.role {
					writes = callsOf(calls, graphsim.OpRoleRequestUpdate)
				}
				for _, w := range writes {
					if !jsonEqual(w.Body, wantBody) || w.Status/100 != 2 {
						t.Errorf("%s %s answered %d with body %s, want 2xx and the command's body", w.Method, w.Path, w.Status, w.Body)
					}
				}
				reads := callsOf(calls, graphsim.OpRead)
				wantOutcome := map[string]int{typ + "/applied": 1}

				switch {
				case tc.point == afterGraph && !tc.role:
					if len(writes) != 1 || len(reads) == 0 || reads[0].Time.Before(writes[0].Time) {
						t.Errorf("calls %s: want the one resume, then a read before any decision", describe(calls))
					}
					if rec, _ := c.ledgerRecord(key); !rec.Reconciled {
						t.Error("ledger record not marked as reconciled")
					}
				case tc.point == afterGraph && tc.role:
					if len(writes) != 2 || !bytes.Equal(writes[0].Body, writes[1].Body) || len(reads) != 0 {
						t.Errorf("calls %s: want the PATCH sent again with the same body, and no read", describe(calls))
					}
				case tc.point == afterLedger:
					if len(writes) != 1 || len(reads) != 0 {
						t.Errorf("calls %s: want the one write before the crash and nothing after", describe(calls))
					}
					wantOutcome = map[string]int{typ + "/duplicate": 1}
				case tc.point == holdingLease && !tc.role:
					if len(writes) != 1 || len(reads) != 1 || !reads[0].Time.Before(writes[0].Time) {
						t.Errorf("calls %s: want one read (the claim was taken over from a dead owner), then the resume", describe(calls))
					}
				case tc.point == holdingLease && tc.role:
					if len(writes) != 1 || len(reads) != 0 {
						t.Errorf("calls %s: want the one PATCH", describe(calls))
					}
				}
				wantApplied := 1
				if tc.point == afterGraph && tc.role {
					wantApplied = 2 // the simulator counts the harmless second PATCH
				}
				if n := c.sim.AppliedCount(reqID); n != wantApplied {
					t.Errorf("Graph applied %d writes for %s, want %d", n, reqID, wantApplied)
				}
				if !tc.role {
					if s, _ := c.sim.Instance(arid, iid); s != graphsim.StatusCallbackReceived {
						t.Errorf("callout instance %s, want %s", s, graphsim.StatusCallbackReceived)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(wantOutcome) {
					t.Errorf("worker-2 outcomes %v, want %v", got, wantOutcome)
				}
			})
		})
	}
}

func TestAWorkerKilledWithManyCommandsInFlightLosesNoneAndAppliesNoneTwice(t *testing.T) {
	for _, point := range []string{afterGraph, afterLedger, holdingLease} {
		t.Run("killed at "+point, func(t *testing.T) {
			t.Parallel()
			onBothBrokers(t, func(t *testing.T, broker string) {
				c := newCluster(t, broker, graphsim.Config{Latency: 5 * time.Millisecond, Jitter: 15 * time.Millisecond},
					crashEnv(map[string]string{"WORKER_CONCURRENCY": "8"}))
				type instance struct{ arid, iid string }
				var (
					msgs      [][]byte
					instances []instance
					roleIDs   []string
				)
				for range 12 {
					arid, a, b := uuid.NewString(), uuid.NewString(), uuid.NewString()
					c.sim.AddAssignmentRequest(arid, a, b)
					for _, iid := range []string{a, b} {
						instances = append(instances, instance{arid, iid})
						msgs = append(msgs, resumeCmd(uuid.NewString(), arid, iid, "verified", false))
					}
				}
				for range 3 {
					rid := uuid.NewString()
					c.sim.AddRoleRequest(privAccessID, rid)
					for range 4 {
						id := uuid.NewString()
						roleIDs = append(roleIDs, id)
						msgs = append(msgs, roleCmd(id, rid))
					}
				}
				rand.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })

				w1 := c.start("worker-1 (GRAPHOPS_CRASH_AT="+point+")", map[string]string{"GRAPHOPS_CRASH_AT": point})
				for _, m := range msgs {
					c.publish(m)
				}
				if st := w1.waitExit(30 * time.Second); !killedBySIGKILL(st) {
					t.Fatalf("worker-1 ended with %s, want killed by SIGKILL at %s", st, point)
				}
				// Every command that would be settled passes a crash point
				// before its ack, so the crash leaves all of them to worker-2:
				// the one at the crash point and the others, claimed and holding
				// request leases while they wait for the pacer (a fresh process
				// starts with one call in flight) or for their request id.
				w2 := c.start("worker-2", nil)
				c.waitAcked(45 * time.Second)
				eventually(t, 10*time.Second, "worker-2 counts every command", func() (bool, string) {
					m, err := w2.metrics()
					if err != nil {
						return false, err.Error()
					}
					return total(m.outcomes()) == len(msgs), fmt.Sprint(m.outcomes())
				})

				got := w2.mustMetrics().outcomes()
				if got["resume/applied"]+got["resume/duplicate"] != len(instances) ||
					got["role_request_update/applied"]+got["role_request_update/duplicate"] != len(roleIDs) {
					t.Errorf("worker-2 outcomes %v: want %d resumes and %d role updates applied or duplicate", got, len(instances), len(roleIDs))
				}
				if point == afterLedger && got["resume/duplicate"]+got["role_request_update/duplicate"] == 0 {
					t.Error("no duplicate after a crash between the ledger write and the ack")
				}
				st, calls := c.sim.Stats(), c.sim.Calls()
				if st.DoubleApplies != 0 || st.Overlaps != 0 {
					t.Errorf("simulator: %d double applies, %d overlapping calls; want none", st.DoubleApplies, st.Overlaps)
				}
				if st.Applied[graphsim.OpResume] != len(instances) {
					t.Errorf("Graph applied %d resumes, want %d", st.Applied[graphsim.OpResume], len(instances))
				}
				posts := resumePosts(calls)
				records := c.ledgerRecords()
				for _, in := range instances {
					if s, _ := c.sim.Instance(in.arid, in.iid); s != graphsim.StatusCallbackReceived {
						t.Errorf("instance %s/%s is %s", in.arid, in.iid, s)
					}
					if n := posts[strings.ToLower(in.arid+"/"+in.iid)]; n != 1 {
						t.Errorf("instance %s/%s: resume sent %d times, want once", in.arid, in.iid, n)
					}
					if rec := records[calloutKey(in.arid, in.iid)]; rec.State != ledger.StateApplied {
						t.Errorf("instance %s/%s: ledger %q, want applied", in.arid, in.iid, rec.State)
					}
				}
				patches := patchesByReason(calls)
				for _, id := range roleIDs {
					p := patches[id]
					if len(p) == 0 {
						t.Errorf("role update %s never sent", id)
					}
					for _, b := range p[min(1, len(p)):] {
						if !bytes.Equal(b, p[0]) {
							t.Errorf("role update %s sent again with another body: %s then %s", id, p[0], b)
						}
					}
					if rec := records[commandKey(roleSource, id)]; rec.State != ledger.StateApplied {
						t.Errorf("role update %s: ledger %q, want applied", id, rec.State)
					}
				}
				if dl := c.deadLetters(); len(dl) != 0 {
					t.Errorf("%d dead letters, want none: %+v", len(dl), dl)
				}
			})
		})
	}
}

// bodyOf is the command's data.body.
func bodyOf(t *testing.T, cmd []byte) string {
	t.Helper()
	var ce struct {
		Data struct {
			Body json.RawMessage `json:"body"`
		} `json:"data"`
	}
	if err := json.Unmarshal(cmd, &ce); err != nil {
		t.Fatal(err)
	}
	return string(ce.Data.Body)
}

func jsonEqual(a []byte, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// describe lists calls as "METHOD status" in order, for failure messages.
func describe(calls []graphsim.Call) string {
	var parts []string
	for _, c := range calls {
		m := c.Method
		if m == http.MethodGet {
			m = "GET(read)"
		}
		parts = append(parts, fmt.Sprintf("%s→%d", m, c.Status))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
