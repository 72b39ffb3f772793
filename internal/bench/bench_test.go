package bench_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/bench"
)

func TestThroughputDrainsEveryCommandThroughBothLoops(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: embedded JetStream, loopback HTTP and the worker")
	}
	tests := []struct {
		name   string
		ledger string
	}{
		{"with the JetStream KV ledger", "jetstream"},
		{"with the Redis ledger", "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ledger == "redis" {
				addr := cmp.Or(os.Getenv("REDIS_ADDR"), "127.0.0.1:6379")
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					t.Fatalf("Redis at REDIS_ADDR %s is unreachable (%v): scripts/test starts one", addr, err)
				}
				c.Close()
			}
			const n = 300
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep, err := bench.Throughput(ctx, bench.ThroughputConfig{
				Commands: n, Rounds: 2, Concurrency: 16, LedgerStore: tt.ledger, Dir: t.TempDir(),
				RoundDeadline: 20 * time.Second,
			}, &out)
			if err != nil {
				t.Fatalf("Throughput: %v\n%s", err, out.String())
			}
			if len(rep.Rounds) != 2 {
				t.Fatalf("%d rounds, want 2", len(rep.Rounds))
			}
			for i, r := range rep.Rounds {
				for name, l := range map[string]bench.LoopResult{"bare": r.Bare, "worker": r.Worker} {
					if l.Applied != n || l.PerSec <= 0 || l.P50 <= 0 || l.P50 > l.P99 {
						t.Errorf("round %d %s: %+v, want %d applied, a rate and 0 < p50 ≤ p99", i+1, name, l, n)
					}
				}
				if want := r.Worker.PerSec / r.Bare.PerSec; r.Ratio != want || r.Ratio <= 0 {
					t.Errorf("round %d: ratio %v, want worker/bare = %v > 0", i+1, r.Ratio, want)
				}
				// Every command claims its key (which locks its request id)
				// and records its outcome: at least two store writes.
				if r.Ledger.OpsPerCommand < 2 || r.Ledger.TimePerCommand <= 0 {
					t.Errorf("round %d: ledger %+v, want ≥ 2 operations and some time per command", i+1, r.Ledger)
				}
				for _, op := range []string{"claim", "complete"} {
					if c := r.Ledger.ByOp[op]; c.PerCommand < 1 {
						t.Errorf("round %d: ledger op %s %.2f per command, want ≥ 1", i+1, op, c.PerCommand)
					}
				}
			}
			if rep.Ratio.Min > rep.Ratio.Median || rep.Ratio.Median > rep.Ratio.Max {
				t.Errorf("ratio range %+v is not ordered", rep.Ratio)
			}
			if !strings.Contains(out.String(), "ratio worker/bare") {
				t.Errorf("the output has no ratio line:\n%s", out.String())
			}
		})
	}
}

func TestPacingAppliesEachCommandOnceUnderTheRateLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: builds the worker and runs two processes")
	}
	dir := t.TempDir()
	bin := buildWorker(t, dir)
	svgDir := filepath.Join(dir, "svg")
	const rate = 50
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := bench.Pacing(ctx, bench.PacingConfig{
		Rates: []float64{rate}, Replicas: []int{2}, Runs: 1, Duration: 3 * time.Second,
		Worker: []string{bin, "run"}, Dir: dir, SVGDir: svgDir,
	}, &out)
	if err != nil {
		t.Fatalf("Pacing: %v\n%s", err, out.String())
	}
	if len(rep.Cells) != 1 || len(rep.Cells[0].Runs) != 1 {
		t.Fatalf("cells %+v, want one cell with one run", rep.Cells)
	}
	r := rep.Cells[0].Runs[0]
	if !r.ExactlyOnce() || !r.Drained {
		t.Errorf("run %+v: want every command applied exactly once", r)
	}
	applied, throttled := 0, 0
	for _, s := range r.Timeline {
		applied += s.Applied
		throttled += s.Throttled
	}
	if applied != r.Backlog {
		t.Errorf("timeline applied %d, want the whole backlog %d", applied, r.Backlog)
	}
	if throttled > r.Throttled || r.Throttled > r.WriteCalls {
		t.Errorf("timeline 429s %d, run 429s %d, write calls %d: want timeline ≤ run ≤ calls", throttled, r.Throttled, r.WriteCalls)
	}
	if r.WriteCalls != r.Backlog+r.Throttled {
		t.Errorf("write calls %d, want applied %d + throttled %d", r.WriteCalls, r.Backlog, r.Throttled)
	}
	// The stand-in's bucket bounds what can be applied in the window: R per
	// second plus the burst (5), with a second's slack. Loosely from below:
	// the first Retry-After costs a second of the three, and pacing at
	// about R the rest; a quarter of R is far from either.
	if limit := rate*(3+1) + 5; r.Applied < rate*3/4 || r.Applied > limit {
		t.Errorf("applied %d in the window, want %d to %d", r.Applied, rate*3/4, limit)
	}
	// Paced, a handful of the first burst's 429s; released at once after
	// each gate, most calls would be (0.92 of them in the figure).
	t.Logf("applied %d in the 3 s window; %d of %d write calls answered 429", r.Applied, r.Throttled, r.WriteCalls)
	if r.ThrottleShare > 0.15 {
		t.Errorf("%.1f %% of write calls answered 429 (%d of %d), want at most 15 %%", 100*r.ThrottleShare, r.Throttled, r.WriteCalls)
	}
	if len(rep.SVGs) != 1 {
		t.Fatalf("SVGs %v, want one", rep.SVGs)
	}
	data, err := os.ReadFile(rep.SVGs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := countElements(t, data, "polyline"); got != 2 {
		t.Errorf("%d polylines, want applied/s and 429/s", got)
	}
}

func buildWorker(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the worker")
	}
	bin := filepath.Join(dir, "worker")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/graphops/worker/cmd/worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// countElements parses data as XML and counts the elements named name.
func countElements(t *testing.T, data []byte, name string) int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n
			}
			t.Fatalf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == name {
			n++
		}
	}
}
