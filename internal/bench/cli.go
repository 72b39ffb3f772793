package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

const cliUsage = `Usage:
  worker bench throughput [flags]   the worker against a bare loop (pull → POST → ack), one process
  worker bench pacing [flags]       K worker processes against a rate-limited Graph stand-in
  worker bench plot -json FILE -svg-dir DIR
                                    draw the SVGs again from a pacing report saved with -json

Flags of each: worker bench throughput -h, worker bench pacing -h.
`

// Main runs `worker bench ARGS` and returns the exit status: 0 done, 1 the
// harness failed (a check included), 2 bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, cliUsage)
		return 2
	}
	var err error
	switch args[0] {
	case "throughput":
		err = throughputCLI(ctx, args[1:], stdout, stderr)
	case "pacing":
		err = pacingCLI(ctx, args[1:], stdout, stderr)
	case "plot":
		err = plotCLI(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, cliUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "worker bench: unknown mode %q\n%s", args[0], cliUsage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case isUsage(err):
		fmt.Fprintf(stderr, "worker bench %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "worker bench %s: %v\n", args[0], err)
		return 1
	}
}

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func isUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue) || errors.Is(err, ErrInvalidConfig)
}

func throughputCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker bench throughput", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c ThroughputConfig
	fs.IntVar(&c.Commands, "n", DefaultCommands, "commands per loop and round")
	fs.IntVar(&c.Rounds, "rounds", DefaultRounds, "rounds of bare loop + worker")
	fs.IntVar(&c.Concurrency, "concurrency", DefaultWorkerConcurrency, "WORKER_CONCURRENCY, and the bare loop's goroutines")
	fs.StringVar(&c.LedgerStore, "ledger", "jetstream", "LEDGER_STORE: jetstream or redis")
	fs.StringVar(&c.RedisAddr, "redis-addr", "127.0.0.1:6379", "REDIS_ADDR with -ledger redis")
	fs.IntVar(&c.RedisDB, "redis-db", 0, "REDIS_DB with -ledger redis")
	fs.DurationVar(&c.RoundDeadline, "deadline", DefaultThroughputDeadline, "longest drain of one loop")
	fs.StringVar(&c.NATSURL, "nats-url", "", "a NATS server with JetStream to use instead of an embedded one (only BENCH_* streams and bucket are touched there)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the last round's worker drain to this file")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	bareProfile := fs.String("bare-cpuprofile", "", "write a CPU profile of the last round's bare loop drain to this file")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	for _, p := range []struct {
		path string
		to   *io.Writer
	}{{*profile, &c.CPUProfile}, {*bareProfile, &c.BareCPUProfile}} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			return err
		}
		defer f.Close()
		*p.to = f
	}
	rep, err := Throughput(ctx, c, stdout)
	if err != nil {
		return err
	}
	return writeJSON(*jsonOut, rep)
}

func pacingCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker bench pacing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c PacingConfig
	rates := fs.String("rates", "20,100,500", "write rates R the stand-in allows, comma-separated")
	replicas := fs.String("replicas", "1,3", "numbers of worker processes, comma-separated")
	fs.IntVar(&c.Runs, "runs", DefaultPacingRuns, "runs of each (R, replicas)")
	fs.DurationVar(&c.Duration, "duration", DefaultPacingDuration, "measured window of a run, from the first applied write")
	fs.IntVar(&c.Concurrency, "concurrency", DefaultPacingConcurrency, "WORKER_CONCURRENCY of each replica (0: the worker's default)")
	fs.DurationVar(&c.Latency, "latency", 0, "the stand-in's latency per call")
	fs.DurationVar(&c.Jitter, "jitter", 0, "a uniform extra latency in [0, jitter) per call (300ms ± 50 %: -latency 150ms -jitter 300ms)")
	fs.IntVar(&c.Backlog, "backlog", 0, "publish exactly this many commands and measure the time to apply them all (instead of a window of -duration)")
	fs.IntVar(&c.Burst, "burst", 0, "the stand-in's bucket (0: R/10); identity and access writes: -rates 20 -burst 3000")
	fs.Float64Var(&c.OtherShare, "other-share", 0, "share of R another application spends from the same bucket")
	fs.BoolVar(&c.LimitWarning, "limit-warning", false, "the stand-in sends x-ms-throttle-limit-percentage past 80 % of its bucket")
	fs.StringVar(&c.SVGDir, "svg-dir", "", "write pacing-r<R>.svg here")
	fs.StringVar(&c.LogDir, "log-dir", "", "keep the replicas' logs in this directory")
	fs.StringVar(&c.LogLevel, "log-level", "", "LOG_LEVEL of the replicas (default warn)")
	fs.StringVar(&c.SVGName, "svg-name", "", "figure name prefix instead of \"pacing\"")
	jsonOut := fs.String("json", "", "also write the report (every run's timeline included) as JSON to this file")
	worker := fs.String("worker", "", "the worker binary (default: this executable); run as `<binary> run`")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	for _, s := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return usageError{fmt.Errorf("-rates: %q is not a number", s)}
		}
		c.Rates = append(c.Rates, v)
	}
	for _, s := range strings.Split(*replicas, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return usageError{fmt.Errorf("-replicas: %q is not a whole number", s)}
		}
		c.Replicas = append(c.Replicas, v)
	}
	if *worker != "" {
		c.Worker = []string{*worker, "run"}
	}
	rep, err := Pacing(ctx, c, stdout)
	if err != nil {
		return err
	}
	return writeJSON(*jsonOut, rep)
}

func plotCLI(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker bench plot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("json", "", "a pacing report written by worker bench pacing -json")
	dir := fs.String("svg-dir", ".", "write pacing-r<R>.svg here")
	if err := fs.Parse(args); err != nil {
		return parseErr(err)
	}
	if *from == "" || fs.NArg() > 0 {
		return usageError{errors.New("want -json FILE and no arguments")}
	}
	b, err := os.ReadFile(*from)
	if err != nil {
		return err
	}
	var rep PacingReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", *from, err)
	}
	files, err := WritePacingSVGs(rep, *dir)
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	return err
}

// writeJSON writes v, indented, to path; nothing when path is empty.
func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func parseErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err}
}
