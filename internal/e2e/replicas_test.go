package e2e_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphsim"
	"github.com/graphops/worker/internal/ledger"
)

func TestOneWorkerNeverHasTwoCallsInFlightForOneRequestId(t *testing.T) {
	t.Parallel()
	onBothBrokers(t, testOneWorkerPerRequestID)
}

func testOneWorkerPerRequestID(t *testing.T, broker string) {
	const latency = 300 * time.Millisecond
	c := newCluster(t, broker, graphsim.Config{Latency: latency, AutoCreate: true}, nil)
	w := c.start("worker", nil)
	// Past the pacer's slow start (one call in flight at first), which
	// would serialize everything and hide the per-request rule.
	for range 80 {
		c.publish(resumeCmd(uuid.NewString(), uuid.NewString(), uuid.NewString(), "warm-up", false))
	}
	c.waitAcked(30 * time.Second)

	arid := uuid.NewString()
	var iids, others []string
	for range 6 {
		iids = append(iids, uuid.NewString())
		others = append(others, uuid.NewString())
	}
	c.sim.AddAssignmentRequest(arid, iids...)
	for i := range iids {
		c.publish(resumeCmd(uuid.NewString(), arid, iids[i], "same request", false))
		c.publish(resumeCmd(uuid.NewString(), others[i], uuid.NewString(), "other request", false))
	}
	c.waitAcked(30 * time.Second)

	st := c.sim.Stats()
	if st.Overlaps != 0 {
		t.Errorf("%d calls arrived while another call for the same request id was in flight, want none", st.Overlaps)
	}
	if n := c.sim.AppliedCount(arid); n != len(iids) {
		t.Errorf("%d resumes applied for the shared request id, want %d", n, len(iids))
	}
	// The calls for the other ids ran in parallel, so the serialization
	// above is per request id, not a worker making one call at a time.
	var arrivals []time.Time
	for _, call := range c.sim.Calls() {
		if slices.Contains(others, call.RequestID) {
			arrivals = append(arrivals, call.Time)
		}
	}
	slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	parallel := false
	for i := 1; i < len(arrivals); i++ {
		parallel = parallel || arrivals[i].Sub(arrivals[i-1]) < latency/2
	}
	if len(arrivals) != len(others) || !parallel {
		t.Errorf("calls for distinct request ids arrived at %v: want %d, some of them in parallel", arrivals, len(others))
	}
	if got := w.mustMetrics().outcomes(); got["resume/applied"] != 80+2*len(iids) {
		t.Errorf("outcomes %v, want %d resumes applied", got, 80+2*len(iids))
	}
}

// The replica test's workload: every callout instance gets one command;
// some of them are published twice, some get a second command with a
// JSON-equal body, some a second command with another decision; every role
// request gets several distinct updates, some published twice.
const (
	assignmentRequests = 20
	instancesPerAR     = 5
	roleRequests       = 10
	updatesPerRole     = 9
)

func TestThreeReplicasApplyEveryCommandExactlyOnceWithoutOverlapsOrLosses(t *testing.T) {
	t.Parallel()
	onBothBrokers(t, testThreeReplicas)
}

func testThreeReplicas(t *testing.T, broker string) {
	// A few commands in flight per replica, so that the load spreads over
	// all three (a broker hands messages to whichever receiver asks first).
	c := newCluster(t, broker, graphsim.Config{Latency: 5 * time.Millisecond, Jitter: 15 * time.Millisecond},
		map[string]string{"WORKER_CONCURRENCY": "4"})

	type conflict struct{ approveID, denyID string }
	var (
		msgs       [][]byte
		arids      []string
		instances  [][2]string             // arid, iid
		conflicts  = map[string]conflict{} // by "arid/iid", lower-cased
		roleIDs    []string
		rids       []string
		want       = map[string]int{}
		conflictsN int
	)
	for range assignmentRequests {
		arid := uuid.NewString()
		arids = append(arids, arid)
		var iids []string
		for range instancesPerAR {
			iid := uuid.NewString()
			iids = append(iids, iid)
			instances = append(instances, [2]string{arid, iid})
			n := len(instances)
			id := uuid.NewString()
			orig := resumeCmd(id, arid, iid, "approved", false)
			msgs = append(msgs, orig)
			want["resume/applied"]++
			switch n % 10 {
			case 0, 1, 2, 3: // the same message twice
				msgs = append(msgs, orig)
				want["resume/duplicate"]++
			case 4, 5, 6: // another command, a JSON-equal body
				msgs = append(msgs, resumeCmdReordered(uuid.NewString(), arid, iid, "approved"))
				want["resume/duplicate"]++
			case 7: // another command, another decision: whichever comes second is a conflict
				deny := uuid.NewString()
				msgs = append(msgs, resumeCmd(deny, arid, iid, "denied", true))
				conflicts[strings.ToLower(arid+"/"+iid)] = conflict{approveID: id, denyID: deny}
				want["resume/dead_lettered"]++
				conflictsN++
			}
		}
		c.sim.AddAssignmentRequest(arid, iids...)
	}
	for range roleRequests {
		rid := uuid.NewString()
		rids = append(rids, rid)
		c.sim.AddRoleRequest(privAccessID, rid)
		for u := range updatesPerRole {
			id := uuid.NewString()
			roleIDs = append(roleIDs, id)
			msgs = append(msgs, roleCmd(id, rid))
			want["role_request_update/applied"]++
			if u%4 == 0 {
				msgs = append(msgs, roleCmd(id, rid))
				want["role_request_update/duplicate"]++
			}
		}
	}
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 0x9e3779b9))
	r.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	t.Logf("%d messages (publish order seed %d), expected outcomes %v", len(msgs), seed, want)

	workers := []*proc{c.start("replica-1", nil), c.start("replica-2", nil), c.start("replica-3", nil)}
	for _, m := range msgs {
		c.publish(m)
	}
	c.waitAcked(60 * time.Second)
	sum := func() (map[string]int, []map[string]int, error) {
		all, per := map[string]int{}, []map[string]int{}
		for _, w := range workers {
			m, err := w.metrics()
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", w.name, err)
			}
			o := m.outcomes()
			per = append(per, o)
			for k, v := range o {
				all[k] += v
			}
		}
		return all, per, nil
	}
	eventually(t, 10*time.Second, "the replicas' graphops_commands_total add up to the messages published", func() (bool, string) {
		all, _, err := sum()
		if err != nil {
			return false, err.Error()
		}
		return total(all) >= len(msgs), fmt.Sprint(all)
	})

	// Nothing lost, nothing counted twice: the outcomes are exactly those
	// planned, summed over the replicas, and each replica took a share.
	got, per, err := sum()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outcomes summed over the replicas %v, want %v", got, want)
	}
	for i, o := range per {
		if total(o) == 0 {
			t.Errorf("%s settled no command: the test did not exercise three replicas", workers[i].name)
		}
	}
	t.Logf("per replica: %v", per)
	conflictDL, inFlight := 0.0, 0.0
	for _, w := range workers {
		m := w.mustMetrics()
		conflictDL += m.sum("graphops_dead_letters_total", map[string]string{"type": "resume", "reason": "conflict"})
		inFlight += m.sum("graphops_in_flight", nil)
	}
	if int(conflictDL) != conflictsN {
		t.Errorf("graphops_dead_letters_total{reason=conflict} sums to %v, want %d", conflictDL, conflictsN)
	}
	if inFlight != 0 {
		t.Errorf("graphops_in_flight sums to %v once everything is settled, want 0", inFlight)
	}

	// Graph saw each callout instance resumed once, each role update once,
	// one call at a time per request id.
	st, calls := c.sim.Stats(), c.sim.Calls()
	if st.DoubleApplies != 0 || st.Overlaps != 0 {
		t.Errorf("simulator: %d double applies, %d overlapping calls; want none", st.DoubleApplies, st.Overlaps)
	}
	if st.Applied[graphsim.OpResume] != len(instances) || st.Applied[graphsim.OpRoleRequestUpdate] != len(roleIDs) {
		t.Errorf("simulator applied %v, want %d resumes and %d role updates", st.Applied, len(instances), len(roleIDs))
	}
	posts := resumePosts(calls)
	records := c.ledgerRecords()
	for _, in := range instances {
		key := strings.ToLower(in[0] + "/" + in[1])
		if posts[key] != 1 {
			t.Errorf("instance %s: resumed %d times, want once", key, posts[key])
		}
		if s, _ := c.sim.Instance(in[0], in[1]); s != graphsim.StatusCallbackReceived {
			t.Errorf("instance %s: %s", key, s)
		}
		if rec := records[calloutKey(in[0], in[1])]; rec.State != ledger.StateApplied {
			t.Errorf("instance %s: ledger %q, want applied", key, rec.State)
		}
	}
	for _, arid := range arids {
		if n := c.sim.AppliedCount(arid); n != instancesPerAR {
			t.Errorf("request %s: %d resumes applied, want %d", arid, n, instancesPerAR)
		}
	}
	patches := patchesByReason(calls)
	for _, id := range roleIDs {
		if n := len(patches[id]); n != 1 {
			t.Errorf("role update %s: sent %d times, want once", id, n)
		}
	}
	for _, rid := range rids {
		if n := c.sim.AppliedCount(privAccessID + "/" + rid); n != updatesPerRole {
			t.Errorf("role request %s: %d updates applied, want %d", rid, n, updatesPerRole)
		}
	}

	// Each conflict is dead-lettered naming the decision that won, and the
	// decision Graph got is the winner's.
	dl := c.deadLetters()
	if len(dl) != conflictsN {
		t.Errorf("%d dead letters, want %d conflicts", len(dl), conflictsN)
	}
	for _, e := range dl {
		key, cf := "", conflict{}
		for k, v := range conflicts {
			if v.approveID == e.CommandID || v.denyID == e.CommandID {
				key, cf = k, v
			}
		}
		winner := cf.approveID
		if e.CommandID == cf.approveID {
			winner = cf.denyID
		}
		if e.Reason != string(dlq.ReasonConflict) || key == "" || !strings.Contains(e.Description, winner) {
			t.Errorf("dead letter %s %q for command %s: want a conflict naming the other command of its instance", e.Reason, e.Description, e.CommandID)
			continue
		}
		iid := key[strings.IndexByte(key, '/')+1:]
		for _, call := range callsOf(calls, graphsim.OpResume) {
			if strings.Contains(string(call.Body), iid) && strings.Contains(string(call.Body), `"state":"Denied"`) != (winner == cf.denyID) {
				t.Errorf("instance %s: Graph got the decision of the dead-lettered command %s", key, e.CommandID)
			}
		}
	}
}
