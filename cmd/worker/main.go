// Command worker is graphops worker: it pulls commands from NATS JetStream
// and makes the matching Microsoft Graph calls, exactly once each. See
// README.md and `worker --help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/graphops/worker/internal/app"
	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/history"
)

const usage = `graphops worker: Microsoft Graph calls from a queue, exactly once.

Usage:
  worker [run] [flags]            consume commands (the default)
  worker dev [--serve]            the whole flow on one machine: embedded NATS, the Graph
                                  simulator, example commands and a summary
  worker submit FILE|-            publish commands (one JSON per line) to NATS_URL
  worker dlq list [--json]        list dead letters (a table, or JSON lines)
  worker dlq show ID              one dead letter: headers and the original message
  worker dlq replay ID...|--all   republish to the original subject, then remove
  worker dlq purge [--yes]        delete every dead letter (asks unless --yes)
  worker history ID [--json]      what happened to a command: every command the ledger knows
                                  for a command id or a request id (accessPackageAssignmentRequestId,
                                  or privilegedAccessId/governanceRoleAssignmentRequestId), oldest
                                  first, with each write call; reads LEDGER_STORE (JetStream KV via
                                  NATS_URL, or Redis via REDIS_ADDR); exit 0 found, 1 unknown ID,
                                  2 bad argument or unreachable store
  worker bench throughput|pacing  load harness, in binaries built with -tags bench:
                                  see docs/PERFORMANCE.md
  worker help                     this text
  worker version                  the version this binary was built as (also --version)

An ID is the dead letter's stream sequence number (see dlq list).
Exit status: 0 success, 1 failure (including a setting found wrong only when used: a broker,
store or Graph that refuses it), 2 bad usage or a setting wrong on its face.

`

// version is stamped at build time (Dockerfile:
// -ldflags "-X main.version=v1.2.3"); "dev" in a plain go build or go run.
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	verb := "run"
	if len(args) > 0 && (args[0] == "" || args[0][0] != '-') {
		verb, args = args[0], args[1:]
	}
	switch verb {
	case "help":
		printUsage(stdout)
		return 0
	case "version":
		fmt.Fprintln(stdout, "graphops worker "+version)
		return 0
	case "bench": // parses its own flags; needs no worker settings
		return benchMain(ctx, args, stdout, stderr)
	case "run", "dev", "submit", "dlq", "history":
	default:
		fmt.Fprintf(stderr, "worker: unknown command %q (see worker --help)\n", verb)
		return 2
	}
	for _, a := range args {
		switch a {
		case "-h", "--help", "-help":
			printUsage(stdout)
			return 0
		case "--version", "-version":
			fmt.Fprintln(stdout, "graphops worker "+version)
			return 0
		}
	}

	var cfgArgs []string
	if verb == "run" {
		cfgArgs = args
	}
	cfg, err := config.Load(cfgArgs, os.Getenv, io.Discard)
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 2
	}
	level, _ := cfg.Level()
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	switch verb {
	case "run":
		err = app.Run(ctx, cfg, log, app.Hooks{})
	case "dev":
		fs := flag.NewFlagSet("worker dev", flag.ContinueOnError)
		fs.SetOutput(stderr)
		serve := fs.Bool("serve", app.Interactive(stdout), "keep serving /metrics after the summary until Ctrl-C (default: when stdout is a terminal)")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		err = app.Dev(ctx, app.DevOptions{Out: stdout, Log: stderr, Serve: *serve})
	case "submit":
		if len(args) != 1 {
			fmt.Fprintln(stderr, "worker submit: want one FILE, or - for standard input")
			return 2
		}
		in := stdin
		if args[0] != "-" {
			f, ferr := os.Open(args[0])
			if ferr != nil {
				fmt.Fprintf(stderr, "worker submit: %v\n", ferr)
				return 2
			}
			defer f.Close()
			in = f
		}
		err = app.Submit(ctx, cfg, in, stdout)
	case "dlq":
		err = app.DLQ(ctx, cfg, args, stdin, stdout, log)
	case "history":
		if err = app.History(ctx, cfg, args, stdout); err != nil {
			fmt.Fprintf(stderr, "worker history: %v\n", err)
			if errors.Is(err, history.ErrUnknown) {
				return 1
			}
			return 2 // a bad argument, or a store that cannot be read
		}
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "worker %s: %v\n", verb, err)
		var ue *app.UsageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "%s(version %s)\n\n", usage, version)
	config.Usage(w)
}
