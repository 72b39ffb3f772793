package main

import (
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const scrape = `# TYPE graphops_commands_total counter
graphops_commands_total{outcome="applied",type="resume"} 0
graphops_commands_total{outcome="dead_lettered",type="resume"} 0
# TYPE graphops_dead_letters_total counter
graphops_dead_letters_total{reason="retries_exhausted",type="resume"} 0
graphops_dead_letters_total{reason="graph_rejected",type="resume"} 0
# TYPE graphops_graph_requests_total counter
graphops_graph_requests_total{code="204",operation="resume"} 0
graphops_graph_requests_total{code="503",operation="resume"} 0
graphops_graph_requests_total{code="error",operation="resume"} 0
# TYPE graphops_command_duration_seconds histogram
graphops_command_duration_seconds_bucket{type="resume",le="1"} 0
graphops_command_duration_seconds_bucket{type="resume",le="+Inf"} 0
graphops_command_duration_seconds_sum{type="resume"} 0
graphops_command_duration_seconds_count{type="resume"} 0
# TYPE graphops_backlog_messages gauge
graphops_backlog_messages 0
`

func TestCheckQuery(t *testing.T) {
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(strings.NewReader(scrape))
	if err != nil {
		t.Fatal(err)
	}
	reg := seriesLabels(fams)
	tests := []struct {
		name, expr, want string // want "" means no problem
	}{
		{"a correct rate by labels", `sum by (namespace, type, reason) (rate(graphops_dead_letters_total{job="graphops-worker", reason!="retries_exhausted"}[5m]))`, ""},
		{"a histogram quantile", `histogram_quantile(0.99, sum by (le, type) (rate(graphops_command_duration_seconds_bucket{job="graphops-worker"}[5m])))`, ""},
		{"a regexp that matches scraped codes", `rate(graphops_graph_requests_total{code=~"5..|error"}[5m])`, ""},
		{"up is Prometheus's", `up{job="graphops-worker"} == 0`, ""},
		{"a typo in the metric", `graphops_backlog_message`, `metric "graphops_backlog_message" is not in the worker's scrape`},
		{"a label the metric lacks", `graphops_backlog_messages{type="resume"}`, `has no label "type"`},
		{"a value the worker never exports", `graphops_commands_total{outcome="applyed"}`, `no scraped value of outcome matches "applyed"`},
		{"a negative matcher on a typo excludes nothing", `graphops_dead_letters_total{reason!="retries_exausted"}`, `no scraped value of reason`},
		{"a regexp matching no code", `graphops_graph_requests_total{code=~"4.."}`, `no scraped value of code`},
		{"grouping by a label nothing has", `sum by (operation) (graphops_commands_total)`, `groups by "operation"`},
		{"a syntax error", `sum by (type) (rate(graphops_commands_total[5m])`, "does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := strings.Join(checkQuery(tt.expr, reg), "\n")
			if tt.want == "" && problems != "" {
				t.Errorf("problems %q, want none", problems)
			}
			if tt.want != "" && !strings.Contains(problems, tt.want) {
				t.Errorf("problems %q, want one saying %q", problems, tt.want)
			}
		})
	}
}

func TestDashboardQueriesReplaceGrafanasVariables(t *testing.T) {
	q, err := dashboardQueries([]byte(`{"panels":[{"title":"p","targets":[{"expr":"rate(x{namespace=~\"$namespace\"}[$__rate_interval])"}]}],
		"templating":{"list":[{"name":"namespace","query":{"query":"label_values(y{job=\"j\"}, namespace)"}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q[0].expr != `rate(x{namespace=~".*"}[5m])` || q[1].expr != `y{job="j"}` {
		t.Errorf("queries %+v", q)
	}
}
