package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/graphops/worker/internal/consumer"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/graphsim"
	"github.com/graphops/worker/internal/natsembed"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of PacingConfig.
const (
	DefaultPacingRuns     = 3
	DefaultPacingDuration = 60 * time.Second
	// DefaultPacingConcurrency leaves WORKER_CONCURRENCY at the worker's
	// default.
	DefaultPacingConcurrency = 0
)

// Goals of the pacing issue: applied/s of at least GoalRate × R with at
// most GoalThrottleShare of write calls answered 429.
const (
	GoalRate          = 0.95
	GoalThrottleShare = 0.02
)

// replicaGrace is SHUTDOWN_GRACE of the replicas; the harness waits a few
// seconds more before it kills one.
const replicaGrace = 10 * time.Second

// PacingConfig configures Pacing. Zero fields take the defaults.
type PacingConfig struct {
	// Rates are the write rates R the stand-in allows (graphsim WriteRate,
	// PenalizeThrottled, default burst); default 20, 100, 500.
	Rates []float64
	// Replicas are the numbers K of worker processes; default 1, 3.
	Replicas []int
	// Runs of each (R, K) (default 3); the sweep is interleaved, run by run.
	Runs int
	// Duration is the measured window, from the first applied write
	// (default 60s). The backlog is 1.1 × R × Duration plus a burst, so the
	// replicas stay busy through it; the rest is drained afterwards to
	// check that nothing was lost.
	Duration time.Duration
	// Concurrency is WORKER_CONCURRENCY of each replica; 0 (the default)
	// leaves the worker's default.
	Concurrency int
	// Latency of the stand-in per call (default 0).
	Latency time.Duration
	// Jitter adds a uniform extra latency in [0, Jitter) to each call:
	// 300ms ± 50 % is Latency 150ms, Jitter 300ms.
	Jitter time.Duration
	// Backlog, when set, publishes exactly this many commands per run
	// instead of 1.1 × R × Duration plus a burst, and measures the time from
	// the first applied write to the last (Completion) against the target of
	// issue 15: N/R' + one Retry-After (1s) + 5 %, R' being the rate left
	// to this fleet (R × (1 - OtherShare)). The window is then the
	// completion time; Duration is not used.
	Backlog int
	// Burst is the stand-in's bucket; 0 for its default, max(1, R/10). The
	// identity-and-access write limit (3,000 per 150s per app and tenant)
	// is R 20 with Burst 3000.
	Burst int
	// OtherShare is the share of R another application of the tenant
	// spends from the same bucket (graphsim OtherShare).
	OtherShare float64
	// LimitWarning makes the stand-in send Graph's early warning
	// (x-ms-throttle-limit-percentage past 80 % of its bucket).
	LimitWarning bool
	// Worker is the command line of one replica; default this executable
	// with "run" (the harness runs as `worker bench`).
	Worker []string
	// Env adds or overrides replica settings (environment variable names);
	// replicas inherit this process's environment below them.
	Env map[string]string
	// Dir holds the runs' files (NATS data, replica logs); default a
	// temporary directory, removed at the end.
	Dir string
	// SVGDir, when set, receives pacing-r<R>.svg: per R, the median run's
	// applied/s and 429/s over time for each K.
	SVGDir string
	// LogDir, when set, keeps the replicas' logs there
	// (r<R>-k<K>-<run>-replica-<i>.log) at LogLevel (default warn).
	LogDir, LogLevel string
	// SVGName replaces "pacing" in the figures' names, so that scenarios
	// at the same R do not overwrite each other's.
	SVGName string
	// DrainDeadline bounds the drain after the window; by default twice
	// the time the rest of the backlog takes at R, plus 30s.
	DrainDeadline time.Duration
}

// Validate fills zero fields with their defaults and reports the first
// invalid field.
func (c *PacingConfig) Validate() error {
	if len(c.Rates) == 0 {
		c.Rates = []float64{20, 100, 500}
	}
	if len(c.Replicas) == 0 {
		c.Replicas = []int{1, 3}
	}
	c.Runs = cmp.Or(c.Runs, DefaultPacingRuns)
	c.Duration = cmp.Or(c.Duration, DefaultPacingDuration)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultPacingConcurrency)
	if len(c.Worker) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("%w: Worker: %v", ErrInvalidConfig, err)
		}
		c.Worker = []string{exe, "run"}
	}
	for _, r := range c.Rates {
		if !(r > 0) || math.IsInf(r, 0) {
			return fmt.Errorf("%w: Rates: %v is not a positive rate", ErrInvalidConfig, r)
		}
	}
	for _, k := range c.Replicas {
		if k < 1 || k > 32 {
			return fmt.Errorf("%w: Replicas: %d must be 1 to 32", ErrInvalidConfig, k)
		}
	}
	switch {
	case c.Runs < 1:
		return fmt.Errorf("%w: Runs %d must be at least 1", ErrInvalidConfig, c.Runs)
	case c.Duration < time.Second:
		return fmt.Errorf("%w: Duration %v must be at least 1s", ErrInvalidConfig, c.Duration)
	case c.Concurrency < 0 || c.Concurrency > 4096:
		return fmt.Errorf("%w: Concurrency %d must be 1 to 4096 (0: the worker's default)", ErrInvalidConfig, c.Concurrency)
	case c.Latency < 0:
		return fmt.Errorf("%w: Latency %v is negative", ErrInvalidConfig, c.Latency)
	case c.Jitter < 0:
		return fmt.Errorf("%w: Jitter %v is negative", ErrInvalidConfig, c.Jitter)
	case c.Backlog < 0:
		return fmt.Errorf("%w: Backlog %d is negative", ErrInvalidConfig, c.Backlog)
	case c.Burst < 0:
		return fmt.Errorf("%w: Burst %d is negative", ErrInvalidConfig, c.Burst)
	case !(c.OtherShare >= 0 && c.OtherShare < 1):
		return fmt.Errorf("%w: OtherShare %v must be in [0, 1)", ErrInvalidConfig, c.OtherShare)
	case c.DrainDeadline < 0:
		return fmt.Errorf("%w: DrainDeadline %v is negative", ErrInvalidConfig, c.DrainDeadline)
	}
	return nil
}

// Second is one second of a run's timeline, as the stand-in saw it.
type Second struct {
	Applied   int // effective writes
	Throttled int // write calls answered 429
}

// PacingRun is one run of K replicas against rate R.
type PacingRun struct {
	Rate     float64
	Replicas int
	Backlog  int // commands published
	// Applied in the window: Duration seconds from the first second with
	// an applied write; PerSec = Applied / Duration.
	Applied int
	PerSec  float64
	// SteadyPerSec is applied/s from the second after the first throttle
	// to the end of the window (PerSec when nothing was throttled);
	// SteadyFrom is where that starts, from the window's start.
	SteadyPerSec float64
	SteadyFrom   time.Duration
	// LatePerSec is applied/s over the window's second half: the rate
	// once the start-up (slow start, first throttle, ramp) is over.
	LatePerSec float64
	// Write calls and 429s of the whole run, drain included;
	// ThrottleShare = Throttled / WriteCalls.
	WriteCalls, Throttled int
	ThrottleShare         float64
	// Timeline from the window's start to the end of the drain.
	Timeline []Second
	// Exactly-once: commands never applied and not waiting in the stream
	// (Lost), applied more than once (Twice), refused by the stand-in as
	// already resumed (DoubleApplies), dead-lettered (DeadLettered).
	// Drained: every command was applied by the end.
	Lost, Twice, DoubleApplies, DeadLettered int
	Drained                                  bool
	LoadAvg                                  float64
	// With a Backlog: the time from the first applied write to the last,
	// and the target of issue 15 (N/R' + 1s + 5 %).
	Completion, Target time.Duration
	// PeakRSS is the largest peak resident memory of a replica (VmHWM),
	// bytes; 0 where /proc is not there.
	PeakRSS int64

	applied int // writes applied when the backlog's wait ended
}

// MetTarget reports that a backlog run applied everything within Target.
func (r PacingRun) MetTarget() bool { return r.Target > 0 && r.Drained && r.Completion <= r.Target }

// ExactlyOnce reports that nothing was lost, applied twice or
// dead-lettered.
func (r PacingRun) ExactlyOnce() bool {
	return r.Lost == 0 && r.Twice == 0 && r.DoubleApplies == 0 && r.DeadLettered == 0
}

// PacingCell is every run of one (R, K).
type PacingCell struct {
	Rate     float64
	Replicas int
	Runs     []PacingRun
	// Medians and ranges over the runs.
	PerSec, SteadyPerSec, LatePerSec, ThrottleShare, LoadAvg Range
	// With a Backlog: completion seconds and peak resident MiB.
	Completion, PeakRSSMiB Range
}

// Met reports the pacing goal: median applied/s ≥ 0.95 R, median 429
// share ≤ 2 %, exactly-once in every run.
func (c PacingCell) Met() bool {
	return c.exactlyOnce() == len(c.Runs) && c.PerSec.Median >= GoalRate*c.Rate && c.ThrottleShare.Median <= GoalThrottleShare
}

// exactlyOnce counts the runs where nothing was lost, applied twice or
// dead-lettered.
func (c PacingCell) exactlyOnce() int {
	n := 0
	for _, r := range c.Runs {
		if r.ExactlyOnce() {
			n++
		}
	}
	return n
}

// drained counts the runs whose whole backlog was applied by the end.
func (c PacingCell) drained() int {
	n := 0
	for _, r := range c.Runs {
		if r.Drained {
			n++
		}
	}
	return n
}

// median returns the run with the median PerSec (the lower one of an even
// count), the run a figure shows.
func (c PacingCell) median() PacingRun {
	runs := slices.Clone(c.Runs)
	slices.SortFunc(runs, func(a, b PacingRun) int { return cmp.Compare(a.PerSec, b.PerSec) })
	return runs[(len(runs)-1)/2]
}

// worst returns the run with the lowest PerSec.
func (c PacingCell) worst() PacingRun {
	return slices.MinFunc(c.Runs, func(a, b PacingRun) int { return cmp.Compare(a.PerSec, b.PerSec) })
}

// PacingReport is the result of Pacing.
type PacingReport struct {
	Config  PacingConfig // with defaults filled in
	Machine Machine
	Started time.Time
	Cells   []PacingCell // by rate, then replicas, in the configured order
	SVGs    []string     // files written
}

// Pacing runs the pacing sweep (see the package doc and PacingConfig),
// printing a line per run and the summary table to out.
func Pacing(ctx context.Context, cfg PacingConfig, out io.Writer) (PacingReport, error) {
	if err := cfg.Validate(); err != nil {
		return PacingReport{}, err
	}
	rep := PacingReport{Config: cfg, Machine: ThisMachine(), Started: time.Now()}
	dir, removeDir, err := dirOrTemp(cfg.Dir, "graphops-pacing-")
	if err != nil {
		return rep, err
	}
	defer removeDir()
	fmt.Fprintf(out, "pacing: R %v, replicas %v, %d runs of %s (backlog %d), concurrency %d (0: default), latency %s + [0, %s), burst %d (0: R/10), other app %.2f, early warning %v; %s\n",
		cfg.Rates, cfg.Replicas, cfg.Runs, cfg.Duration, cfg.Backlog, cfg.Concurrency, cfg.Latency, cfg.Jitter, cfg.Burst, cfg.OtherShare, cfg.LimitWarning, rep.Machine)
	for _, r := range cfg.Rates {
		for _, k := range cfg.Replicas {
			rep.Cells = append(rep.Cells, PacingCell{Rate: r, Replicas: k})
		}
	}
	for run := range cfg.Runs {
		for i := range rep.Cells {
			c := &rep.Cells[i]
			pr, err := pacingRun(ctx, cfg, dir, c.Rate, c.Replicas)
			if err != nil {
				return rep, fmt.Errorf("R=%g K=%d run %d: %w", c.Rate, c.Replicas, run+1, err)
			}
			c.Runs = append(c.Runs, pr)
			fmt.Fprintf(out, "  R=%g K=%d run %d: %.1f applied/s (%.2f R), %.1f/s from %s, %.1f/s in the 2nd half, 429 %d of %d calls (%.2f %%), lost %d, twice %d, load %.2f, peak RSS %.1f MiB",
				c.Rate, c.Replicas, run+1, pr.PerSec, pr.PerSec/c.Rate, pr.SteadyPerSec, pr.SteadyFrom, pr.LatePerSec,
				pr.Throttled, pr.WriteCalls, 100*pr.ThrottleShare, pr.Lost, pr.Twice, pr.LoadAvg, float64(pr.PeakRSS)/(1<<20))
			if pr.Target > 0 {
				fmt.Fprintf(out, ", %d applied in %.2fs (target %.2fs)", pr.Backlog, pr.Completion.Seconds(), pr.Target.Seconds())
				if !pr.Drained {
					fmt.Fprintf(out, " NOT DRAINED by the deadline: only %d applied", pr.applied)
				}
			}
			fmt.Fprintln(out)
		}
	}
	for i := range rep.Cells {
		rep.Cells[i].summarize()
	}
	if cfg.SVGDir != "" {
		files, err := WritePacingSVGs(rep, cfg.SVGDir)
		rep.SVGs = files
		if err != nil {
			return rep, err
		}
	}
	rep.WriteTable(out)
	return rep, nil
}

func (c *PacingCell) summarize() {
	col := func(f func(PacingRun) float64) Range {
		xs := make([]float64, len(c.Runs))
		for i, r := range c.Runs {
			xs[i] = f(r)
		}
		return rangeOf(xs)
	}
	c.PerSec = col(func(r PacingRun) float64 { return r.PerSec })
	c.SteadyPerSec = col(func(r PacingRun) float64 { return r.SteadyPerSec })
	c.LatePerSec = col(func(r PacingRun) float64 { return r.LatePerSec })
	c.ThrottleShare = col(func(r PacingRun) float64 { return r.ThrottleShare })
	c.LoadAvg = col(func(r PacingRun) float64 { return r.LoadAvg })
	c.Completion = col(func(r PacingRun) float64 { return r.Completion.Seconds() })
	c.PeakRSSMiB = col(func(r PacingRun) float64 { return float64(r.PeakRSS) / (1 << 20) })
}

// targetMet counts the backlog runs that met their target.
func (c PacingCell) targetMet() int {
	n := 0
	for _, r := range c.Runs {
		if r.MetTarget() {
			n++
		}
	}
	return n
}

// WriteTable prints the summary as a Markdown table.
func (r PacingReport) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\n| R/s | replicas | runs | applied/s median (min–max) | / R | after 1st 429 | 2nd half | 429 share median (max) | exactly once | drained | goal met | load avg |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.Cells {
		goal := "no"
		if c.Met() {
			goal = "yes"
		}
		fmt.Fprintf(w, "| %g | %d | %d | %.1f (%.1f–%.1f) | %.3f | %.1f | %.1f | %.2f %% (%.2f %%) | %d/%d | %d/%d | %s | %.1f |\n",
			c.Rate, c.Replicas, len(c.Runs), c.PerSec.Median, c.PerSec.Min, c.PerSec.Max, c.PerSec.Median/c.Rate,
			c.SteadyPerSec.Median, c.LatePerSec.Median, 100*c.ThrottleShare.Median, 100*c.ThrottleShare.Max, c.exactlyOnce(), len(c.Runs), c.drained(), len(c.Runs), goal, c.LoadAvg.Median)
	}
	if r.Config.Backlog > 0 {
		fmt.Fprintf(w, "\n| R/s | replicas | backlog | target s | completion s median (min–max) | within target | peak RSS MiB median (max) |\n")
		fmt.Fprintf(w, "|---|---|---|---|---|---|---|\n")
		for _, c := range r.Cells {
			fmt.Fprintf(w, "| %g | %d | %d | %.2f | %.2f (%.2f–%.2f) | %d/%d | %.1f (%.1f) |\n",
				c.Rate, c.Replicas, r.Config.Backlog, c.Runs[0].Target.Seconds(), c.Completion.Median, c.Completion.Min, c.Completion.Max,
				c.targetMet(), len(c.Runs), c.PeakRSSMiB.Median, c.PeakRSSMiB.Max)
		}
	}
	for _, f := range r.SVGs {
		fmt.Fprintf(w, "wrote %s\n", f)
	}
}

// pacingRun runs K replicas against a fresh broker and stand-in.
func pacingRun(ctx context.Context, cfg PacingConfig, parent string, rate float64, k int) (PacingRun, error) {
	pr := PacingRun{Rate: rate, Replicas: k}
	dir, err := os.MkdirTemp(parent, "run-")
	if err != nil {
		return pr, err
	}
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Options{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		return pr, err
	}
	defer srv.Stop()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		return pr, fmt.Errorf("bench: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return pr, fmt.Errorf("bench: %w", err)
	}
	sim := graphsim.New(graphsim.Config{AutoCreate: true, Token: simToken, WriteRate: rate, PenalizeThrottled: true,
		Latency: cfg.Latency, Jitter: cfg.Jitter, Burst: cfg.Burst, OtherShare: cfg.OtherShare, LimitWarning: cfg.LimitWarning,
		MaxCalls: 1})
	simURL, err := sim.Start()
	if err != nil {
		return pr, err
	}
	defer sim.Close()

	env := map[string]string{
		"WORKER_SOURCE": "nats", "NATS_URL": srv.URL(), "GRAPH_BASE_URL": simURL, "GRAPH_TOKEN": simToken,
		"ADMIN_ADDR": "127.0.0.1:0", "LOG_LEVEL": cmp.Or(cfg.LogLevel, "warn"), "SHUTDOWN_GRACE": replicaGrace.String(),
		"LEDGER_STORE": "jetstream",
	}
	if cfg.Concurrency > 0 {
		env["WORKER_CONCURRENCY"] = strconv.Itoa(cfg.Concurrency)
	}
	for key, v := range cfg.Env {
		env[key] = v
	}
	wcfg, err := config.Load(nil, func(key string) string { return env[key] }, io.Discard)
	if err != nil {
		return pr, fmt.Errorf("bench: replica settings: %w", err)
	}
	if err := createCommandStream(ctx, js, wcfg); err != nil {
		return pr, err
	}
	burst := max(1, int(math.Ceil(rate/10))) // graphsim's default burst
	pr.Backlog = int(math.Ceil(1.1*rate*cfg.Duration.Seconds())) + burst
	if cfg.Backlog > 0 {
		pr.Backlog = cfg.Backlog
		left := rate * (1 - cfg.OtherShare)
		floor := float64(pr.Backlog) / left
		pr.Target = time.Duration((floor*1.05 + 1) * float64(time.Second))
	}
	cs, err := newCommands(pr.Backlog)
	if err != nil {
		return pr, err
	}
	if err := publish(ctx, js, resumeSubject, cs.messages); err != nil {
		return pr, err
	}

	reps := make([]*replica, 0, k)
	defer func() {
		for _, r := range reps {
			r.stop()
		}
	}()
	for i := range k {
		logPath := filepath.Join(dir, fmt.Sprintf("replica-%d.log", i+1))
		if cfg.LogDir != "" {
			logPath = filepath.Join(cfg.LogDir, fmt.Sprintf("r%g-k%d-%d-replica-%d.log", rate, k, time.Now().UnixNano(), i+1))
		}
		r, err := startReplica(cfg.Worker, env, logPath)
		if err != nil {
			return pr, err
		}
		reps = append(reps, r)
	}

	// The window starts with the first applied write; the replicas need
	// a moment to start.
	applied := func() int { return sim.Stats().Applied[graphsim.OpResume] }
	if !pollUntil(ctx, 30*time.Second, func() bool { return applied() > 0 }, reps) {
		return pr, fmt.Errorf("bench: no write applied within 30s of starting the replicas%s", tails(reps))
	}
	window := cfg.Duration
	if cfg.Backlog > 0 {
		// The window is the whole backlog: wait for its last write.
		deadline := 2*pr.Target + 30*time.Second
		pr.Drained = pollUntil(ctx, deadline, func() bool { return applied() >= pr.Backlog }, reps)
		first, last := sim.AppliedSpan()
		pr.Completion = last - first // a lower bound when not drained
		pr.applied = applied()
		window = max(time.Second, pr.Completion.Round(time.Second))
	} else {
		if !consumer.Sleep(ctx, cfg.Duration) {
			return pr, ctx.Err()
		}
		drain := cfg.DrainDeadline
		if drain == 0 {
			rest := float64(pr.Backlog - applied())
			drain = 30*time.Second + time.Duration(2*rest/rate*float64(time.Second))
		}
		pr.Drained = pollUntil(ctx, drain, func() bool { return applied() >= pr.Backlog }, reps)
	}
	for _, r := range reps {
		pr.PeakRSS = max(pr.PeakRSS, r.peakRSS())
	}
	for _, r := range reps {
		if err := r.stop(); err != nil {
			return pr, fmt.Errorf("bench: %w%s", err, tails(reps))
		}
	}
	if ctx.Err() != nil {
		return pr, ctx.Err()
	}
	pr.LoadAvg = LoadAvg()
	pr.measure(sim.TimelineFromFirstApplied(time.Second), window)
	if cfg.Backlog > 0 && pr.Completion > 0 {
		// Applied/s over the whole backlog, not over whole seconds.
		pr.PerSec = float64(pr.applied-1) / pr.Completion.Seconds()
	}
	st := sim.Stats()
	pr.WriteCalls = st.Calls[graphsim.OpResume]
	pr.Throttled = st.Throttled
	if pr.WriteCalls > 0 {
		pr.ThrottleShare = float64(pr.Throttled) / float64(pr.WriteCalls)
	}
	pr.DoubleApplies = st.DoubleApplies
	return pr, pr.checkExactlyOnce(ctx, js, wcfg, sim, cs)
}

// measure fills the window's figures from the stand-in's timeline.
func (pr *PacingRun) measure(tl []graphsim.Bucket, window time.Duration) {
	first := slices.IndexFunc(tl, func(b graphsim.Bucket) bool { return b.Applied > 0 })
	if first < 0 {
		return
	}
	for _, b := range tl[first:] {
		pr.Timeline = append(pr.Timeline, Second{Applied: b.Applied, Throttled: b.Throttled})
	}
	n := int(window / time.Second)
	// The first throttle may come before the first applied write (a
	// cold start into an empty bucket): then the steady state is the window.
	throttle := slices.IndexFunc(pr.Timeline[:min(n, len(pr.Timeline))], func(s Second) bool { return s.Throttled > 0 })
	applied, steady, late := 0, 0, 0
	for i := range min(n, len(pr.Timeline)) {
		applied += pr.Timeline[i].Applied
		if throttle >= 0 && i > throttle {
			steady += pr.Timeline[i].Applied
		}
		if i >= n/2 {
			late += pr.Timeline[i].Applied
		}
	}
	pr.Applied = applied
	pr.PerSec = float64(applied) / float64(n)
	pr.LatePerSec = float64(late) / float64(n-n/2)
	pr.SteadyPerSec = pr.PerSec
	if throttle >= 0 && throttle+1 < n {
		pr.SteadyFrom = time.Duration(throttle+1) * time.Second
		pr.SteadyPerSec = float64(steady) / float64(n-throttle-1)
	}
}

// checkExactlyOnce counts what was lost, applied twice or dead-lettered,
// after the replicas stopped.
func (pr *PacingRun) checkExactlyOnce(ctx context.Context, js jetstream.JetStream, cfg *config.Config, sim *graphsim.Sim, cs commandSet) error {
	notApplied := 0
	for _, id := range cs.requestIDs {
		switch c := sim.AppliedCount(id); {
		case c == 0:
			notApplied++
		case c > 1:
			pr.Twice++
		}
	}
	pr.Drained = notApplied == 0
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Durable)
	if err != nil {
		return fmt.Errorf("bench: consumer: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("bench: consumer: %w", err)
	}
	waiting := int(info.NumPending) + info.NumAckPending
	if s, err := js.Stream(ctx, cfg.DLQStream); err == nil {
		pr.DeadLettered = int(s.CachedInfo().State.Msgs)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("bench: dead-letter stream: %w", err)
	}
	pr.Lost = max(0, notApplied-waiting-pr.DeadLettered)
	return nil
}

// replica is one worker process.
type replica struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // of Wait, once done is closed
	stopped bool
}

func startReplica(argv []string, env map[string]string, logPath string) (*replica, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v) // the last of duplicate keys wins
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: start replica %s: %w", argv[0], err)
	}
	r := &replica{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		f.Close()
		close(r.done)
	}()
	return r, nil
}

// exited reports whether the process ended on its own.
func (r *replica) exited() bool {
	select {
	case <-r.done:
		return !r.stopped
	default:
		return false
	}
}

// stop sends SIGTERM (the worker drains) and waits; after the grace and a
// margin it kills. A replica that ended badly is an error.
func (r *replica) stop() error {
	if r.stopped {
		return nil
	}
	select {
	case <-r.done:
		r.stopped = true
		return fmt.Errorf("replica %d exited early: %v", r.cmd.Process.Pid, r.err)
	default:
	}
	r.stopped = true
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(replicaGrace + 5*time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		return fmt.Errorf("replica %d did not stop within %s of SIGTERM", r.cmd.Process.Pid, replicaGrace+5*time.Second)
	}
	if r.err != nil {
		return fmt.Errorf("replica %d: %w", r.cmd.Process.Pid, r.err)
	}
	return nil
}

// peakRSS is the process's peak resident memory (VmHWM in
// /proc/<pid>/status), bytes; 0 when it cannot be read (not Linux, ended).
func (r *replica) peakRSS() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// tails returns the end of each replica's log, for an error message.
func tails(reps []*replica) string {
	var b strings.Builder
	for i, r := range reps {
		data, err := os.ReadFile(r.logPath)
		if err != nil {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "\n--- replica %d log (end) ---\n%s", i+1, data)
	}
	return b.String()
}

// pollUntil checks cond every 100ms until it holds (true), within d, ctx
// ends or a replica exits on its own (false).
func pollUntil(ctx context.Context, d time.Duration, cond func() bool, reps []*replica) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		for _, r := range reps {
			if r.exited() {
				return false
			}
		}
		if time.Now().After(deadline) || !consumer.Sleep(ctx, 100*time.Millisecond) {
			return false
		}
	}
}
