package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graphops/worker/internal/app"
	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/config"
	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphsim"
	"github.com/graphops/worker/internal/natsembed"
	"github.com/graphops/worker/internal/natsembed/natstest"
	"github.com/graphops/worker/internal/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// harness runs the worker in this process against an embedded JetStream and
// the Graph simulator, both on loopback.
type harness struct {
	t       *testing.T
	nats    *natsembed.Server
	natsURL string
	js      jetstream.JetStream
	sim     *graphsim.Sim
	simURL  string
	env     map[string]string

	mu      sync.Mutex
	settled []worker.Settled
	logs    []map[string]any // every log line of every run
	changed chan struct{}

	adminAddr string
	cancel    context.CancelFunc
	done      chan error
}

const testToken = "test-token-3f1b"

func newHarness(t *testing.T, simCfg graphsim.Config, env map[string]string) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: embedded JetStream and loopback HTTP")
	}
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv.URL())
	simCfg.Token = testToken
	sim := graphsim.New(simCfg)
	simURL, err := sim.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	h := &harness{t: t, nats: srv, natsURL: srv.URL(), js: js, sim: sim, simURL: simURL, changed: make(chan struct{}, 1),
		env: map[string]string{
			"NATS_URL": srv.URL(), "GRAPH_BASE_URL": simURL, "GRAPH_TOKEN": testToken, "ADMIN_ADDR": "127.0.0.1:0",
			"NATS_ACK_WAIT": "5s", "LEDGER_LEASE": "5s", "RETRY_INITIAL_INTERVAL": "50ms", "RETRY_MAX_INTERVAL": "200ms",
			"SHUTDOWN_GRACE": "5s", "GRAPH_TIMEOUT": "5s", "GRAPH_UNANSWERED_SETTLE": "1s", "LOG_LEVEL": "debug",
		}}
	for k, v := range env {
		h.env[k] = v
	}
	h.start()
	return h
}

// start runs a worker with the harness's settings.
func (h *harness) start() {
	h.t.Helper()
	cfg, err := config.Load(nil, func(k string) string { return h.env[k] }, io.Discard)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	started := make(chan string, 1)
	log := slog.New(slog.NewJSONHandler(testWriter{h.t, h}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		h.done <- app.Run(ctx, cfg, log, app.Hooks{
			OnStarted: func(admin, _ string) { started <- admin },
			OnSettled: func(s worker.Settled) {
				h.mu.Lock()
				h.settled = append(h.settled, s)
				h.mu.Unlock()
				select {
				case h.changed <- struct{}{}:
				default:
				}
			},
		})
	}()
	select {
	case h.adminAddr = <-started:
	case err := <-h.done:
		h.t.Fatalf("worker did not start: %v", err)
	case <-time.After(20 * time.Second):
		h.t.Fatal("worker did not start within 20s")
	}
	h.t.Cleanup(h.stop)
}

// stop drains the worker and waits for Run to return.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Error("Run did not return within 15s of the drain")
	}
	h.cancel = nil
}

func (h *harness) publish(data []byte) {
	h.t.Helper()
	subject := "graphops.commands.unknown"
	var ce struct{ Type string }
	if json.Unmarshal(data, &ce) == nil && command.TypeOf(ce.Type) != command.TypeUnknown {
		subject = "graphops.commands." + string(command.TypeOf(ce.Type))
	}
	if _, err := h.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: data}); err != nil {
		h.t.Fatal(err)
	}
}

// waitSettled waits for n outcomes in all and returns them.
func (h *harness) waitSettled(n int, within time.Duration) []worker.Settled {
	h.t.Helper()
	deadline := time.After(within)
	for {
		h.mu.Lock()
		got := append([]worker.Settled(nil), h.settled...)
		h.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-h.changed:
		case <-deadline:
			h.t.Fatalf("%d outcomes after %s, want %d: %+v", len(got), within, n, got)
		}
	}
}

func (h *harness) deadLetters() []dlq.Entry {
	h.t.Helper()
	s, err := dlq.New(context.Background(), h.js, dlq.Config{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []dlq.Entry
	if err := s.List(context.Background(), func(e dlq.Entry) error { out = append(out, e); return nil }); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) metrics() string {
	h.t.Helper()
	resp, err := http.Get("http://" + h.adminAddr + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// writes returns the simulator's write calls (POST/PATCH) in order.
func (h *harness) writes() []graphsim.Call {
	var out []graphsim.Call
	for _, c := range h.sim.Calls() {
		if c.Method == http.MethodPost || c.Method == http.MethodPatch {
			out = append(out, c)
		}
	}
	return out
}

func example(t *testing.T, name string) []byte {
	t.Helper()
	for _, e := range command.Examples() {
		if e.Name == name {
			return e.Data
		}
	}
	t.Fatalf("no example %s", name)
	return nil
}

// withJSON returns the example with its top-level fields replaced.
func withJSON(t *testing.T, raw []byte, set map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func outcomes(s []worker.Settled) map[string]int {
	m := map[string]int{}
	for _, x := range s {
		key := x.Outcome
		if x.Reason != "" {
			key += "/" + x.Reason
		}
		m[key]++
	}
	return m
}

// testWriter shows the worker's log in a verbose run and keeps its lines
// for assertions (slog's JSON handler writes one line per call).
type testWriter struct {
	t *testing.T
	h *harness
}

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	var line map[string]any
	if json.Unmarshal(p, &line) == nil {
		w.h.mu.Lock()
		w.h.logs = append(w.h.logs, line)
		w.h.mu.Unlock()
	}
	return len(p), nil
}

// logLines returns the log lines with message msg, in order.
func (h *harness) logLines(msg string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, l := range h.logs {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}
