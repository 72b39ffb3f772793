package e2e_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/graphops/worker/internal/graphsim"
)

func TestAGraphCallSlowerThanTheLeaseAndTheAckWaitIsNotTakenOverByAnotherReplica(t *testing.T) {
	t.Parallel()
	onBothBrokers(t, testSlowCall)
}

func testSlowCall(t *testing.T, broker string) {
	// The call takes 2.5 times the ack wait and the ledger lease: without
	// renewals during the call, the broker would redeliver the message and
	// the other replica would take the claim and the request lease over,
	// read the request (an overlap) and resume it a second time.
	c := newCluster(t, broker, graphsim.Config{}, map[string]string{"NATS_ACK_WAIT": "2s", "LEDGER_LEASE": "2s", "GRAPH_TIMEOUT": "15s"})
	arid, iid := uuid.NewString(), uuid.NewString()
	c.sim.AddAssignmentRequest(arid, iid)
	c.sim.Inject(graphsim.Match{Operation: graphsim.OpResume}, graphsim.Fault{Delay: 5 * time.Second}, 1)
	workers := []*proc{c.start("replica-1", nil), c.start("replica-2", nil)}
	c.publish(resumeCmd(uuid.NewString(), arid, iid, "slow", false))
	c.waitAcked(30 * time.Second)

	got := map[string]int{}
	eventually(t, 10*time.Second, "one outcome counted", func() (bool, string) {
		clear(got)
		for _, w := range workers {
			m, err := w.metrics()
			if err != nil {
				return false, err.Error()
			}
			for k, v := range m.outcomes() {
				got[k] += v
			}
		}
		return total(got) >= 1, fmt.Sprint(got)
	})
	st, calls := c.sim.Stats(), c.sim.Calls()
	if len(calls) != 1 || calls[0].Operation != graphsim.OpResume || calls[0].Status != 204 {
		t.Errorf("calls %s: want the one slow resume, nothing else", describe(calls))
	}
	if st.Overlaps != 0 || st.DoubleApplies != 0 {
		t.Errorf("simulator: %d overlapping calls, %d double applies; want none", st.Overlaps, st.DoubleApplies)
	}
	if fmt.Sprint(got) != "map[resume/applied:1]" {
		t.Errorf("outcomes %v, want one resume applied", got)
	}
	if n, err := c.b.redelivered(); err != nil || n != 0 {
		t.Errorf("%d redeliveries (%v): want none during the call", n, err)
	}
	if dl := c.deadLetters(); len(dl) != 0 {
		t.Errorf("dead letters %+v, want none", dl)
	}
}

func TestAResumeAbandonedWithoutAnAnswerIsNotReadOrSentAgainWhileGraphStillHasIt(t *testing.T) {
	// The resume takes 6s at Graph. The worker stops waiting for the
	// answer earlier, and Graph still has the call: whoever reads the
	// request or sends the resume before it lands overlaps it, and a resume
	// sent then is applied twice.
	cases := []struct {
		name  string
		env   map[string]string
		drain bool
	}{
		{"abandoned at the end of a drain's grace, then taken over by another replica",
			map[string]string{"NATS_ACK_WAIT": "10s", "LEDGER_LEASE": "10s", "GRAPH_TIMEOUT": "20s", "SHUTDOWN_GRACE": "3s", "GRAPH_UNANSWERED_SETTLE": "8s"}, true},
		{"abandoned at GRAPH_TIMEOUT, then reconciled by the same worker",
			map[string]string{"GRAPH_TIMEOUT": "1s", "RETRY_INITIAL_INTERVAL": "500ms", "RETRY_MAX_INTERVAL": "30s", "GRAPH_UNANSWERED_SETTLE": "8s"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			onBothBrokers(t, func(t *testing.T, broker string) {
				c := newCluster(t, broker, graphsim.Config{}, tc.env)
				arid, iid := uuid.NewString(), uuid.NewString()
				c.sim.AddAssignmentRequest(arid, iid)
				c.sim.Inject(graphsim.Match{Operation: graphsim.OpResume}, graphsim.Fault{Delay: 6 * time.Second}, 1)
				a := c.start("worker-a", nil)
				c.publish(resumeCmd(uuid.NewString(), arid, iid, "slow", false))
				if tc.drain {
					eventually(t, 10*time.Second, "the resume in flight at Graph", func() (bool, string) {
						st := c.sim.Stats()
						return st.InFlight == 1, fmt.Sprint(st)
					})
					c.start("worker-b", nil)
					a.signal(syscall.SIGTERM)
					if st := a.waitExit(10 * time.Second); st.ExitCode() != 0 {
						t.Errorf("worker-a exited with %s, want 0", st)
					}
				}
				c.waitAcked(30 * time.Second)
				eventually(t, 10*time.Second, "the abandoned call answered by Graph", func() (bool, string) {
					st := c.sim.Stats()
					return st.InFlight == 0, fmt.Sprint(st)
				})
				if st := c.sim.Stats(); st.Overlaps != 0 || st.DoubleApplies != 0 {
					t.Errorf("simulator: %d overlapping calls, %d double applies, calls %s; want none", st.Overlaps, st.DoubleApplies, describe(c.sim.Calls()))
				}
			})
		})
	}
}
