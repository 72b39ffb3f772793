package bench_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/graphops/worker/internal/bench"
)

func TestValidateNamesTheFieldAtFault(t *testing.T) {
	tests := []struct {
		name     string
		validate func() error
		field    string
	}{
		{"a negative command count", func() error { c := bench.ThroughputConfig{Commands: -1}; return c.Validate() }, "Commands"},
		{"an unknown ledger store", func() error { c := bench.ThroughputConfig{LedgerStore: "bolt"}; return c.Validate() }, "LedgerStore"},
		{"a concurrency above WORKER_CONCURRENCY's limit", func() error { c := bench.ThroughputConfig{Concurrency: 5000}; return c.Validate() }, "Concurrency"},
		{"a zero rate", func() error { c := bench.PacingConfig{Rates: []float64{100, 0}}; return c.Validate() }, "Rates"},
		{"no replica", func() error { c := bench.PacingConfig{Replicas: []int{0}}; return c.Validate() }, "Replicas"},
		{"a window under a second", func() error { c := bench.PacingConfig{Duration: 1}; return c.Validate() }, "Duration"},
		{"a negative backlog", func() error { c := bench.PacingConfig{Backlog: -1}; return c.Validate() }, "Backlog"},
		{"another application spending the whole rate", func() error { c := bench.PacingConfig{OtherShare: 1}; return c.Validate() }, "OtherShare"},
		{"a negative jitter", func() error { c := bench.PacingConfig{Jitter: -1}; return c.Validate() }, "Jitter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.validate()
			if !errors.Is(err, bench.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Validate() = %v, want ErrInvalidConfig naming %s", err, tt.field)
			}
		})
	}
}

func TestValidateFillsInTheDefaults(t *testing.T) {
	var tc bench.ThroughputConfig
	if err := tc.Validate(); err != nil {
		t.Fatal(err)
	}
	if tc.Commands != bench.DefaultCommands || tc.Rounds != bench.DefaultRounds || tc.LedgerStore != "jetstream" {
		t.Errorf("throughput defaults %+v", tc)
	}
	var pc bench.PacingConfig
	if err := pc.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(pc.Rates) != 3 || len(pc.Replicas) != 2 || pc.Runs != bench.DefaultPacingRuns || len(pc.Worker) != 2 || pc.Worker[1] != "run" {
		t.Errorf("pacing defaults %+v", pc)
	}
}

func TestMainExitStatus(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no mode is bad usage", nil, 2},
		{"an unknown mode is bad usage", []string{"latency"}, 2},
		{"an unknown flag is bad usage", []string{"throughput", "-frobnicate"}, 2},
		{"an invalid setting is bad usage", []string{"throughput", "-ledger", "bolt"}, 2},
		{"a rate that is not a number is bad usage", []string{"pacing", "-rates", "fast"}, 2},
		{"plot without a report is bad usage", []string{"plot"}, 2},
		{"help succeeds", []string{"help"}, 0},
		{"a mode's help succeeds", []string{"pacing", "-h"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if got := bench.Main(context.Background(), tt.args, &out, &errOut); got != tt.want {
				t.Errorf("Main(%q) = %d, want %d; stderr: %s", tt.args, got, tt.want, errOut.String())
			}
		})
	}
}
