package main

import (
	"bytes"
	"strings"
	"testing"
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
		"NATS_URL", "--nats-url", "GRAPH_TOKEN", "WORKER_DRY_RUN", "SHUTDOWN_GRACE", "LEDGER_STORE"} {
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
