package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// targetLabels are added by Prometheus (and the Prometheus Operator's
// ServiceMonitor) to every scraped series.
var targetLabels = map[string]bool{"job": true, "namespace": true, "pod": true, "instance": true, "service": true, "container": true, "endpoint": true}

// externalMetrics are queried but not exported by the worker.
var externalMetrics = map[string]bool{"up": true}

func runRules(args []string, w io.Writer) error {
	if len(args) != 1 {
		return errors.New("want one rendered file")
	}
	objs, err := readRendered(args[0])
	if err != nil {
		return err
	}
	rules := byKind(objs, "PrometheusRule")
	if len(rules) != 1 {
		return fmt.Errorf("want one PrometheusRule, got %d", len(rules))
	}
	b, err := yaml.Marshal(rules[0].get("spec"))
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func runKEDAQuery(args []string, w io.Writer) error {
	if len(args) != 1 {
		return errors.New("want one rendered file")
	}
	objs, err := readRendered(args[0])
	if err != nil {
		return err
	}
	q := kedaQueries(objs)
	if len(q) != 1 {
		return fmt.Errorf("want one prometheus trigger, got %d", len(q))
	}
	_, err = fmt.Fprint(w, q[0].expr)
	return err
}

// query is one PromQL expression and where it comes from.
type query struct{ where, expr string }

func kedaQueries(objs []object) []query {
	var out []query
	for _, so := range byKind(objs, "ScaledObject") {
		for i, t := range asList(so.get("spec", "triggers")) {
			to := object(asMap(t))
			if to.str("type") == "prometheus" {
				out = append(out, query{fmt.Sprintf("ScaledObject %s trigger %d", so.name(), i), to.str("metadata", "query")})
			}
		}
	}
	return out
}

func ruleQueries(objs []object) []query {
	var out []query
	for _, pr := range byKind(objs, "PrometheusRule") {
		for _, g := range asList(pr.get("spec", "groups")) {
			for _, r := range asList(object(asMap(g)).get("rules")) {
				ro := object(asMap(r))
				out = append(out, query{"alert " + ro.str("alert") + ro.str("record"), ro.str("expr")})
			}
		}
	}
	return out
}

// dashboardQueries returns every target and variable query of a Grafana
// dashboard, with Grafana's variables replaced by values PromQL accepts.
func dashboardQueries(b []byte) ([]query, error) {
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$namespace", ".*", "${namespace}", ".*")
	var out []query
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, query{"dashboard panel " + p.Title, grafana.Replace(t.Expr)})
		}
	}
	lv := regexp.MustCompile(`^label_values\((.*),\s*[a-z_]+\)$`)
	for _, v := range d.Templating.List {
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		if m := lv.FindStringSubmatch(s); m != nil {
			out = append(out, query{"dashboard variable " + v.Name, m[1]})
		}
	}
	return out, nil
}

func runPromQL(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("promql", flag.ContinueOnError)
	scrapeFile := fs.String("scrape", "", "a /metrics scrape of the running worker")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *scrapeFile == "" || fs.NArg() == 0 {
		return errors.New("want -scrape and rendered files or dashboards")
	}
	f, err := os.Open(*scrapeFile)
	if err != nil {
		return err
	}
	defer f.Close()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *scrapeFile, err)
	}
	reg := seriesLabels(fams)

	var queries []query
	dashboardMetrics := map[string]bool{}
	for _, path := range fs.Args() {
		if strings.HasSuffix(path, ".json") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			q, err := dashboardQueries(b)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			for _, x := range q {
				names, _ := metricNames(x.expr)
				for _, n := range names {
					dashboardMetrics[n] = true
				}
			}
			queries = append(queries, q...)
			continue
		}
		objs, err := readRendered(path)
		if err != nil {
			return err
		}
		queries = append(queries, ruleQueries(objs)...)
		queries = append(queries, kedaQueries(objs)...)
	}
	var problems []string
	for _, q := range queries {
		for _, p := range checkQuery(q.expr, reg) {
			problems = append(problems, q.where+": "+p)
		}
	}
	// The questions an on-call engineer asks first must have a panel.
	for _, m := range []string{"graphops_backlog_messages", "graphops_oldest_message_age_seconds", "graphops_commands_total",
		"graphops_dead_letters_total", "graphops_graph_throttled_total", "graphops_throttled_until_seconds", "graphops_ready", "graphops_in_flight"} {
		if len(dashboardMetrics) > 0 && !dashboardMetrics[m] {
			problems = append(problems, "the dashboard shows nothing of "+m)
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	fmt.Fprintf(w, "deploycheck promql: %d queries parse, and every metric, label and value they use is in the scrape (%d series names)\n", len(queries), len(reg))
	return nil
}

// seriesLabels maps each series name of a scrape (histograms as _bucket,
// _sum, _count) to its label names and the values seen for each.
func seriesLabels(fams map[string]*dto.MetricFamily) map[string]map[string]map[string]bool {
	out := map[string]map[string]map[string]bool{}
	add := func(name string, m *dto.Metric, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]map[string]bool{}
		}
		for _, lp := range m.GetLabel() {
			if out[name][lp.GetName()] == nil {
				out[name][lp.GetName()] = map[string]bool{}
			}
			out[name][lp.GetName()][lp.GetValue()] = true
		}
		for _, l := range extra {
			if out[name][l] == nil {
				out[name][l] = map[string]bool{}
			}
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out
}

func newParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// metricNames returns the metric names an expression selects.
func metricNames(expr string) ([]string, error) {
	e, err := newParser().ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, selectorName(vs))
		}
		return nil
	})
	return out, nil
}

func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// checkQuery parses expr and checks it against the scrape: every metric
// exists; every label it matches or groups by is the metric's or a target
// label; every value it matches on a worker label exists (a typo in a
// value would select nothing, or, with !=, everything).
func checkQuery(expr string, reg map[string]map[string]map[string]bool) (problems []string) {
	e, err := newParser().ParseExpr(expr)
	if err != nil {
		return []string{"does not parse: " + err.Error()}
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch t := n.(type) {
		case *parser.VectorSelector:
			name := selectorName(t)
			if externalMetrics[name] {
				return nil
			}
			ls, ok := reg[name]
			if !ok {
				problems = append(problems, fmt.Sprintf("metric %q is not in the worker's scrape", name))
				return nil
			}
			for _, m := range t.LabelMatchers {
				if m.Name == labels.MetricName || targetLabels[m.Name] {
					continue
				}
				values, ok := ls[m.Name]
				if !ok {
					problems = append(problems, fmt.Sprintf("%s has no label %q", name, m.Name))
					continue
				}
				if !anyMatches(m, values) {
					problems = append(problems, fmt.Sprintf("%s{%s}: no scraped value of %s matches %q", name, m.String(), m.Name, m.Value))
				}
			}
		case *parser.AggregateExpr:
			if t.Without {
				return nil
			}
			known := map[string]bool{}
			parser.Inspect(t.Expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					for l := range reg[selectorName(vs)] {
						known[l] = true
					}
				}
				return nil
			})
			for _, g := range t.Grouping {
				if !targetLabels[g] && !known[g] {
					problems = append(problems, fmt.Sprintf("groups by %q, which no metric under it has", g))
				}
			}
		}
		return nil
	})
	sort.Strings(problems)
	return problems
}

// anyMatches reports whether the matcher's value is meaningful against the
// values scraped: an equality or a regexp must match one of them, and a
// negative matcher must name one of them (or it excludes nothing).
func anyMatches(m *labels.Matcher, values map[string]bool) bool {
	switch m.Type {
	case labels.MatchEqual, labels.MatchNotEqual:
		return values[m.Value]
	case labels.MatchRegexp, labels.MatchNotRegexp:
		for v := range values {
			if m.Matches(v) != (m.Type == labels.MatchNotRegexp) {
				return true
			}
		}
	}
	return false
}
