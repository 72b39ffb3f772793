package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/kvstore"
	"github.com/graphops/worker/internal/natsembed/natstest"
)

func TestBadConfigurationStopsStartUpWithOneLineNamingTheSetting(t *testing.T) {
	t.Setenv("GRAPH_TIMEOUT", "soon")
	var out, errOut bytes.Buffer
	code := run([]string{"run"}, strings.NewReader(""), &out, &errOut)
	line := strings.TrimSpace(errOut.String())
	if code != 2 || strings.Count(line, "\n") != 0 || !strings.Contains(line, "GRAPH_TIMEOUT") {
		t.Fatalf("exit %d, stderr %q: want 2 and one line naming GRAPH_TIMEOUT", code, errOut.String())
	}
}

func TestAFlagOfWorkerRunIsValidatedLikeItsVariable(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"run", "--worker-concurrency", "0"}, strings.NewReader(""), &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "WORKER_CONCURRENCY") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestHelpDocumentsEveryCommandAndSetting(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"worker dev", "worker submit", "dlq list", "dlq replay", "dlq purge", "--yes",
		"NATS_URL", "--nats-url", "GRAPH_TOKEN", "WORKER_DRY_RUN", "SHUTDOWN_GRACE", "LEDGER_STORE", "worker history", "--json"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

func TestUnknownCommandsAndMissingArgumentsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"submit"}, {"dlq"}, {"dlq", "show"}} {
		t.Setenv("NATS_URL", "nats://127.0.0.1:1")
		var out, errOut bytes.Buffer
		if code := run(args, strings.NewReader(""), &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d (stderr %q), want 2", args, code, errOut.String())
		}
	}
}

func TestHistoryExitStatuses(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: embedded JetStream on loopback")
	}
	srv := natstest.Server(t)
	run1 := func(t *testing.T, env map[string]string, args ...string) (int, string, string) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		var out, errOut bytes.Buffer
		code := run(append([]string{"history"}, args...), strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	nats := map[string]string{"NATS_URL": srv.URL(), "LEDGER_BUCKET": "HISTORY_CLI"}

	t.Run("before any ledger exists an id is unknown", func(t *testing.T) {
		if code, _, errOut := run1(t, nats, "cmd-1"); code != 1 || !strings.Contains(errOut, "HISTORY_CLI") {
			t.Errorf("exit %d (%q), want 1 naming the missing bucket", code, errOut)
		}
	})

	// One applied command, written as the worker writes it.
	_, js := natstest.Connect(t, srv.URL())
	s, err := kvstore.New(t.Context(), js, kvstore.Config{Bucket: "HISTORY_CLI"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(s, ledger.Config{Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	id := ledger.Identity{Source: "urn:t", ID: "cmd-1", Request: ledger.RequestOf("resume", "req-1"), Key: ledger.KeyOf("callout", "req-1", "i")}
	_, cl, err := l.Begin(t.Context(), id, false)
	if err != nil {
		t.Fatal(err)
	}
	cl.Attempted(time.Now())
	cl.Answered(ledger.Answer{ClientRequestID: "crid", GraphStatus: 204, GraphRequestID: "graph-1"})
	if err := cl.Applied(t.Context(), 204, "graph-1", false); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		env  map[string]string
		args []string
		want int
		out  string // in stdout
	}{
		{"a known command id is found, as JSON", nats, []string{"cmd-1", "--json"}, 0, `"graph_request_id":"graph-1"`},
		{"a known request id is found, as a table", nats, []string{"REQ-1"}, 0, "applied"},
		{"an unknown id exits 1", nats, []string{"cmd-2"}, 1, ""},
		{"no id is a usage error", nats, nil, 2, ""},
		{"two ids are a usage error", nats, []string{"a", "b"}, 2, ""},
		{"an unknown flag is a usage error", nats, []string{"--yaml", "cmd-1"}, 2, ""},
		{"an id with a space is a bad argument", nats, []string{"cmd 1"}, 2, ""},
		{"an unreachable broker exits 2", map[string]string{"NATS_URL": "nats://127.0.0.1:1"}, []string{"cmd-1"}, 2, ""},
		{"an unreachable Redis exits 2", map[string]string{"LEDGER_STORE": "redis", "REDIS_ADDR": "127.0.0.1:1"}, []string{"cmd-1"}, 2, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run1(t, c.env, c.args...)
			if code != c.want || !strings.Contains(out, c.out) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, c.want, c.out)
			}
		})
	}
}

func TestVersionPrintsTheStampedVersion(t *testing.T) {
	// The Dockerfile stamps it with -ldflags -X main.version=…; tests see
	// the default.
	for _, args := range [][]string{{"version"}, {"--version"}, {"run", "--version"}} {
		var out, errOut bytes.Buffer
		if code := run(args, strings.NewReader(""), &out, &errOut); code != 0 || out.String() != "graphops worker dev\n" {
			t.Errorf("%v: exit %d, stdout %q; want 0 and %q", args, code, out.String(), "graphops worker dev\n")
		}
	}
	var out, errOut bytes.Buffer
	run([]string{"--help"}, strings.NewReader(""), &out, &errOut)
	if !strings.Contains(out.String(), "(version dev)") {
		t.Errorf("--help does not name the version")
	}
}

// TestCredentialsThatGiveNoTokenStopStartUp: without GRAPH_TOKEN the worker
// asks azidentity for a token before it touches a message; credentials
// that cannot give one stop start-up in one line naming the setting.
func TestCredentialsThatGiveNoTokenStopStartUp(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: embedded JetStream on loopback")
	}
	srv := natstest.Server(t)
	for k, v := range map[string]string{"NATS_URL": srv.URL(), "GRAPH_TIMEOUT": "3s", "ADMIN_ADDR": "127.0.0.1:0",
		"AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
		"AZURE_CLIENT_SECRET": "not-a-secret", "AZURE_AUTHORITY_HOST": "https://127.0.0.1:1/"} {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run"}, strings.NewReader(""), &out, &errOut) }()
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker is still running 30s after start-up without a Graph token")
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	last := lines[len(lines)-1]
	if code == 0 || !strings.Contains(last, "GRAPH_TOKEN") || !strings.Contains(last, "no Graph token") {
		t.Fatalf("exit %d, last line %q: want a failure naming GRAPH_TOKEN", code, last)
	}
	if strings.Contains(errOut.String(), `"msg":"consuming"`) {
		t.Error("the worker consumed before it had a token")
	}
}

// TestMoreReplicasThanTheServerCanKeepNamesNATS_REPLICAS: a setting the
// server refuses only when the streams are made is named too.
func TestMoreReplicasThanTheServerCanKeepNamesNATS_REPLICAS(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: embedded JetStream on loopback")
	}
	srv := natstest.Server(t)
	for k, v := range map[string]string{"NATS_URL": srv.URL(), "NATS_REPLICAS": "3", "GRAPH_TOKEN": "t", "ADMIN_ADDR": "127.0.0.1:0"} {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run"}, strings.NewReader(""), &out, &errOut) }()
	select {
	case code := <-done:
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		if last := lines[len(lines)-1]; code == 0 || !strings.Contains(last, "NATS_REPLICAS:") {
			t.Fatalf("exit %d, last line %q: want a failure naming NATS_REPLICAS", code, last)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker started with 3 replicas on a single server")
	}
}

// TestDLQNeedsTheBrokersURL: with NATS_URL empty, `worker dlq` would start
// an embedded server on the data directory a running worker holds; it
// refuses, naming the setting, as submit and history do.
func TestDLQNeedsTheBrokersURL(t *testing.T) {
	t.Setenv("NATS_URL", "")
	t.Setenv("WORKER_DATA_DIR", t.TempDir())
	var out, errOut bytes.Buffer
	if code := run([]string{"dlq", "list"}, strings.NewReader(""), &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "NATS_URL") {
		t.Fatalf("exit %d, stderr %q: want a failure naming NATS_URL", code, errOut.String())
	}
}
