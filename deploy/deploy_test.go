// Tests that the Kubernetes manifests, alerts, autoscaler and dashboard in
// this directory agree with the code: metric names, labels and label values
// against metrics.New()'s registry, environment variables against SPEC §5,
// probes against the admin server, and the manifests against each other.
//
// The manifests are read by manifests_test.go, the PromQL by promql_test.go;
// the dashboard is JSON.
package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/metrics"
)

func TestKustomizationAppliesEveryManifest(t *testing.T) {
	k := one(t, manifests(t), "Kustomization")
	res := path(t, k, "resources")
	var listed []string
	for _, l := range res {
		listed = append(listed, unquote(strings.TrimPrefix(strings.TrimSpace(l), "- ")))
	}
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if f != "kustomization.yaml" && !slices.Contains(listed, f) {
			t.Errorf("%s is not in kustomization.yaml's resources: kubectl apply -k would skip it", f)
		}
	}
	for _, f := range listed {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", f, err)
		}
	}
	if gen, ok := block(k.lines, "configMapGenerator"); !ok || !strings.Contains(strings.Join(gen, "\n"), "- grafana-dashboard.json") {
		t.Errorf("kustomization.yaml does not ship grafana-dashboard.json")
	}
}

func TestEveryQueriedMetricExistsWithItsLabelsAndValues(t *testing.T) {
	m := manifests(t)
	reg := registry(t)
	job, _ := scalar(path(t, one(t, m, "Service"), "metadata"), "name")

	t.Run("the alerts", func(t *testing.T) {
		rule := one(t, m, "PrometheusRule")
		alerts := scalars(rule.lines, "alert")
		exprs := scalars(rule.lines, "expr")
		if len(alerts) == 0 || len(alerts) != len(exprs) {
			t.Fatalf("%d alerts with %d expressions", len(alerts), len(exprs))
		}
		for i, e := range exprs {
			for _, p := range checkPromQL(e, reg, job) {
				t.Errorf("alert %s: %s", alerts[i], p)
			}
		}
	})
	t.Run("the autoscaler query", func(t *testing.T) {
		q := scalars(one(t, m, "ScaledObject").lines, "query")
		if len(q) != 1 {
			t.Fatalf("%d queries, want 1", len(q))
		}
		for _, p := range checkPromQL(q[0], reg, job) {
			t.Errorf("ScaledObject query: %s", p)
		}
	})
	t.Run("the dashboard", func(t *testing.T) {
		exprs, variables := dashboardQueries(t)
		for where, e := range exprs {
			for _, p := range checkPromQL(e, reg, job) {
				t.Errorf("%s: %s", where, p)
			}
		}
		for where, q := range variables {
			for _, name := range regexp.MustCompile(`graphops_[a-z_]+`).FindAllString(q, -1) {
				if _, ok := reg[name]; !ok {
					t.Errorf("%s: metric %s does not exist", where, name)
				}
			}
		}
	})
}

// dashboardQueries returns the panel queries ("panel title/refId" → expr)
// and the template variable queries.
func dashboardQueries(t *testing.T) (exprs, variables map[string]string) {
	t.Helper()
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Title      string  `json:"title"`
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard without title or uid")
	}
	exprs, variables = map[string]string{}, map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q/%s has an empty query", p.Title, tg.RefID)
				}
				exprs["panel "+p.Title+"/"+tg.RefID] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			variables["variable "+v.Name] = v.Definition
		}
	}
	return exprs, variables
}

func TestDashboardShowsWhatAnOperatorAsks(t *testing.T) {
	exprs, _ := dashboardQueries(t)
	all := ""
	for _, e := range exprs {
		all += e + "\n"
	}
	tests := []struct {
		name string
		want *regexp.Regexp
	}{
		{"commands/s by outcome", regexp.MustCompile(`sum by \(outcome\) \(rate\(graphops_commands_total`)},
		{"dead letters by reason", regexp.MustCompile(`sum by \(reason[^)]*\) \(rate\(graphops_dead_letters_total`)},
		{"Graph requests by code", regexp.MustCompile(`sum by \([^)]*code[^)]*\) \(rate\(graphops_graph_requests_total`)},
		{"p50 command latency", regexp.MustCompile(`histogram_quantile\(0\.5, [^\n]*graphops_command_duration_seconds_bucket`)},
		{"p99 command latency", regexp.MustCompile(`histogram_quantile\(0\.99, [^\n]*graphops_command_duration_seconds_bucket`)},
		{"p50 Graph latency", regexp.MustCompile(`histogram_quantile\(0\.5, [^\n]*graphops_graph_request_duration_seconds_bucket`)},
		{"p99 Graph latency", regexp.MustCompile(`histogram_quantile\(0\.99, [^\n]*graphops_graph_request_duration_seconds_bucket`)},
		{"in flight", regexp.MustCompile(`graphops_in_flight`)},
		{"throttled", regexp.MustCompile(`rate\(graphops_graph_throttled_total`)},
		{"pacer rate", regexp.MustCompile(`graphops_pacer_rate`)},
		{"throttled until", regexp.MustCompile(`graphops_throttled_until_seconds`)},
	}
	for _, tt := range tests {
		t.Run("the dashboard shows "+tt.name, func(t *testing.T) {
			if !tt.want.MatchString(all) {
				t.Errorf("no panel query matches %s", tt.want)
			}
		})
	}
	t.Run("every histogram quantile keeps le in its aggregation", func(t *testing.T) {
		for where, e := range exprs {
			if strings.Contains(e, "histogram_quantile") && !regexp.MustCompile(`by \(le[,)]`).MatchString(e) {
				t.Errorf("%s: %q aggregates away le", where, e)
			}
		}
	})
}

// specVariables are the environment variables the worker reads (SPEC §1, §3,
// §5). A ConfigMap key outside this list configures nothing.
var specVariables = []string{
	"WORKER_SOURCE", "NATS_URL", "WORKER_DATA_DIR",
	"SERVICEBUS_NAMESPACE", "SERVICEBUS_CONNECTION_STRING", "SERVICEBUS_QUEUE",
	"SERVICEBUS_TOPIC", "SERVICEBUS_SUBSCRIPTION",
	"GRAPH_BASE_URL", "GRAPH_TIMEOUT", "GRAPH_TOKEN", "GRAPH_ROLE_REQUEST_UPDATE",
	"WORKER_CONCURRENCY", "RETRY_MAX_ELAPSED", "RETRY_HANDBACK_AFTER", "SHUTDOWN_GRACE",
	"WORKER_DRY_RUN", "ADMIN_ADDR", "LOG_LEVEL",
}

func configData(t *testing.T, m map[string][]doc) map[string]string {
	t.Helper()
	return mapping(path(t, one(t, m, "ConfigMap"), "data"))
}

func TestConfigMapSetsOnlyVariablesTheWorkerReads(t *testing.T) {
	data := configData(t, manifests(t))
	for k := range data {
		if !slices.Contains(specVariables, k) {
			t.Errorf("ConfigMap key %s is not a variable of SPEC §5", k)
		}
	}
	for _, k := range []string{"WORKER_SOURCE", "NATS_URL", "GRAPH_BASE_URL", "GRAPH_TIMEOUT", "WORKER_CONCURRENCY",
		"RETRY_MAX_ELAPSED", "RETRY_HANDBACK_AFTER", "SHUTDOWN_GRACE", "ADMIN_ADDR", "LOG_LEVEL"} {
		if _, ok := data[k]; !ok {
			t.Errorf("ConfigMap does not set %s", k)
		}
	}
	tests := []struct {
		name string
		ok   func() bool
	}{
		{"no secret sits in a ConfigMap", func() bool {
			_, tok := data["GRAPH_TOKEN"]
			_, cs := data["SERVICEBUS_CONNECTION_STRING"]
			return !tok && !cs
		}},
		{"the source is one the worker knows", func() bool {
			return data["WORKER_SOURCE"] == "nats" || data["WORKER_SOURCE"] == "servicebus"
		}},
		{"NATS_URL names a shared server, not an embedded one per pod", func() bool {
			return data["WORKER_SOURCE"] != "nats" || strings.HasPrefix(data["NATS_URL"], "nats://") || strings.HasPrefix(data["NATS_URL"], "tls://")
		}},
		{"the Graph base URL is HTTPS", func() bool { return strings.HasPrefix(data["GRAPH_BASE_URL"], "https://") }},
		{"the concurrency is a positive number", func() bool {
			n, err := strconv.Atoi(data["WORKER_CONCURRENCY"])
			return err == nil && n > 0
		}},
		{"the log level is one slog knows", func() bool {
			return slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(data["LOG_LEVEL"]))
		}},
	}
	for _, k := range []string{"GRAPH_TIMEOUT", "RETRY_MAX_ELAPSED", "RETRY_HANDBACK_AFTER", "SHUTDOWN_GRACE"} {
		tests = append(tests, struct {
			name string
			ok   func() bool
		}{k + " is a Go duration", func() bool {
			d, err := time.ParseDuration(data[k])
			return err == nil && d > 0
		}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok() {
				t.Errorf("ConfigMap: %v", data)
			}
		})
	}
}

func TestShutdownGraceEndsBeforeTheKubeletKills(t *testing.T) {
	m := manifests(t)
	grace, err := time.ParseDuration(configData(t, m)["SHUTDOWN_GRACE"])
	if err != nil {
		t.Fatalf("SHUTDOWN_GRACE: %v", err)
	}
	v, ok := scalar(path(t, one(t, m, "Deployment"), "spec", "template", "spec"), "terminationGracePeriodSeconds")
	if !ok {
		t.Fatal("no terminationGracePeriodSeconds: the default 30s is too close to SHUTDOWN_GRACE")
	}
	secs, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("terminationGracePeriodSeconds %q: %v", v, err)
	}
	if margin := time.Duration(secs)*time.Second - grace; margin < 5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %ds leaves %v after SHUTDOWN_GRACE %v; want at least 5s to exit", secs, margin, grace)
	}
}

// container returns the worker container's lines.
func container(t *testing.T, d doc) []string {
	t.Helper()
	cs := path(t, d, "spec", "template", "spec", "containers")
	if n := len(scalars(cs, "image")); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return cs
}

func TestProbesReachTheAdminServer(t *testing.T) {
	m := manifests(t)
	c := container(t, one(t, m, "Deployment"))

	ports, _ := block(c, "ports")
	portName, _ := scalar(ports, "name")
	portNum, _ := scalar(ports, "containerPort")
	if portName != "admin" {
		t.Errorf("container port named %q, want admin", portName)
	}
	_, adminPort, err := net.SplitHostPort(configData(t, m)["ADMIN_ADDR"])
	if err != nil {
		t.Fatalf("ADMIN_ADDR: %v", err)
	}
	if portNum != adminPort {
		t.Errorf("containerPort %s, but ADMIN_ADDR listens on %s", portNum, adminPort)
	}

	// Serve the real admin server with a failing readiness check: the
	// liveness path must answer 200 anyway, the readiness path 503.
	admin := metrics.NewAdmin(metrics.AdminConfig{Addr: "127.0.0.1:0", Ready: func() error { return errors.New("draining") }}, metrics.New(), nil)
	if err := admin.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = admin.Shutdown(ctx)
	})

	tests := []struct {
		probe string
		want  int
	}{
		{"livenessProbe", http.StatusOK},
		{"readinessProbe", http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run("the "+tt.probe+" answers "+strconv.Itoa(tt.want)+" while the worker drains", func(t *testing.T) {
			probe, ok := block(c, tt.probe)
			if !ok {
				t.Fatalf("no %s", tt.probe)
			}
			p, _ := scalar(probe, "path")
			port, _ := scalar(probe, "port")
			if port != portName && port != portNum {
				t.Errorf("%s probes port %q, not the admin port", tt.probe, port)
			}
			resp, err := http.Get("http://" + admin.Addr() + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s = %d, want %d", p, resp.StatusCode, tt.want)
			}
		})
	}
}

func TestPodsRunAsTheWorkloadIdentity(t *testing.T) {
	m := manifests(t)
	sa := one(t, m, "ServiceAccount")
	saName, _ := scalar(path(t, sa, "metadata"), "name")
	ann := mapping(path(t, sa, "metadata", "annotations"))
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(ann["azure.workload.identity/client-id"]) {
		t.Errorf("ServiceAccount annotation azure.workload.identity/client-id = %q, want a client id", ann["azure.workload.identity/client-id"])
	}
	dep := one(t, m, "Deployment")
	podLabels := mapping(path(t, dep, "spec", "template", "metadata", "labels"))
	if podLabels["azure.workload.identity/use"] != "true" {
		t.Errorf("pod label azure.workload.identity/use = %q, want \"true\"", podLabels["azure.workload.identity/use"])
	}
	if got, _ := scalar(path(t, dep, "spec", "template", "spec"), "serviceAccountName"); got != saName {
		t.Errorf("serviceAccountName %q, want %q", got, saName)
	}
	cmName, _ := scalar(path(t, one(t, m, "ConfigMap"), "metadata"), "name")
	ref, ok := block(container(t, dep), "configMapRef")
	if got, _ := scalar(ref, "name"); !ok || got != cmName {
		t.Errorf("envFrom configMapRef %q, want the ConfigMap %q", got, cmName)
	}
}

func TestTheContainerIsLockedDown(t *testing.T) {
	dep := one(t, manifests(t), "Deployment")
	c := container(t, dep)
	sc := mapping(path(t, dep, "spec", "template", "spec", "securityContext"))
	csc, ok := block(c, "securityContext")
	if !ok {
		t.Fatal("the container has no securityContext")
	}
	got := mapping(csc)
	for k, want := range map[string]string{"allowPrivilegeEscalation": "false", "readOnlyRootFilesystem": "true", "runAsNonRoot": "true"} {
		if got[k] != want {
			t.Errorf("container securityContext.%s = %q, want %s", k, got[k], want)
		}
	}
	if sc["runAsNonRoot"] != "true" {
		t.Errorf("pod securityContext.runAsNonRoot = %q, want true", sc["runAsNonRoot"])
	}
	if drop, _ := scalar(csc, "drop"); drop != `["ALL"]` {
		t.Errorf("capabilities.drop = %s, want [\"ALL\"]", drop)
	}
	for _, lines := range [][]string{csc, path(t, dep, "spec", "template", "spec", "securityContext")} {
		if typ, _ := scalar(lines, "type"); typ != "RuntimeDefault" {
			t.Errorf("seccompProfile.type = %q, want RuntimeDefault", typ)
		}
	}
	res, ok := block(c, "resources")
	if !ok {
		t.Fatal("no resources")
	}
	for _, k := range []string{"requests", "limits"} {
		b, ok := block(res, k)
		if mb := mapping(b); !ok || mb["memory"] == "" {
			t.Errorf("resources.%s.memory is not set", k)
		}
	}
}

func TestScrapesAndSelectorsMatchThePods(t *testing.T) {
	m := manifests(t)
	dep := one(t, m, "Deployment")
	podLabels := mapping(path(t, dep, "spec", "template", "metadata", "labels"))
	depName, _ := scalar(path(t, dep, "metadata"), "name")

	selects := func(what string, sel map[string]string) {
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not carry", what, k, v)
			}
		}
	}
	selects("the Deployment", mapping(path(t, dep, "spec", "selector", "matchLabels")))
	selects("the PodDisruptionBudget", mapping(path(t, one(t, m, "PodDisruptionBudget"), "spec", "selector", "matchLabels")))
	svc := one(t, m, "Service")
	selects("the Service", mapping(path(t, svc, "spec", "selector")))
	if v, _ := scalar(path(t, svc, "spec"), "publishNotReadyAddresses"); v != "true" {
		t.Errorf("the Service drops unready pods from scraping (publishNotReadyAddresses %q)", v)
	}

	svcPorts := path(t, svc, "spec", "ports")
	svcPortName, _ := scalar(svcPorts, "name")
	if tp, _ := scalar(svcPorts, "targetPort"); tp != "admin" {
		t.Errorf("Service targetPort %q, want the container's admin port", tp)
	}
	sm := one(t, m, "ServiceMonitor")
	svcLabels := mapping(path(t, svc, "metadata", "labels"))
	for k, v := range mapping(path(t, sm, "spec", "selector", "matchLabels")) {
		if svcLabels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the Service does not carry", k, v)
		}
	}
	ep := path(t, sm, "spec", "endpoints")
	if p, _ := scalar(ep, "port"); p != svcPortName {
		t.Errorf("ServiceMonitor scrapes port %q, the Service's port is %q", p, svcPortName)
	}
	if p, _ := scalar(ep, "path"); p != "/metrics" {
		t.Errorf("ServiceMonitor scrapes %q, want /metrics", p)
	}
	if r, _ := scalar(path(t, dep, "spec"), "replicas"); r != "3" {
		t.Errorf("replicas %s, want 3", r)
	}

	so := one(t, m, "ScaledObject")
	if got, _ := scalar(path(t, so, "spec", "scaleTargetRef"), "name"); got != depName {
		t.Errorf("the ScaledObject scales %q, not the Deployment %q", got, depName)
	}
}

func TestTheAutoscalerHoldsScaleOutWhileThrottled(t *testing.T) {
	so := one(t, manifests(t), "ScaledObject")
	triggers := path(t, so, "spec", "triggers")
	types := scalars(triggers, "type")
	// KEDA's HPA takes the largest count any trigger asks for: a second
	// trigger (nats-jetstream) would scale out through a throttle.
	if !slices.Equal(types, []string{"prometheus"}) {
		t.Fatalf("trigger types %v, want exactly one prometheus trigger", types)
	}
	if mt, _ := scalar(triggers, "metricType"); mt != "AverageValue" {
		t.Errorf("metricType %q, want AverageValue (replicas = value / threshold)", mt)
	}
	threshold, _ := scalar(triggers, "threshold")
	query, _ := scalar(triggers, "query")
	if !strings.Contains(query, "graphops_throttled_until_seconds") {
		t.Errorf("the query ignores throttling: %s", query)
	}
	if !strings.Contains(query, "jetstream_consumer_num_pending") || !strings.Contains(query, `consumer_name="graphops-worker"`) || !strings.Contains(query, `stream_name="GRAPHOPS"`) {
		t.Errorf("the query does not read the graphops-worker consumer's backlog on GRAPHOPS: %s", query)
	}
	// While throttled the query answers pods × N: N must be the threshold
	// for the HPA to keep the current count.
	mul := regexp.MustCompile(`\*\s*([0-9.]+)\s*\)?\s*$`).FindStringSubmatch(strings.TrimSpace(query))
	switch {
	case mul == nil:
		t.Errorf("the query does not end in the hold branch (pods × threshold): %s", query)
	case mul[1] != threshold:
		t.Errorf("the hold branch multiplies by %s, the threshold is %s", mul[1], threshold)
	}
	spec := mapping(path(t, so, "spec"))
	lo, err1 := strconv.Atoi(spec["minReplicaCount"])
	hi, err2 := strconv.Atoi(spec["maxReplicaCount"])
	if err1 != nil || err2 != nil || lo < 2 || hi < lo {
		t.Errorf("minReplicaCount %q, maxReplicaCount %q: want 2 ≤ min ≤ max", spec["minReplicaCount"], spec["maxReplicaCount"])
	}
}

func TestAlertsCoverTheFailuresThatMatter(t *testing.T) {
	rule := one(t, manifests(t), "PrometheusRule")
	rules := path(t, rule, "spec", "groups", "rules")
	// Split the rules list into one chunk per alert.
	var chunks [][]string
	for _, l := range rules {
		if _, _, ok := keyAt(l, "alert"); ok && strings.HasPrefix(strings.TrimSpace(l), "- ") {
			chunks = append(chunks, nil)
		}
		if len(chunks) > 0 {
			chunks[len(chunks)-1] = append(chunks[len(chunks)-1], l)
		}
	}
	find := func(re string) (expr, forDur string, ok bool) {
		for _, c := range chunks {
			e, _ := scalar(c, "expr")
			if regexp.MustCompile(re).MatchString(e) {
				f, _ := scalar(c, "for")
				return e, f, true
			}
		}
		return "", "", false
	}
	tests := []struct {
		name   string
		expr   string
		minFor time.Duration
	}{
		{"dead letters", `rate\(graphops_dead_letters_total\{[^}]*reason!="retries_exhausted"`, 0},
		{"retries exhausted", `graphops_dead_letters_total\{[^}]*reason="retries_exhausted"`, 0},
		{"a throttle lasting 10 minutes", `(?s)graphops_throttled_until_seconds.*> 0`, 10 * time.Minute},
		{"commands stuck in flight", `graphops_in_flight`, 10 * time.Minute},
		{"a worker not ready", `graphops_ready[^\n]*== 0`, time.Minute},
		{"a worker that cannot be scraped", `up\{[^}]*\} == 0`, time.Minute},
	}
	for _, tt := range tests {
		t.Run("an alert fires on "+tt.name, func(t *testing.T) {
			_, f, ok := find(tt.expr)
			if !ok {
				t.Fatalf("no alert expression matches %s", tt.expr)
			}
			if tt.minFor > 0 {
				d, err := time.ParseDuration(f)
				if err != nil || d < tt.minFor {
					t.Errorf("for: %q, want at least %v", f, tt.minFor)
				}
			}
		})
	}
	for i, c := range chunks {
		if sev := mapping(path(t, doc{file: rule.file, lines: c}, "labels"))["severity"]; sev != "warning" && sev != "critical" {
			t.Errorf("alert %d has severity %q", i, sev)
		}
	}
}
