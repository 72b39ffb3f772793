package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/graphsim"
)

// The running worker reports its own backlog (docs/SPEC.md §7) from start-up: once
// it has consumed everything, the backlog and the oldest age read 0.
func TestTheWorkerReportsItsBacklogOnMetrics(t *testing.T) {
	h := newHarness(t, graphsim.Config{AutoCreate: true}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := h.metrics()
		if strings.Contains(m, "\ngraphops_backlog_messages 0\n") && strings.Contains(m, "\ngraphops_oldest_message_age_seconds 0\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks graphops_backlog_messages 0 and graphops_oldest_message_age_seconds 0 after 10s:\n%s", grep(m, "graphops_backlog|graphops_oldest"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func grep(s, words string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range strings.Split(words, "|") {
			if strings.Contains(l, w) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
