package e2e_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/graphops/worker/internal/graphsim"
)

func TestProbeSameProcessSerialization(t *testing.T) {
	c := newCluster(t, graphsim.Config{Latency: 300 * time.Millisecond}, nil)
	arid, a, b := uuid.NewString(), uuid.NewString(), uuid.NewString()
	c.sim.AddAssignmentRequest(arid, a, b)
	c.start("one", nil)
	c.publish(resumeCmd(uuid.NewString(), arid, a, "x", false))
	c.publish(resumeCmd(uuid.NewString(), arid, b, "x", false))
	c.waitAcked(20 * time.Second)
	st := c.sim.Stats()
	t.Logf("overlaps %d calls %s", st.Overlaps, describe(c.sim.Calls()))
	for _, cl := range c.sim.Calls() {
		t.Logf("%s %s", cl.Time.Format("15:04:05.000"), cl.Method)
	}
}
