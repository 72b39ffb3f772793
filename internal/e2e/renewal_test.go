package e2e_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/graphops/worker/internal/graphsim"
)

// Lock renewal while a command waits (issue 11 item 5): the broker's lease
// on a message must not lapse however the worker waits.

func TestACommandWaitingForAnotherDeliverysClaimKeepsItsMessage(t *testing.T) {
	t.Parallel()
	onBothBrokers(t, func(t *testing.T, broker string) {
		knownBug(t, "issue 11: the copy waiting for the claim loses its broker lease (renewEvery restarted "+
			"per 1s wait slice never fires): redelivered while it waits, on JetStream (timing-dependent) and on "+
			"Service Bus (ack failed: lock lost); fixed by the runner keeping every message alive from its own lock expiry")
		// The same role update published twice: the second copy waits for
		// the first one's claim while Graph takes 1.5 times the ack wait
		// (the lock duration) over the first.
		c := newCluster(t, broker, graphsim.Config{}, map[string]string{
			"NATS_ACK_WAIT": "6s", "LEDGER_LEASE": "6s", "GRAPH_TIMEOUT": "20s",
		})
		rid, id := uuid.NewString(), uuid.NewString()
		c.sim.AddRoleRequest(privAccessID, rid)
		c.sim.Inject(graphsim.Match{Operation: graphsim.OpRoleRequestUpdate}, graphsim.Fault{Delay: 9 * time.Second}, 1)
		w := c.start("worker", nil)
		c.publish(roleCmd(id, rid))
		eventually(t, 10*time.Second, "the first copy at Graph", func() (bool, string) {
			st := c.sim.Stats()
			return st.InFlight == 1, fmt.Sprint(st)
		})
		c.publish(roleCmd(id, rid))
		c.waitAcked(30 * time.Second)
		want := "map[role_request_update/applied:1 role_request_update/duplicate:1]"
		eventually(t, 10*time.Second, "both copies counted", func() (bool, string) {
			m, err := w.metrics()
			if err != nil {
				return false, err.Error()
			}
			return total(m.outcomes()) >= 2, fmt.Sprint(m.outcomes())
		})
		if got := w.mustMetrics().outcomes(); fmt.Sprint(got) != want {
			t.Errorf("outcomes %v, want %s", got, want)
		}
		if n, err := c.b.redelivered(); err != nil || n != 0 {
			t.Errorf("%d redeliveries (%v): the waiting copy's lease lapsed, want none", n, err)
		}
		if n := len(w.logEntries("ack failed")); n != 0 {
			t.Errorf("%d acks failed, want none", n)
		}
	})
}

func TestAServiceBusLockShorterThanTheWorkersSettingsIsKeptAliveThroughASlowCall(t *testing.T) {
	t.Parallel()
	knownBug(t, "issue 11: the renewal period is min(NATS_ACK_WAIT, LEDGER_LEASE)/3 on Service Bus too, "+
		"never the message's LockedUntil: a 3s lock lapses during a 7s call and the message is delivered "+
		"twice more; fixed by the runner renewing from each message's lock expiry")
	// The entity's lock is 3s; the worker is left at its defaults
	// (NATS_ACK_WAIT and LEDGER_LEASE 30s). Each message's LockedUntil
	// says how long its lock lasts: renewal must follow it.
	c := newCluster(t, serviceBus, graphsim.Config{}, map[string]string{sbLockEnv: "3s", "GRAPH_TIMEOUT": "20s"})
	arid, iid := uuid.NewString(), uuid.NewString()
	c.sim.AddAssignmentRequest(arid, iid)
	c.sim.Inject(graphsim.Match{Operation: graphsim.OpResume}, graphsim.Fault{Delay: 7 * time.Second}, 1)
	w := c.start("worker", nil)
	c.publish(resumeCmd(uuid.NewString(), arid, iid, "slow", false))
	c.waitAcked(30 * time.Second)
	eventually(t, 10*time.Second, "one outcome counted", func() (bool, string) {
		m, err := w.metrics()
		if err != nil {
			return false, err.Error()
		}
		return total(m.outcomes()) >= 1, fmt.Sprint(m.outcomes())
	})
	if n, err := c.b.redelivered(); err != nil || n != 0 {
		t.Errorf("%d redeliveries (%v): the lock lapsed during the call, want none", n, err)
	}
	if got := w.mustMetrics().outcomes(); fmt.Sprint(got) != "map[resume/applied:1]" {
		t.Errorf("outcomes %v, want one resume applied", got)
	}
	if st := c.sim.Stats(); st.Overlaps != 0 || st.DoubleApplies != 0 {
		t.Errorf("simulator: %d overlaps, %d double applies; want none", st.Overlaps, st.DoubleApplies)
	}
}

// knownBugsEnv runs the tests that knownBug skips, for whoever fixes them.
const knownBugsEnv = "GRAPHOPS_E2E_KNOWN_BUGS"

// knownBug skips a test that fails for a bug whose fix is under way
// elsewhere, unless knownBugsEnv is set.
func knownBug(t *testing.T, why string) {
	t.Helper()
	if os.Getenv(knownBugsEnv) == "" {
		t.Skip(why + " (set " + knownBugsEnv + "=1 to run it)")
	}
}
