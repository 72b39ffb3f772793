package deploy_test

// The registry of metrics.New() and a reader for the PromQL in the alerts, the
// autoscaler and the dashboard, so that every metric, label and label value
// they use is checked against what the worker exposes.

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/graphops/worker/metrics"
)

type family struct {
	labels map[string]bool
	values map[string]map[string]bool // label → values present at start-up
}

// targetLabels are added by Prometheus and the Prometheus Operator to every
// scraped series (servicemonitor.yaml relies on the defaults).
var targetLabels = []string{"job", "namespace", "pod", "instance", "service", "container", "endpoint"}

// externalMetrics are queried but exported by something else: Prometheus
// itself and the NATS Prometheus exporter (README.md, "Autoscaling").
var externalMetrics = []string{"up", "jetstream_consumer_num_pending", "jetstream_consumer_num_ack_pending"}

// registry maps every series name metrics.New() exposes (histograms as
// _bucket, _sum and _count) to its labels.
func registry(t *testing.T) map[string]family {
	t.Helper()
	fams, err := metrics.New().Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]family)
	for _, f := range fams {
		fam := family{labels: map[string]bool{}, values: map[string]map[string]bool{}}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				fam.labels[lp.GetName()] = true
				if fam.values[lp.GetName()] == nil {
					fam.values[lp.GetName()] = map[string]bool{}
				}
				fam.values[lp.GetName()][lp.GetValue()] = true
			}
		}
		if f.GetType() == dto.MetricType_HISTOGRAM {
			bucket := family{labels: map[string]bool{"le": true}, values: fam.values}
			for l := range fam.labels {
				bucket.labels[l] = true
			}
			out[f.GetName()+"_bucket"] = bucket
			out[f.GetName()+"_sum"] = fam
			out[f.GetName()+"_count"] = fam
			continue
		}
		out[f.GetName()] = fam
	}
	return out
}

// ---- reading PromQL ----

type matcher struct{ label, op, value string }

type selector struct {
	metric   string
	matchers []matcher
}

// notMetrics are PromQL words that look like metric names.
var notMetrics = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true, "and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "inf": true, "nan": true, "atan2": true,
}

var matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)

// parsePromQL finds the metric selectors of expr and the label names of its
// by/without/on/ignoring/group_* clauses. It is not a full parser; it reads
// what a metric name, a function call and a label list look like.
func parsePromQL(expr string) (sels []selector, groupLabels []string, err error) {
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
	}
	skipSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\n' || expr[i] == '\t') {
			i++
		}
		return i
	}
	closing := func(i int, open, close byte) (int, error) { // index after the match of expr[i]
		depth := 0
		for j := i; j < len(expr); j++ {
			switch expr[j] {
			case '"':
				for j++; j < len(expr) && expr[j] != '"'; j++ {
					if expr[j] == '\\' {
						j++
					}
				}
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("unbalanced " + string(open))
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"': // a string outside a selector: skip it
			for i++; i < len(expr) && expr[i] != '"'; i++ {
				if expr[i] == '\\' {
					i++
				}
			}
			if i >= len(expr) {
				return nil, nil, errors.New("unterminated string")
			}
			i++
		case c == '[':
			k := strings.IndexByte(expr[i:], ']')
			if k < 0 {
				return nil, nil, errors.New("unbalanced [")
			}
			i += k + 1
		case c == '$':
			i++
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			start := i
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
			word := expr[start:i]
			next := skipSpace(i)
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring" || word == "group_left" || word == "group_right":
				if next < len(expr) && expr[next] == '(' {
					end, err := closing(next, '(', ')')
					if err != nil {
						return nil, nil, err
					}
					for _, l := range strings.Split(expr[next+1:end-1], ",") {
						if l = strings.TrimSpace(l); l != "" {
							groupLabels = append(groupLabels, l)
						}
					}
					i = end
				}
			case notMetrics[word]:
			case next < len(expr) && expr[next] == '(':
				// a function call
			default:
				sel := selector{metric: word}
				if next < len(expr) && expr[next] == '{' {
					end, err := closing(next, '{', '}')
					if err != nil {
						return nil, nil, err
					}
					for _, m := range matcherRE.FindAllStringSubmatch(expr[next:end], -1) {
						sel.matchers = append(sel.matchers, matcher{m[1], m[2], m[3]})
					}
					i = end
				}
				sels = append(sels, sel)
			}
		default:
			i++
		}
	}
	return sels, groupLabels, nil
}

// checkPromQL returns every metric, label or label value in expr that the
// worker (or the named exporters) does not produce, and a job other than the
// ServiceMonitor's.
func checkPromQL(expr string, reg map[string]family, job string) (problems []string) {
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	sels, groupLabels, err := parsePromQL(expr)
	if err != nil {
		return []string{fmt.Sprintf("%v in %q", err, expr)}
	}
	if len(sels) == 0 {
		errorf("no metric in %q", expr)
	}
	known := map[string]bool{"le": true}
	for _, l := range targetLabels {
		known[l] = true
	}
	for _, s := range sels {
		for _, m := range s.matchers {
			if m.label == "job" && m.op == "=" && m.value != job {
				errorf("%s{job=%q}, but the ServiceMonitor's job is %q", s.metric, m.value, job)
			}
		}
		if !strings.HasPrefix(s.metric, "graphops_") {
			if !slices.Contains(externalMetrics, s.metric) {
				errorf("metric %s is neither the worker's nor a known exporter's", s.metric)
			}
			continue
		}
		fam, ok := reg[s.metric]
		if !ok {
			errorf("metric %s does not exist in metrics.New()'s registry", s.metric)
			continue
		}
		for l := range fam.labels {
			known[l] = true
		}
		for _, m := range s.matchers {
			if !fam.labels[m.label] {
				if !slices.Contains(targetLabels, m.label) {
					errorf("%s has no label %q", s.metric, m.label)
				}
				continue
			}
			values := fam.values[m.label]
			switch m.op {
			case "=":
				if !values[m.value] {
					errorf("%s{%s=%q}: no such %s (known: %v)", s.metric, m.label, m.value, m.label, keys(values))
				}
			case "=~":
				re, err := regexp.Compile("^(?:" + m.value + ")$")
				if err != nil {
					errorf("%s{%s=~%q}: %v", s.metric, m.label, m.value, err)
					continue
				}
				if !slices.ContainsFunc(keys(values), re.MatchString) && !strings.Contains(m.value, "$") {
					errorf("%s{%s=~%q} matches none of %v", s.metric, m.label, m.value, keys(values))
				}
			}
		}
	}
	for _, l := range groupLabels {
		if !known[l] {
			errorf("grouping by %q, a label none of its metrics has", l)
		}
	}
	return problems
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestThePromQLReaderFindsMetricsLabelsAndValues(t *testing.T) {
	// The checks below are only as good as this reader.
	sels, by, err := parsePromQL(`histogram_quantile(0.99, sum by (le, type) (rate(graphops_command_duration_seconds_bucket{job="w", type=~"a|b"}[$__rate_interval])))
		and on () (max(graphops_throttled_until_seconds) == bool 0) or count(up)`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sels {
		names = append(names, s.metric)
	}
	if want := []string{"graphops_command_duration_seconds_bucket", "graphops_throttled_until_seconds", "up"}; !slices.Equal(names, want) {
		t.Errorf("metrics %v, want %v", names, want)
	}
	if want := []string{"le", "type"}; !slices.Equal(by, want) {
		t.Errorf("grouping labels %v, want %v", by, want)
	}
	if want := []matcher{{"job", "=", "w"}, {"type", "=~", "a|b"}}; len(sels) == 0 || !slices.Equal(sels[0].matchers, want) {
		t.Errorf("matchers %v, want %v", sels[0].matchers, want)
	}

	// A typo in a metric, a label or a value is caught.
	reg := registry(t)
	for _, good := range []string{
		`sum by (namespace, type) (rate(graphops_dead_letters_total{job="w", reason="retries_exhausted"}[5m])) > 0`,
		`graphops_graph_requests_total{code=~"5..|error"}`,
		`max(jetstream_consumer_num_pending{consumer_name="graphops-worker"})`,
	} {
		if p := checkPromQL(good, reg, "w"); len(p) != 0 {
			t.Errorf("checkPromQL refused %q: %v", good, p)
		}
	}
	for _, bad := range []string{
		`rate(graphops_command_total[5m])`,
		`graphops_dead_letters_total{reason="retry_exhausted"}`,
		`graphops_in_flight{operation="resume"}`,
		`sum by (kind) (graphops_in_flight)`,
		`graphops_graph_requests_total{code=~"6.."}`,
		`nats_consumer_num_pending`,
		`up{job="other"}`,
	} {
		if p := checkPromQL(bad, reg, "w"); len(p) == 0 {
			t.Errorf("checkPromQL accepted %q", bad)
		}
	}
}
