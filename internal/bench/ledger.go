package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The worker's ledger metrics (docs/SPEC.md §7).
const (
	metricLedgerOps      = "graphops_ledger_operations_total"
	metricLedgerDuration = "graphops_ledger_operation_duration_seconds"
)

// LedgerCost is what the idempotency ledger cost per command.
type LedgerCost struct {
	// OpsPerCommand is store operations (graphops_ledger_operations_total,
	// every op and result) per command.
	OpsPerCommand float64
	// TimePerCommand is the summed latency of those operations per command
	// (graphops_ledger_operation_duration_seconds_sum / commands): time a
	// command spends waiting for the store, not CPU.
	TimePerCommand time.Duration
	// ByOp breaks both down by operation (claim, lease, complete, release,
	// read, …).
	ByOp map[string]LedgerOpCost

	sample ledgerSample
}

// LedgerOpCost is one ledger operation's share.
type LedgerOpCost struct {
	PerCommand float64
	Mean       time.Duration
}

// ops returns the operations of ByOp in a stable order.
func (c LedgerCost) ops() []string {
	var out []string
	for op := range c.ByOp {
		out = append(out, op)
	}
	slices.Sort(out)
	return out
}

// ledgerSample is the raw metric values of one or more worker runs.
type ledgerSample struct {
	commands int
	count    map[string]float64 // operations by op
	seconds  map[string]float64 // summed duration by op
}

func (s *ledgerSample) add(o ledgerSample) {
	if s.count == nil {
		s.count, s.seconds = map[string]float64{}, map[string]float64{}
	}
	s.commands += o.commands
	for op, v := range o.count {
		s.count[op] += v
	}
	for op, v := range o.seconds {
		s.seconds[op] += v
	}
}

func (s ledgerSample) cost() LedgerCost {
	c := LedgerCost{ByOp: map[string]LedgerOpCost{}, sample: s}
	if s.commands == 0 {
		return c
	}
	n := float64(s.commands)
	var ops, secs float64
	for op, v := range s.count {
		if v == 0 {
			continue
		}
		oc := LedgerOpCost{PerCommand: v / n}
		oc.Mean = time.Duration(s.seconds[op] / v * float64(time.Second))
		c.ByOp[op] = oc
		ops += v
		secs += s.seconds[op]
	}
	c.OpsPerCommand = ops / n
	c.TimePerCommand = time.Duration(secs / n * float64(time.Second))
	return c
}

// scrapeLedger reads the ledger metrics from a worker's admin address.
func scrapeLedger(ctx context.Context, adminAddr string) (LedgerCost, error) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	if err != nil {
		return LedgerCost{}, fmt.Errorf("bench: metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return LedgerCost{}, fmt.Errorf("bench: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return LedgerCost{}, fmt.Errorf("bench: metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return LedgerCost{}, fmt.Errorf("bench: metrics: %w", err)
	}
	s := ledgerSample{count: map[string]float64{}, seconds: map[string]float64{}}
	label := func(ls []*dto.LabelPair, name string) string {
		for _, l := range ls {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	if f := fams[metricLedgerOps]; f != nil {
		for _, m := range f.GetMetric() {
			s.count[label(m.GetLabel(), "op")] += m.GetCounter().GetValue()
		}
	}
	if f := fams[metricLedgerDuration]; f != nil {
		for _, m := range f.GetMetric() {
			s.seconds[label(m.GetLabel(), "op")] += m.GetHistogram().GetSampleSum()
		}
	}
	if len(s.count) == 0 {
		return LedgerCost{}, fmt.Errorf("bench: metrics: no %s", metricLedgerOps)
	}
	return LedgerCost{sample: s}, nil
}
