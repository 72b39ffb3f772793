package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphsim"
	"github.com/graphops/worker/internal/ledger"
)

func TestADeadLetterReplayedWithTheCLIIsProcessedAfreshAndAppliedOnce(t *testing.T) {
	t.Parallel()
	onBothBrokers(t, func(t *testing.T, broker string) {
		c := newCluster(t, broker, graphsim.Config{Latency: 5 * time.Millisecond}, nil)
		arid, iid := uuid.NewString(), uuid.NewString()
		c.sim.AddAssignmentRequest(arid, iid)
		// Graph refuses the first resume for good: the command is
		// dead-lettered, not recorded as applied.
		c.sim.Inject(graphsim.Match{Operation: graphsim.OpResume}, graphsim.Fault{Status: 400, Code: "BadRequest"}, 1)
		w := c.start("worker", nil)
		cmdID := uuid.NewString()
		data := resumeCmd(cmdID, arid, iid, "verified", false)
		c.publish(data)

		var dl []deadLetter
		eventually(t, 20*time.Second, "the command dead-lettered", func() (bool, string) {
			dl = c.deadLetters()
			return len(dl) == 1, fmt.Sprint(dl)
		})
		if dl[0].Reason != string(dlq.ReasonGraphRejected) || dl[0].CommandID != cmdID || !bytes.Equal(dl[0].Body, data) {
			t.Fatalf("dead letter %v with body %q, want graph_rejected for %s with the command byte for byte", dl[0], dl[0].Body, cmdID)
		}
		c.waitAcked(10 * time.Second)
		if rec, _ := c.ledgerRecord(calloutKey(arid, iid)); rec.State == ledger.StateApplied {
			t.Fatalf("ledger %s after the dead letter, want it not applied", rec.State)
		}

		out, err := c.cli("dlq", "replay", "--all")
		if err != nil {
			t.Fatalf("worker dlq replay --all: %v\n%s", err, out)
		}
		c.waitAcked(20 * time.Second)
		eventually(t, 10*time.Second, "the replayed command applied", func() (bool, string) {
			m, err := w.metrics()
			if err != nil {
				return false, err.Error()
			}
			o := m.outcomes()
			return o["resume/applied"] == 1, fmt.Sprint(o)
		})
		if got := w.mustMetrics().outcomes(); fmt.Sprint(got) != "map[resume/applied:1 resume/dead_lettered:1]" {
			t.Errorf("outcomes %v, want one dead letter, then one applied", got)
		}
		if dl := c.deadLetters(); len(dl) != 0 {
			t.Errorf("dead letters after the replay: %v, want none", dl)
		}
		if n := c.sim.AppliedCount(arid); n != 1 {
			t.Errorf("Graph applied %d resumes, want 1", n)
		}
		if rec, _ := c.ledgerRecord(calloutKey(arid, iid)); rec.State != ledger.StateApplied {
			t.Errorf("ledger %s after the replay, want applied", rec.State)
		}
		if st := c.sim.Stats(); st.DoubleApplies != 0 || st.Overlaps != 0 {
			t.Errorf("simulator: %d double applies, %d overlaps; want none", st.DoubleApplies, st.Overlaps)
		}
	})
}

// cli runs `worker <args>` with the cluster's environment and returns its
// output.
func (c *cluster) cli(args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, workerBin, args...)
	dir := c.t.TempDir()
	cmd.Dir = dir
	env := maps.Clone(c.base)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "WORKER_DATA_DIR=" + dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
