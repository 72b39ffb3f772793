package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/dlq"
)

// UsageError is a mistake on the command line (exit code 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// subjectPrefix is where producers publish by default (docs/SPEC.md §4:
// graphops.commands.<short type>).
const subjectPrefix = "graphops.commands"

// Submit publishes commands, one JSON document per line of r, to the
// broker of WORKER_SOURCE: on NATS to the command stream on
// graphops.commands.<short type>, on Service Bus to the queue or topic
// (with the request id as SessionId when SERVICEBUS_SESSIONS is set). It
// reports each message on w.
func Submit(ctx context.Context, cfg *config.Config, r io.Reader, w io.Writer) error {
	if cfg.Source != "servicebus" && cfg.NATSURL == "" {
		return errors.New("NATS_URL: submit needs the broker to publish to (e.g. NATS_URL=nats://127.0.0.1:4222)")
	}
	b, err := openBroker(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer b.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	n, line := 0, 0
	for sc.Scan() {
		line++
		data := []byte(strings.TrimSpace(sc.Text()))
		if len(data) == 0 {
			continue
		}
		where, err := b.Publish(ctx, data)
		if err != nil {
			return fmt.Errorf("line %d: %w (%d published before it)", line, err, n)
		}
		n++
		fmt.Fprintf(w, "line %d: published to %s\n", line, where)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w (%d published before it)", line+1, err, n)
	}
	fmt.Fprintf(w, "published %d commands\n", n)
	return nil
}

// typeOfRaw reads the short type of a command for its subject; the worker
// trusts the message's type, not the subject, so a guess is enough.
func typeOfRaw(data []byte) command.Type {
	var ce struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(data, &ce) != nil {
		return command.TypeUnknown
	}
	return command.TypeOf(ce.Type)
}

// DLQ runs `worker dlq list|show|replay|purge`.
func DLQ(ctx context.Context, cfg *config.Config, args []string, in io.Reader, out io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		return &UsageError{"worker dlq: want list, show ID, replay ID…|--all or purge [--yes]"}
	}
	verb, rest := args[0], args[1:]
	fs := flag.NewFlagSet("worker dlq "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	jsonOut := fs.Bool("json", false, "list: JSON lines instead of a table")
	all := fs.Bool("all", false, "replay: every dead letter")
	yes := fs.Bool("yes", false, "purge: do not ask for confirmation")
	if err := fs.Parse(rest); err != nil {
		return &UsageError{"worker dlq " + verb + ": " + err.Error()}
	}
	seqs, err := dlq.ParseSeqs(fs.Args())
	if err != nil {
		return &UsageError{"worker dlq " + verb + ": " + err.Error()}
	}
	switch {
	case verb != "list" && verb != "show" && verb != "replay" && verb != "purge":
		return &UsageError{"worker dlq: unknown command " + verb + " (want list, show, replay or purge)"}
	case verb == "show" && len(seqs) != 1:
		return &UsageError{"worker dlq show: want exactly one ID (the dead letter's sequence number)"}
	case verb == "replay" && *all == (len(seqs) > 0):
		return &UsageError{"worker dlq replay: want IDs or --all"}
	}
	if cfg.Source != "servicebus" && cfg.NATSURL == "" {
		// An embedded server would open the data directory a running
		// worker holds.
		return errors.New("NATS_URL: dlq reads the dead letters through the broker (e.g. NATS_URL=nats://127.0.0.1:4222)")
	}
	b, err := openBroker(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer b.Close()
	backend := b.DeadLetters()
	switch verb {
	case "list":
		return dlq.CmdList(ctx, backend, out, *jsonOut)
	case "show":
		return dlq.CmdShow(ctx, backend, out, seqs[0])
	case "replay":
		return dlq.CmdReplay(ctx, backend, out, seqs, *all)
	case "purge":
		return dlq.CmdPurge(ctx, backend, in, out, *yes)
	}
	return &UsageError{"worker dlq: unknown command " + verb + " (want list, show, replay or purge)"}
}

func dlqConfig(cfg *config.Config) dlq.Config {
	return dlq.Config{Stream: cfg.DLQStream, SubjectPrefix: cfg.DLQPrefix, Replicas: cfg.JSReplicas, CommandSubjects: cfg.SubjectList()}
}
