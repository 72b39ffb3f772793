package e2e_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// workerBin is the worker binary built with -tags crashtest; empty under
// -short, where every test skips.
var workerBin string

// prebuiltEnv names a worker binary to test instead of building one (it
// must be built with -tags crashtest), e.g. an older commit's.
const prebuiltEnv = "GRAPHOPS_E2E_WORKER"

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	if workerBin = os.Getenv(prebuiltEnv); workerBin != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "graphops-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := 1
	if workerBin, err = buildWorker(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
	} else {
		code = m.Run()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildWorker builds ./cmd/worker with its crash points compiled in.
func buildWorker(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go tool is needed to build the worker: %w", err)
	}
	bin := filepath.Join(dir, "worker")
	cmd := exec.Command(goTool, "build", "-tags", "crashtest", "-o", bin, "./cmd/worker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -tags crashtest ./cmd/worker: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the nearest directory above the working directory that
// holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
