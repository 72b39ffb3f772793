package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/graphsim"
	"github.com/graphops/worker/internal/worker"
	"github.com/graphops/worker/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DevOptions configure `worker dev`.
type DevOptions struct {
	Out   io.Writer // the summary
	Log   io.Writer // the worker's logs (warnings and errors)
	Serve bool      // keep serving after the summary until ctx is done
	// AdminAddr overrides the admin address (default 127.0.0.1:9464, or a
	// free port when that one is taken).
	AdminAddr string
}

// Interactive reports whether w is a terminal.
func Interactive(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Dev runs the whole flow on one machine with nothing installed: an
// embedded NATS server, the Graph simulator, the worker, the example
// commands (Microsoft's two resume examples, the SPEC's role request update,
// one of them again as a redelivery, and a bad command), and a summary.
func Dev(ctx context.Context, o DevOptions) error {
	dir, err := os.MkdirTemp("", "graphops-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	const token = "dev-token" // the simulator's; not a Graph token
	sim := graphsim.New(graphsim.Config{AutoCreate: true, Token: token, Latency: 20 * time.Millisecond})
	simURL, err := sim.Start()
	if err != nil {
		return err
	}
	defer sim.Close()

	admin := o.AdminAddr
	if admin == "" {
		admin = freeOr("127.0.0.1:9464")
	}
	env := map[string]string{
		"WORKER_DATA_DIR": dir, "GRAPH_BASE_URL": simURL, "GRAPH_TOKEN": token, "ADMIN_ADDR": admin,
		"NATS_ACK_WAIT": "10s", "LEDGER_LEASE": "10s", "RETRY_INITIAL_INTERVAL": "100ms", "SHUTDOWN_GRACE": "5s",
		"OUTCOME_EVENTS": "on",
	}
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))

	examples := command.Examples()
	// One example again under the same id: what a broker redelivery looks like.
	examples = append(examples, command.Example{Name: examples[0].Name + " (again)", Data: examples[0].Data})

	var (
		mu      sync.Mutex
		settled []worker.Settled
		all     = make(chan struct{})
	)
	startedCh := make(chan [2]string, 1)
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	runErr := make(chan error, 1)
	go func() {
		runErr <- Run(runCtx, cfg, log, Hooks{
			OnStarted: func(adminAddr, natsURL string) { startedCh <- [2]string{adminAddr, natsURL} },
			OnSettled: func(s worker.Settled) {
				mu.Lock()
				defer mu.Unlock()
				settled = append(settled, s)
				if len(settled) == len(examples) {
					close(all)
				}
			},
		})
	}()

	var adminAddr, natsURL string
	select {
	case a := <-startedCh:
		adminAddr, natsURL = a[0], a[1]
	case err := <-runErr:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	fmt.Fprintf(o.Out, "graphops worker dev\n  NATS (embedded):  %s\n  Graph simulator:  %s\n\n", natsURL, simURL)

	if err := publishExamples(ctx, natsURL, examples, o.Out); err != nil {
		return err
	}
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		return errors.New("not every example settled within 60s")
	case err := <-runErr:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}

	mu.Lock()
	printSummary(o.Out, settled)
	n := len(settled)
	mu.Unlock()
	if err := printEvents(ctx, natsURL, cfg.OutcomeStream, n, o.Out); err != nil {
		fmt.Fprintf(o.Out, "\nOutcome events: cannot read them: %v\n", err)
	}
	// The whole life of the resumes of Microsoft's first example, as
	// `worker history` tells it (docs/SPEC.md §8).
	hcfg := *cfg
	hcfg.NATSURL = natsURL
	fmt.Fprintf(o.Out, "\n$ worker history %s\n", devRequest)
	if err := History(ctx, &hcfg, []string{devRequest}, o.Out); err != nil {
		fmt.Fprintf(o.Out, "cannot read the history: %v\n", err)
	}
	st := sim.Stats()
	fmt.Fprintf(o.Out, "\nGraph simulator saw %d write calls, %d applied, %d refused as already resumed.\n",
		st.Calls["resume"]+st.Calls["role_request_update"], st.Applied["resume"]+st.Applied["role_request_update"], st.DoubleApplies)
	fmt.Fprintf(o.Out, "Metrics: http://%s/metrics   (health: /healthz, readiness: /readyz)\n", adminAddr)
	if o.Serve {
		fmt.Fprintln(o.Out, "Serving until Ctrl-C. In another shell, with NATS_URL="+natsURL+":")
		fmt.Fprintln(o.Out, "  worker history "+devRequest+"   # or any command id above; --json for JSON lines")
		fmt.Fprintln(o.Out, "  worker dlq list")
		<-ctx.Done()
	}
	cancelRun()
	return <-runErr
}

func publishExamples(ctx context.Context, url string, ex []command.Example, w io.Writer) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	fmt.Fprintf(w, "Submitting %d commands:\n", len(ex))
	for _, e := range ex {
		subject := subjectPrefix + "." + string(typeOfRaw(e.Data))
		// Request waits for the stream's acknowledgement.
		if _, err := nc.RequestWithContext(ctx, subject, e.Data); err != nil {
			return fmt.Errorf("publish %s: %w", e.Name, err)
		}
		fmt.Fprintf(w, "  %-30s → %s\n", e.Name, subject)
	}
	fmt.Fprintln(w)
	return nil
}

func printSummary(w io.Writer, s []worker.Settled) {
	fmt.Fprintln(w, "Outcomes:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	counts := map[string]int{}
	for _, x := range s {
		counts[x.Outcome]++
		detail := ""
		if x.Outcome == metrics.OutcomeDeadLettered {
			detail = x.Reason + ": " + x.Description
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", strings.ToUpper(x.Outcome), x.Type, x.CommandID, detail)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d applied, %d duplicate, %d dead-lettered.\n",
		counts[metrics.OutcomeApplied], counts[metrics.OutcomeDuplicate], counts[metrics.OutcomeDeadLettered])
}

// devRequest is the request id of Microsoft's first resume example, which
// the examples resume once and repeat once.
const devRequest = "0e60f18c-b2a0-4887-9da8-da2e30a39d99"

// printEvents prints the outcome events the worker published (docs/SPEC.md §9):
// what a producer subscribed to graphops.outcomes.> receives. Every settled
// command's event is in the stream before the command was acknowledged.
func printEvents(ctx context.Context, url, stream string, want int, w io.Writer) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	batch, err := c.FetchNoWait(want)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nOutcome events (stream %s, what a producer subscribed to graphops.outcomes.> receives):\n", stream)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for m := range batch.Messages() {
		var e struct {
			ID   string `json:"id"`
			Data struct {
				CommandID string `json:"command_id"`
				RequestID string `json:"request_id"`
				Outcome   string `json:"outcome"`
				Reason    string `json:"reason"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			return err
		}
		outcome := e.Data.Outcome
		if e.Data.Reason != "" {
			outcome += "/" + e.Data.Reason
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\tcommand %s\n", m.Subject(), e.ID, outcome, e.Data.CommandID)
	}
	tw.Flush()
	return batch.Error()
}

// freeOr returns addr when it can be listened on, else a free loopback port.
func freeOr(addr string) string {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return addr
		}
	}
	a := l.Addr().String()
	l.Close()
	return a
}
