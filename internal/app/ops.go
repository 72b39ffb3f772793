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
	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/consumer/servicebus"
	"github.com/graphops/worker/internal/dlq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// UsageError is a mistake on the command line (exit code 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// subjectPrefix is where producers publish (SPEC §4:
// graphops.commands.<short type>).
const subjectPrefix = "graphops.commands"

// Submit publishes commands, one JSON document per line of r, to the
// broker of WORKER_SOURCE: on NATS to the command stream on
// graphops.commands.<short type>, on Service Bus to the queue or topic
// (with the request id as SessionId when SERVICEBUS_SESSIONS is set). It
// reports each message on w.
func Submit(ctx context.Context, cfg *config.Config, r io.Reader, w io.Writer) error {
	publish, closePublisher, err := openPublisher(ctx, cfg)
	if err != nil {
		return err
	}
	defer closePublisher()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	n, line := 0, 0
	for sc.Scan() {
		line++
		data := []byte(strings.TrimSpace(sc.Text()))
		if len(data) == 0 {
			continue
		}
		where, err := publish(ctx, data)
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

// publishFunc publishes one command and says where it went.
type publishFunc func(ctx context.Context, data []byte) (string, error)

// openPublisher connects to the broker of WORKER_SOURCE for Submit.
func openPublisher(ctx context.Context, cfg *config.Config) (publishFunc, func(), error) {
	if cfg.Source == "servicebus" {
		p, err := servicebus.NewPublisher(sbConfig(cfg))
		if err != nil {
			var ce *consumer.ConfigError
			if errors.As(err, &ce) {
				return nil, nil, fmt.Errorf("%s: %s", ce.Setting, ce.Problem)
			}
			return nil, nil, fmt.Errorf("SERVICEBUS_NAMESPACE: %w", err)
		}
		publish := func(ctx context.Context, data []byte) (string, error) {
			sessionID := ""
			if cmd, err := command.Parse(data, command.Options{}); err == nil {
				sessionID = cmd.RequestID()
			}
			if err := p.Publish(ctx, data, sessionID); err != nil {
				return "", err
			}
			return p.Target(), nil
		}
		return publish, func() { _ = p.Close(context.WithoutCancel(ctx)) }, nil
	}
	if cfg.NATSURL == "" {
		return nil, nil, errors.New("NATS_URL: submit needs the broker to publish to (e.g. NATS_URL=nats://127.0.0.1:4222)")
	}
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("graphops-submit"))
	if err != nil {
		return nil, nil, fmt.Errorf("NATS_URL: cannot connect to %s: %w", cfg.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	publish := func(ctx context.Context, data []byte) (string, error) {
		subject := subjectPrefix + "." + string(typeOfRaw(data))
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{"Content-Type": []string{"application/cloudevents+json"}}}
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			return "", fmt.Errorf("publish to %s: %w", subject, err)
		}
		return fmt.Sprintf("%s, stream %s sequence %d", subject, ack.Stream, ack.Sequence), nil
	}
	return publish, nc.Close, nil
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
	backend, closeBackend, err := openDeadLetters(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeBackend()
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

// openDeadLetters opens the dead-letter store of WORKER_SOURCE: the
// JetStream dead-letter stream, or the Service Bus entity's dead-letter
// sub-queue (an ID is then the dead letter's sequence number).
func openDeadLetters(ctx context.Context, cfg *config.Config, log *slog.Logger) (dlq.Backend, func(), error) {
	if cfg.Source == "servicebus" {
		d, err := servicebus.NewDeadLetters(sbConfig(cfg))
		if err != nil {
			return nil, nil, fmt.Errorf("SERVICEBUS_NAMESPACE: %w", err)
		}
		return d, func() { _ = d.Close(context.WithoutCancel(ctx)) }, nil
	}
	b, err := connect(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	store, err := dlq.New(ctx, b.js, dlqConfig(cfg))
	if err != nil {
		b.close()
		return nil, nil, fmt.Errorf("NATS_DLQ_STREAM: %w", err)
	}
	return store.Backend(dlq.JetStreamPublisher(b.js, jetstream.WithExpectStream(cfg.Stream))), b.close, nil
}

func dlqConfig(cfg *config.Config) dlq.Config {
	return dlq.Config{Stream: cfg.DLQStream, SubjectPrefix: cfg.DLQPrefix, Replicas: cfg.JSReplicas, CommandSubjects: cfg.SubjectList()}
}
