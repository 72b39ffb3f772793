package e2e_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/graphops/worker/internal/graphsim"
)

func TestSIGTERMHandsTheBacklogToTheOtherReplicaAtOnceAndExitsZeroWithinTheGrace(t *testing.T) {
	t.Parallel()
	onBothBrokers(t, testDrain)
}

func testDrain(t *testing.T, broker string) {
	const (
		grace     = 3 * time.Second
		finishIn  = 10 * time.Second // after the SIGTERM; the ack wait and the leases are 30s
		arCount   = 60
		roleCount = 4
		perRole   = 10
	)
	// Graph answers in 50ms and each worker has 4 slots: a backlog builds
	// up, and commands for a busy request id wait on its request lease.
	c := newCluster(t, broker, graphsim.Config{Latency: 50 * time.Millisecond}, map[string]string{
		"NATS_ACK_WAIT": "30s", "LEDGER_LEASE": "30s", "SHUTDOWN_GRACE": grace.String(), "WORKER_CONCURRENCY": "4",
	})
	var (
		msgs      [][]byte
		instances [][2]string
		roleIDs   []string
		reqIDs    []string
		keys      []string // ledger keys of every command
	)
	for range arCount {
		arid, a, b := uuid.NewString(), uuid.NewString(), uuid.NewString()
		c.sim.AddAssignmentRequest(arid, a, b)
		reqIDs = append(reqIDs, arid)
		for _, iid := range []string{a, b} {
			instances = append(instances, [2]string{arid, iid})
			msgs = append(msgs, resumeCmd(uuid.NewString(), arid, iid, "approved", false))
			keys = append(keys, calloutKey(arid, iid))
		}
	}
	for range roleCount {
		rid := uuid.NewString()
		c.sim.AddRoleRequest(privAccessID, rid)
		reqIDs = append(reqIDs, privAccessID+"/"+rid)
		for range perRole {
			id := uuid.NewString()
			roleIDs = append(roleIDs, id)
			keys = append(keys, commandKey(roleSource, id))
		}
	}
	// Interleave the role updates with the resumes so that the backlog at
	// the SIGTERM has both.
	for i, id := range roleIDs {
		rid := strings.TrimPrefix(reqIDs[arCount+i%roleCount], privAccessID+"/")
		at := (i * len(msgs)) / len(roleIDs)
		msgs = append(msgs[:at], append([][]byte{roleCmd(id, rid)}, msgs[at:]...)...)
	}

	a := c.start("worker-a (gets SIGTERM)", nil)
	b := c.start("worker-b", nil)
	for _, m := range msgs {
		c.publish(m)
	}
	// SIGTERM once both replicas are busy and much is left.
	eventually(t, 30*time.Second, "both replicas settle commands", func() (bool, string) {
		ma, errA := a.metrics()
		mb, errB := b.metrics()
		if errA != nil || errB != nil {
			return false, fmt.Sprint(errA, errB)
		}
		na, nb := total(ma.outcomes()), total(mb.outcomes())
		return na >= 5 && nb >= 5, fmt.Sprintf("worker-a %d, worker-b %d", na, nb)
	})
	// Graph closes the door on resumes for 3s: the replica that gets the
	// 429 shuts its resume gate, and the other at its next fleet sync.
	// worker-a's resume commands then wait at the gate when the SIGTERM
	// comes (no resume call of its can still be in flight 200ms after the
	// gate closed): the drain must hand them back, not sit on them.
	c.sim.Inject(graphsim.Match{Operation: graphsim.OpResume}, graphsim.Fault{Status: 429, RetryAfter: "3"}, 1)
	eventually(t, 15*time.Second, "worker-a holding resumes at a gate closed for 200ms", func() (bool, string) {
		m, err := a.metrics()
		if err != nil {
			return false, err.Error()
		}
		gate := m.sum("graphops_throttled_until_seconds", map[string]string{"operation": "resume"})
		held := m.sum("graphops_in_flight", map[string]string{"type": "resume"})
		return gate > 0.5 && gate < 2.8 && held >= 1, fmt.Sprintf("gate closed for %.2fs more, %v resumes in flight", gate, held)
	})
	waiting, inFlight := c.backlog()
	backlog := waiting + inFlight
	if backlog < len(msgs)/2 {
		t.Fatalf("backlog of %d at the SIGTERM, want at least half of %d: the test would prove little", backlog, len(msgs))
	}
	sigterm := time.Now()
	a.signal(syscall.SIGTERM)

	st := a.waitExit(grace + 5*time.Second)
	exitedIn := time.Since(sigterm)
	if st.ExitCode() != 0 {
		t.Errorf("worker-a exited with %s after SIGTERM, want 0", st)
	}
	if exitedIn > grace {
		t.Errorf("worker-a exited %s after SIGTERM, more than SHUTDOWN_GRACE %s", exitedIn.Round(time.Millisecond), grace)
	}
	if len(a.logEntries("draining")) != 1 {
		t.Error("worker-a did not log its drain")
	}
	handedBack := 0
	for _, e := range a.logEntries("handed back") {
		if e["why"] == "draining" {
			handedBack++
		}
	}
	if handedBack == 0 {
		t.Error("worker-a handed back none of the commands waiting at its throttle gate")
	}
	// It left nothing behind: no claim in its name, and so no request id
	// locked (a claim is its request's lease).
	replica := a.replicaID()
	records := c.ledgerRecords()
	for _, k := range keys {
		if rec, ok := records[k]; ok && rec.Owner == replica {
			t.Errorf("worker-a exited still owning the claim %s (%s until %s)", k, rec.State, rec.LeaseUntil)
		}
	}

	deadline := sigterm.Add(finishIn)
	eventually(t, time.Until(deadline), "the backlog finished by worker-b within "+finishIn.String()+" of the SIGTERM", func() (bool, string) {
		waiting, inFlight, err := c.b.backlog()
		if err != nil {
			return false, err.Error()
		}
		return waiting == 0 && inFlight == 0, fmt.Sprintf("%d waiting, %d delivered unsettled", waiting, inFlight)
	})
	t.Logf("backlog %d at the SIGTERM; worker-a exited after %s and handed back %d waiting commands; all done %s after the SIGTERM",
		backlog, exitedIn.Round(time.Millisecond), handedBack, time.Since(sigterm).Round(time.Millisecond))

	// Every command applied once: worker-a's outcomes are in its logs (its
	// /metrics went with it), worker-b's in its /metrics.
	var gotB map[string]int
	eventually(t, 10*time.Second, "worker-b counts the rest", func() (bool, string) {
		m, err := b.metrics()
		if err != nil {
			return false, err.Error()
		}
		gotB = m.outcomes()
		return total(gotB)+len(a.logEntries("applied")) >= len(msgs), fmt.Sprint(gotB)
	})
	appliedA := len(a.logEntries("applied"))
	otherA := len(a.logEntries("duplicate: already settled")) + len(a.logEntries("dead-lettered"))
	if appliedA+gotB["resume/applied"]+gotB["role_request_update/applied"] != len(msgs) || otherA != 0 || total(gotB) != gotB["resume/applied"]+gotB["role_request_update/applied"] {
		t.Errorf("worker-a applied %d (and %d other outcomes), worker-b %v: want %d applied in all, nothing else", appliedA, otherA, gotB, len(msgs))
	}
	sst, calls := c.sim.Stats(), c.sim.Calls()
	if sst.DoubleApplies != 0 || sst.Overlaps != 0 {
		t.Errorf("simulator: %d double applies, %d overlapping calls; want none", sst.DoubleApplies, sst.Overlaps)
	}
	posts := resumePosts(calls)
	for _, in := range instances {
		if n := posts[strings.ToLower(in[0]+"/"+in[1])]; n != 1 {
			t.Errorf("instance %s/%s resumed %d times, want once", in[0], in[1], n)
		}
	}
	patches := patchesByReason(calls)
	for _, id := range roleIDs {
		if n := len(patches[id]); n != 1 {
			t.Errorf("role update %s sent %d times, want once", id, n)
		}
	}
	if dl := c.deadLetters(); len(dl) != 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dl), dl)
	}
}

// replicaID is the owner name the worker logged when it started consuming.
func (p *proc) replicaID() string {
	p.t.Helper()
	for _, e := range p.logEntries("consuming") {
		if r, ok := e["replica"].(string); ok && r != "" {
			return r
		}
	}
	p.t.Fatalf("%s logged no replica id", p.name)
	return ""
}
