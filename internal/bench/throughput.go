package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graphops/worker/internal/app"
	"github.com/graphops/worker/internal/config"
	jsconsumer "github.com/graphops/worker/internal/consumer/jetstream"
	"github.com/graphops/worker/internal/graphops"
	"github.com/graphops/worker/internal/graphpath"
	"github.com/graphops/worker/internal/graphsim"
	"github.com/graphops/worker/internal/natsembed"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of ThroughputConfig.
const (
	DefaultCommands           = 20000
	DefaultRounds             = 5
	DefaultWorkerConcurrency  = 64
	DefaultThroughputDeadline = 5 * time.Minute
)

// simToken is the simulator's bearer token (not a Graph token).
const simToken = "bench-token"

// The bare loop's stream and consumer, beside the worker's; and the
// subject the worker's resume commands are published to.
const (
	bareStream    = "BENCH_BARE"
	bareSubject   = "bench.bare.resume"
	bareDurable   = "bench-bare"
	resumeSubject = "graphops.commands.resume"
)

// ErrInvalidConfig wraps every configuration error of this package.
var ErrInvalidConfig = errors.New("bench: invalid config")

// ThroughputConfig configures Throughput. Zero fields take the defaults.
type ThroughputConfig struct {
	// Commands drained per loop and round (default 20000).
	Commands int
	// Rounds of bare loop + worker (default 5); the order alternates so
	// that a drift of the machine's load hits both alike.
	Rounds int
	// Concurrency is WORKER_CONCURRENCY and the bare loop's number of
	// goroutines (default 64).
	Concurrency int
	// LedgerStore is LEDGER_STORE: "jetstream" (default) or "redis".
	LedgerStore string
	// RedisAddr and RedisDB are REDIS_ADDR and REDIS_DB with
	// LEDGER_STORE=redis (default REDIS_ADDR or 127.0.0.1:6379, database
	// 0). Keys are unique per run and expire after two minutes
	// (LEDGER_RETENTION=2m).
	RedisAddr string
	RedisDB   int
	// NATSURL, when set, is a NATS server with JetStream to run against
	// instead of an embedded one in this process (a broker on its own, as
	// in production). The harness uses only its own BENCH_* streams and
	// bucket there (benchNames), which it deletes and recreates each loop.
	NATSURL string
	// Dir holds the embedded NATS server's files; default a temporary
	// directory, removed at the end.
	Dir string
	// RoundDeadline bounds one loop's drain (default 5m).
	RoundDeadline time.Duration
	// Env adds or overrides worker settings (environment variable names).
	Env map[string]string
	// Log receives the worker's JSON logs at LOG_LEVEL (default info, as
	// shipped); default io.Discard, so that formatting is measured and
	// writing is not.
	Log io.Writer `json:"-"`
	// CPUProfile and BareCPUProfile, when set, receive a CPU profile of
	// the last round's worker drain and bare loop drain.
	CPUProfile     io.Writer `json:"-"`
	BareCPUProfile io.Writer `json:"-"`
}

// Validate fills zero fields with their defaults and reports the first
// invalid field.
func (c *ThroughputConfig) Validate() error {
	c.Commands = cmp.Or(c.Commands, DefaultCommands)
	c.Rounds = cmp.Or(c.Rounds, DefaultRounds)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultWorkerConcurrency)
	c.LedgerStore = cmp.Or(c.LedgerStore, "jetstream")
	c.RedisAddr = cmp.Or(c.RedisAddr, os.Getenv("REDIS_ADDR"), "127.0.0.1:6379")
	c.RoundDeadline = cmp.Or(c.RoundDeadline, DefaultThroughputDeadline)
	if c.Log == nil {
		c.Log = io.Discard
	}
	switch {
	case c.Commands < 1:
		return fmt.Errorf("%w: Commands %d must be at least 1", ErrInvalidConfig, c.Commands)
	case c.Rounds < 1:
		return fmt.Errorf("%w: Rounds %d must be at least 1", ErrInvalidConfig, c.Rounds)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return fmt.Errorf("%w: Concurrency %d must be 1 to 4096", ErrInvalidConfig, c.Concurrency)
	case c.LedgerStore != "jetstream" && c.LedgerStore != "redis":
		return fmt.Errorf("%w: LedgerStore %q must be jetstream or redis", ErrInvalidConfig, c.LedgerStore)
	case c.RedisDB < 0:
		return fmt.Errorf("%w: RedisDB %d is negative", ErrInvalidConfig, c.RedisDB)
	case c.RoundDeadline < 0:
		return fmt.Errorf("%w: RoundDeadline %v is negative", ErrInvalidConfig, c.RoundDeadline)
	}
	return nil
}

// LoopResult is one drain of Commands by one loop.
type LoopResult struct {
	Applied int
	Elapsed time.Duration // first pull to last outcome
	PerSec  float64       // Applied / Elapsed
	// P50 and P99 of receipt to outcome: the worker's Settled.Duration;
	// for the bare loop, message in hand to ack sent.
	P50, P99 time.Duration
	// CPU is this process's CPU time (user + system) per command during
	// the drain: the loop, the broker and the simulator together, since
	// they share the process. With every core busy, cores / CPU bounds
	// the rate; it is less sensitive to other load than the rate is.
	CPU time.Duration
}

// ThroughputRound is one round: both loops on the same server and simulator.
type ThroughputRound struct {
	Bare, Worker LoopResult
	Ratio        float64 // Worker.PerSec / Bare.PerSec
	Ledger       LedgerCost
	LoadAvg      float64 // 1-minute load average at the end of the round
}

// LoopSummary is the medians and ranges of one loop over the rounds.
type LoopSummary struct {
	PerSec Range
	P50ms  Range
	P99ms  Range
	CPUms  Range // CPU per command, ms
}

// ThroughputReport is the result of Throughput.
type ThroughputReport struct {
	Config  ThroughputConfig // with defaults filled in
	Machine Machine
	Started time.Time
	Rounds  []ThroughputRound
	Bare    LoopSummary
	Worker  LoopSummary
	// Ratio of worker to bare applied/s, over the rounds.
	Ratio Range
	// Ledger is the ledger's cost, all rounds pooled; its per-command
	// figures over the rounds are in LedgerOps and LedgerMs.
	Ledger    LedgerCost
	LedgerOps Range // store operations per command
	LedgerMs  Range // summed store latency per command, ms
	LoadAvg   Range
}

// Throughput measures the worker against the bare loop (see the package
// doc), printing a line per round and the summary table to out.
func Throughput(ctx context.Context, cfg ThroughputConfig, out io.Writer) (ThroughputReport, error) {
	if err := cfg.Validate(); err != nil {
		return ThroughputReport{}, err
	}
	rep := ThroughputReport{Config: cfg, Machine: ThisMachine(), Started: time.Now()}
	natsURL := cfg.NATSURL
	if natsURL == "" {
		dir, removeDir, err := dirOrTemp(cfg.Dir, "graphops-bench-")
		if err != nil {
			return rep, err
		}
		defer removeDir()
		srv, err := natsembed.Start(natsembed.Options{Dir: dir})
		if err != nil {
			return rep, err
		}
		defer srv.Stop()
		natsURL = srv.URL()
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return rep, fmt.Errorf("bench: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(out, "throughput: %d commands per loop, %d rounds, concurrency %d, ledger %s; %s\n",
		cfg.Commands, cfg.Rounds, cfg.Concurrency, cfg.LedgerStore, rep.Machine)
	h := &throughputRun{cfg: cfg, js: js, env: throughputEnv(cfg, natsURL)}
	defer h.closeSim()
	for i := range cfg.Rounds {
		var r ThroughputRound
		profile, bareProfile := cfg.CPUProfile, cfg.BareCPUProfile
		if i != cfg.Rounds-1 {
			profile, bareProfile = nil, nil
		}
		// Alternate which loop goes first.
		steps := []func() error{
			func() (err error) { r.Bare, err = h.bare(ctx, bareProfile); return err },
			func() (err error) { r.Worker, r.Ledger, err = h.worker(ctx, profile); return err },
		}
		if i%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return rep, fmt.Errorf("round %d: %w", i+1, err)
			}
		}
		r.Ratio = r.Worker.PerSec / r.Bare.PerSec
		r.LoadAvg = LoadAvg()
		rep.Rounds = append(rep.Rounds, r)
		fmt.Fprintf(out, "  round %d: bare %.0f/s (CPU %.3f ms/cmd), worker %.0f/s (CPU %.3f ms/cmd), ratio %.2f, ledger %.2f ops %.2f ms per command, load %.2f\n",
			i+1, r.Bare.PerSec, ms(r.Bare.CPU), r.Worker.PerSec, ms(r.Worker.CPU), r.Ratio, r.Ledger.OpsPerCommand, ms(r.Ledger.TimePerCommand), r.LoadAvg)
	}
	rep.summarize()
	rep.WriteTable(out)
	return rep, nil
}

// benchNames are the worker's stream, consumer, dead-letter stream and
// ledger bucket in a throughput run, never the product's defaults: the
// harness deletes them every loop, and may run against a shared broker.
func benchNames() map[string]string {
	return map[string]string{
		"NATS_STREAM": "BENCH_GRAPHOPS", "NATS_SUBJECTS": "bench.graphops.commands.>", "NATS_CONSUMER": "bench-graphops-worker",
		"NATS_DLQ_STREAM": "BENCH_GRAPHOPS_DLQ", "NATS_DLQ_SUBJECT_PREFIX": "bench.graphops.dlq", "LEDGER_BUCKET": "BENCH_GRAPHOPS_LEDGER",
	}
}

// benchResumeSubject is where a throughput run publishes the worker's
// commands, inside benchNames' NATS_SUBJECTS.
const benchResumeSubject = "bench.graphops.commands.resume"

// throughputEnv is the worker's settings; freshSim adds GRAPH_BASE_URL.
func throughputEnv(cfg ThroughputConfig, natsURL string) map[string]string {
	env := benchNames()
	for k, v := range map[string]string{
		"NATS_URL": natsURL, "GRAPH_TOKEN": simToken,
		"ADMIN_ADDR": "127.0.0.1:0", "LOG_LEVEL": "info", "SHUTDOWN_GRACE": "10s",
		"WORKER_CONCURRENCY": strconv.Itoa(cfg.Concurrency),
		// Records live two minutes (the shortest retention a 1m retry
		// budget allows): a run's hundreds of thousands of keys must not
		// linger in a shared Redis, where they slow every SCAN.
		"LEDGER_STORE": cfg.LedgerStore, "LEDGER_RETENTION": "2m", "RETRY_MAX_ELAPSED": "1m",
		"REDIS_ADDR": cfg.RedisAddr, "REDIS_DB": strconv.Itoa(cfg.RedisDB),
	} {
		env[k] = v
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	return env
}

func (r *ThroughputReport) summarize() {
	col := func(f func(ThroughputRound) float64) Range {
		xs := make([]float64, len(r.Rounds))
		for i, x := range r.Rounds {
			xs[i] = f(x)
		}
		return rangeOf(xs)
	}
	loop := func(f func(ThroughputRound) LoopResult) LoopSummary {
		return LoopSummary{
			PerSec: col(func(x ThroughputRound) float64 { return f(x).PerSec }),
			P50ms:  col(func(x ThroughputRound) float64 { return ms(f(x).P50) }),
			P99ms:  col(func(x ThroughputRound) float64 { return ms(f(x).P99) }),
			CPUms:  col(func(x ThroughputRound) float64 { return ms(f(x).CPU) }),
		}
	}
	r.Bare = loop(func(x ThroughputRound) LoopResult { return x.Bare })
	r.Worker = loop(func(x ThroughputRound) LoopResult { return x.Worker })
	r.Ratio = col(func(x ThroughputRound) float64 { return x.Ratio })
	r.LedgerOps = col(func(x ThroughputRound) float64 { return x.Ledger.OpsPerCommand })
	r.LedgerMs = col(func(x ThroughputRound) float64 { return ms(x.Ledger.TimePerCommand) })
	r.LoadAvg = col(func(x ThroughputRound) float64 { return x.LoadAvg })
	var pooled ledgerSample
	for _, x := range r.Rounds {
		pooled.add(x.Ledger.sample)
	}
	r.Ledger = pooled.cost()
}

// WriteTable prints the summary as a Markdown table.
func (r ThroughputReport) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\n| loop | applied/s median (min–max) | p50 ms | p99 ms | CPU ms per command |\n|---|---|---|---|---|\n")
	for _, l := range []struct {
		name string
		s    LoopSummary
	}{{"bare loop", r.Bare}, {"worker", r.Worker}} {
		fmt.Fprintf(w, "| %s | %.0f (%.0f–%.0f) | %.1f | %.1f | %.3f |\n", l.name,
			l.s.PerSec.Median, l.s.PerSec.Min, l.s.PerSec.Max, l.s.P50ms.Median, l.s.P99ms.Median, l.s.CPUms.Median)
	}
	fmt.Fprintf(w, "\nratio worker/bare: median %.2f (min %.2f, max %.2f) over %d rounds; load average %.2f (%.2f–%.2f)\n",
		r.Ratio.Median, r.Ratio.Min, r.Ratio.Max, len(r.Rounds), r.LoadAvg.Median, r.LoadAvg.Min, r.LoadAvg.Max)
	fmt.Fprintf(w, "ledger (%s): %.2f store operations and %.3f ms of store latency per command (medians)\n",
		r.Config.LedgerStore, r.LedgerOps.Median, r.LedgerMs.Median)
	fmt.Fprintf(w, "\n| ledger op | per command | mean latency ms |\n|---|---|---|\n")
	for _, op := range r.Ledger.ops() {
		c := r.Ledger.ByOp[op]
		fmt.Fprintf(w, "| %s | %.2f | %.3f |\n", op, c.PerCommand, ms(c.Mean))
	}
}

// throughputRun is the shared state of one Throughput call.
type throughputRun struct {
	cfg ThroughputConfig
	js  jetstream.JetStream
	env map[string]string
	// sim is the current loop's Graph stand-in (freshSim), at simURL.
	sim    *graphsim.Sim
	simURL string
}

// freshSim replaces the Graph stand-in with a new, empty one for the next
// loop. The stand-in keeps every request it saw; carried over from loop to
// loop, that state grew the heap the process's GC scans, so that later
// loops, whichever they were, ran up to 1.7× slower than the first.
func (h *throughputRun) freshSim() error {
	h.closeSim()
	// MaxCalls 1: the call log is not needed and would grow with N.
	sim := graphsim.New(graphsim.Config{AutoCreate: true, Token: simToken, MaxCalls: 1})
	u, err := sim.Start()
	if err != nil {
		return fmt.Errorf("bench: graph stand-in: %w", err)
	}
	h.sim, h.simURL = sim, u
	h.env["GRAPH_BASE_URL"] = u
	return nil
}

func (h *throughputRun) closeSim() {
	if h.sim != nil {
		_ = h.sim.Close()
		h.sim = nil
	}
}

// bare drains Commands through the bare loop: pull, POST the command's body
// to the simulator, ack. It decodes only what the URL needs.
func (h *throughputRun) bare(ctx context.Context, profile io.Writer) (LoopResult, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RoundDeadline)
	defer cancel()
	if err := h.freshSim(); err != nil {
		return LoopResult{}, err
	}
	cs, err := newCommands(h.cfg.Commands)
	if err != nil {
		return LoopResult{}, err
	}
	if err := h.js.DeleteStream(ctx, bareStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return LoopResult{}, fmt.Errorf("bench: bare stream: %w", err)
	}
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{Name: bareStream, Subjects: []string{bareSubject},
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy}); err != nil {
		return LoopResult{}, fmt.Errorf("bench: bare stream: %w", err)
	}
	if err := publish(ctx, h.js, bareSubject, cs.messages); err != nil {
		return LoopResult{}, err
	}
	cons, err := h.js.CreateOrUpdateConsumer(ctx, bareStream, jetstream.ConsumerConfig{
		Durable: bareDurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		MaxAckPending: max(1000, 2*h.cfg.Concurrency), // as the worker's consumer
	})
	if err != nil {
		return LoopResult{}, fmt.Errorf("bench: bare consumer: %w", err)
	}
	before := h.sim.Stats()

	client := &http.Client{Transport: graphops.NewTransport(), Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()

	type delivery struct {
		m  jetstream.Msg
		at time.Time
	}
	var (
		mu        sync.Mutex
		durations = make([]time.Duration, 0, h.cfg.Commands)
		end       time.Time
		cpu1      time.Duration
		failures  atomic.Int64
		lastErr   atomic.Value // string: errors of different types cannot share an atomic.Value
		all       = make(chan struct{})
		work      = make(chan delivery)
		workers   sync.WaitGroup
	)
	stopProfile, err := startProfile(profile)
	if err != nil {
		return LoopResult{}, err
	}
	defer stopProfile()
	start, cpu0 := time.Now(), processCPU()
	it, err := cons.Messages(jetstream.PullMaxMessages(h.cfg.Concurrency))
	if err != nil {
		return LoopResult{}, fmt.Errorf("bench: bare pull: %w", err)
	}
	go func() {
		defer close(work)
		for {
			m, err := it.Next()
			if err != nil {
				return // stopped
			}
			select {
			case work <- delivery{m, time.Now()}:
			case <-ctx.Done():
				return
			}
		}
	}()
	handle := func(d delivery) error {
		var c struct {
			Data struct {
				ID   string          `json:"accessPackageAssignmentRequestId"`
				Body json.RawMessage `json:"body"`
			} `json:"data"`
		}
		if err := json.Unmarshal(d.m.Data(), &c); err != nil {
			return err
		}
		path, err := graphpath.Resume(c.Data.ID)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.simURL+path, bytes.NewReader(c.Data.Body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+simToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("resume answered %s", resp.Status)
		}
		return d.m.Ack()
	}
	for range h.cfg.Concurrency {
		workers.Go(func() {
			for d := range work {
				if err := handle(d); err != nil {
					failures.Add(1)
					lastErr.Store(err.Error())
					_ = d.m.Nak() // redelivered: the loop still drains every command
					continue
				}
				took := time.Since(d.at)
				mu.Lock()
				durations = append(durations, took)
				if len(durations) == h.cfg.Commands {
					end, cpu1 = time.Now(), processCPU()
					close(all)
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-all:
	case <-ctx.Done():
	}
	stopProfile()
	it.Stop()
	cancel()
	workers.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(durations) < h.cfg.Commands {
		return LoopResult{}, fmt.Errorf("bench: bare loop drained %d of %d commands within %s (failures %d, last %v)",
			len(durations), h.cfg.Commands, h.cfg.RoundDeadline, failures.Load(), lastErr.Load())
	}
	after := h.sim.Stats()
	if d := after.DoubleApplies - before.DoubleApplies; d != 0 {
		return LoopResult{}, fmt.Errorf("bench: bare loop: %d double applies", d)
	}
	return loopResult(durations, end.Sub(start), cpu1-cpu0), nil
}

// worker drains Commands through app.Run, with a fresh stream, dead-letter
// stream and ledger, and checks that each command was applied exactly once.
func (h *throughputRun) worker(ctx context.Context, profile io.Writer) (LoopResult, LedgerCost, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RoundDeadline)
	defer cancel()
	if err := h.freshSim(); err != nil {
		return LoopResult{}, LedgerCost{}, err
	}
	cs, err := newCommands(h.cfg.Commands)
	if err != nil {
		return LoopResult{}, LedgerCost{}, err
	}
	cfg, err := config.Load(nil, func(k string) string { return h.env[k] }, io.Discard)
	if err != nil {
		return LoopResult{}, LedgerCost{}, fmt.Errorf("bench: worker settings: %w", err)
	}
	if err := h.resetWorkerState(ctx, cfg); err != nil {
		return LoopResult{}, LedgerCost{}, err
	}
	if err := createCommandStream(ctx, h.js, cfg); err != nil {
		return LoopResult{}, LedgerCost{}, err
	}
	if err := publish(ctx, h.js, benchResumeSubject, cs.messages); err != nil {
		return LoopResult{}, LedgerCost{}, err
	}
	before := h.sim.Stats()

	level, _ := cfg.Level()
	log := slog.New(slog.NewJSONHandler(h.cfg.Log, &slog.HandlerOptions{Level: level}))
	var (
		mu        sync.Mutex
		durations = make([]time.Duration, 0, h.cfg.Commands)
		outcomes  = map[string]int{}
		end       time.Time
		all       = make(chan struct{})
		started   = make(chan string, 1)
		startedAt time.Time
		cpu0      time.Duration
		cpu1      time.Duration
		runErr    = make(chan error, 1)
	)
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	stopProfile, err := startProfile(profile)
	if err != nil {
		return LoopResult{}, LedgerCost{}, err
	}
	defer stopProfile()
	go func() {
		runErr <- app.Run(runCtx, cfg, log, app.Hooks{
			OnStarted: func(admin, _ string) {
				startedAt, cpu0 = time.Now(), processCPU()
				started <- admin
			},
			OnSettled: func(s worker.Settled) {
				mu.Lock()
				defer mu.Unlock()
				durations = append(durations, s.Duration)
				outcomes[s.Outcome]++
				if len(durations) == h.cfg.Commands {
					end, cpu1 = time.Now(), processCPU()
					close(all)
				}
			},
		})
	}()
	var admin string
	select {
	case admin = <-started:
	case err := <-runErr:
		return LoopResult{}, LedgerCost{}, fmt.Errorf("bench: worker did not start: %v", err)
	case <-ctx.Done():
		stopRun()
		<-runErr
		return LoopResult{}, LedgerCost{}, fmt.Errorf("bench: worker did not start: %w", ctx.Err())
	}
	select {
	case <-all:
	case err := <-runErr:
		return LoopResult{}, LedgerCost{}, fmt.Errorf("bench: worker stopped early: %v", err)
	case <-ctx.Done():
	}
	stopProfile()
	ledger, lerr := scrapeLedger(ctx, admin)
	stopRun()
	if err := <-runErr; err != nil {
		return LoopResult{}, LedgerCost{}, fmt.Errorf("bench: worker: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(durations) < h.cfg.Commands {
		return LoopResult{}, LedgerCost{}, fmt.Errorf("bench: worker settled %d of %d commands within %s: %v",
			len(durations), h.cfg.Commands, h.cfg.RoundDeadline, outcomes)
	}
	if lerr != nil {
		return LoopResult{}, LedgerCost{}, lerr
	}
	if err := h.exactlyOnce(before, cs, outcomes); err != nil {
		return LoopResult{}, LedgerCost{}, err
	}
	ledger.sample.commands = h.cfg.Commands
	return loopResult(durations, end.Sub(startedAt), cpu1-cpu0), ledger.sample.cost(), nil
}

// exactlyOnce checks that every command of cs was applied once, by the
// worker's outcomes and by the simulator's.
func (h *throughputRun) exactlyOnce(before graphsim.Stats, cs commandSet, outcomes map[string]int) error {
	after := h.sim.Stats()
	n := len(cs.requestIDs)
	if outcomes[metrics.OutcomeApplied] != n {
		return fmt.Errorf("bench: worker outcomes %v, want %d applied", outcomes, n)
	}
	if got := after.Applied[graphsim.OpResume] - before.Applied[graphsim.OpResume]; got != n {
		return fmt.Errorf("bench: the simulator applied %d resumes, want %d", got, n)
	}
	if d := after.DoubleApplies - before.DoubleApplies; d != 0 {
		return fmt.Errorf("bench: %d double applies", d)
	}
	for _, id := range cs.requestIDs {
		if c := h.sim.AppliedCount(id); c != 1 {
			return fmt.Errorf("bench: request %s applied %d times", id, c)
		}
	}
	return nil
}

// resetWorkerState deletes the worker's stream, dead-letter stream and
// ledger bucket, so that every round starts from nothing.
func (h *throughputRun) resetWorkerState(ctx context.Context, cfg *config.Config) error {
	for _, s := range []string{cfg.Stream, cfg.DLQStream} {
		if err := h.js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("bench: delete stream %s: %w", s, err)
		}
	}
	if err := h.js.DeleteKeyValue(ctx, cfg.LedgerBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) &&
		!errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("bench: delete bucket %s: %w", cfg.LedgerBucket, err)
	}
	return nil
}

// createCommandStream creates the worker's stream and durable consumer with
// the settings the worker itself would give them, so that commands can be
// published before the worker starts.
func createCommandStream(ctx context.Context, js jetstream.JetStream, cfg *config.Config) error {
	_, err := jsconsumer.New(ctx, js, jsconsumer.Config{
		Stream: cfg.Stream, Subjects: cfg.SubjectList(), Durable: cfg.Durable, AckWait: cfg.AckWait,
		MaxDeliver: cfg.MaxDeliver, Concurrency: cfg.Concurrency, StreamMaxAge: cfg.StreamMaxAge, Replicas: cfg.JSReplicas,
	}, nil)
	if err != nil {
		return fmt.Errorf("bench: command stream: %w", err)
	}
	return nil
}

// dirOrTemp is dir, or when it is empty a new temporary directory named
// from prefix; remove deletes the temporary one (and nothing else).
func dirOrTemp(dir, prefix string) (_ string, remove func(), err error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// startProfile starts a CPU profile into w (none when w is nil) and
// returns its idempotent stop.
func startProfile(w io.Writer) (stop func(), err error) {
	if w == nil {
		return func() {}, nil
	}
	if err := pprof.StartCPUProfile(w); err != nil {
		return nil, fmt.Errorf("bench: cpu profile: %w", err)
	}
	var once sync.Once
	return func() { once.Do(pprof.StopCPUProfile) }, nil
}

func loopResult(durations []time.Duration, elapsed, cpu time.Duration) LoopResult {
	n := len(durations)
	return LoopResult{
		Applied: n, Elapsed: elapsed,
		PerSec: float64(n) / elapsed.Seconds(),
		P50:    percentile(durations, 50), P99: percentile(durations, 99),
		CPU: cpu / time.Duration(max(n, 1)),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
