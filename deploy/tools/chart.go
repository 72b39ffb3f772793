package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// notSettable are the worker's variables the chart deliberately does not
// offer: a static Graph token is for development only (and a secret), and
// the embedded NATS server's data directory is refused in a cluster
// (nats.url is required).
var notSettable = map[string]string{
	"GRAPH_TOKEN":     "development only",
	"WORKER_DATA_DIR": "the embedded NATS server is not for clusters",
}

// secretVariables must come from a Secret, never a ConfigMap or a literal.
var secretVariables = []string{"GRAPH_TOKEN", "SERVICEBUS_CONNECTION_STRING", "REDIS_PASSWORD"}

func runChart(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("chart", flag.ContinueOnError)
	helpFile := fs.String("worker-help", "", "output of worker --help")
	schemaFile := fs.String("schema", "", "the chart's values.schema.json")
	dockerfile := fs.String("dockerfile", "", "the Dockerfile the image is built from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *helpFile == "" || *schemaFile == "" || *dockerfile == "" || fs.NArg() == 0 {
		return errors.New("want -worker-help, -schema, -dockerfile and rendered files")
	}
	help, err := os.ReadFile(*helpFile)
	if err != nil {
		return err
	}
	vars := workerVariables(string(help))
	if len(vars) < 10 {
		return fmt.Errorf("%s: found only %d variables; is it worker --help?", *helpFile, len(vars))
	}
	df, err := os.ReadFile(*dockerfile)
	if err != nil {
		return err
	}
	docker, err := readDockerfile(string(df))
	if err != nil {
		return err
	}
	schemaKeys, err := schemaConfigKeys(*schemaFile)
	if err != nil {
		return err
	}

	var problems []string
	settable := map[string]bool{}
	for k := range schemaKeys {
		settable[k] = true
		if !vars[k] {
			problems = append(problems, fmt.Sprintf("values.schema.json: config.%s is not a variable of the worker", k))
		}
	}
	for _, f := range fs.Args() {
		objs, err := readRendered(f)
		if err != nil {
			return err
		}
		env, p := checkChart(objs, vars, docker)
		for _, x := range p {
			problems = append(problems, f+": "+x)
		}
		for k := range env {
			settable[k] = true
		}
	}
	for v := range vars {
		if !settable[v] && notSettable[v] == "" {
			problems = append(problems, fmt.Sprintf("the worker's %s cannot be set through the chart (add it to values.schema.json config or give it a value)", v))
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n  "))
	}
	fmt.Fprintf(w, "deploycheck chart: %d rendered files agree with the worker (%d variables) and the Dockerfile\n", fs.NArg(), len(vars))
	return nil
}

// workerVariables reads the variable names of `worker --help` (config.Usage:
// "  NAME   --flag   default …").
func workerVariables(help string) map[string]bool {
	re := regexp.MustCompile(`^  ([A-Z][A-Z0-9_]+)\s+--[a-z0-9-]+\s`)
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = true
		}
	}
	return out
}

func schemaConfigKeys(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s struct {
		Properties struct {
			Config struct {
				Properties map[string]any `json:"properties"`
			} `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]bool{}
	for k := range s.Properties.Config.Properties {
		out[k] = true
	}
	return out, nil
}

// dockerFacts are what the chart assumes of the image.
type dockerFacts struct {
	base       string   // the last FROM
	user       string   // USER
	entrypoint []string // ENTRYPOINT (exec form)
	expose     []string
}

func readDockerfile(s string) (dockerFacts, error) {
	var d dockerFacts
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			d.base, d.user, d.entrypoint, d.expose = f[1], "", nil, nil // a new stage starts afresh
		case "USER":
			d.user = f[1]
		case "EXPOSE":
			d.expose = append(d.expose, f[1:]...)
		case "ENTRYPOINT":
			rest := strings.TrimSpace(strings.TrimPrefix(sc.Text(), f[0]))
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				return d, fmt.Errorf("Dockerfile: ENTRYPOINT must be in exec form: %w", err)
			}
		}
	}
	if d.base == "" {
		return d, errors.New("Dockerfile: no FROM")
	}
	return d, nil
}

// checkChart checks one rendered install. It returns the variables the
// install sets and what is wrong.
func checkChart(objs []object, vars map[string]bool, docker dockerFacts) (env map[string]bool, problems []string) {
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	env = map[string]bool{}
	deps := byKind(objs, "Deployment")
	if len(deps) != 1 {
		bad("want one Deployment, got %d", len(deps))
		return env, problems
	}
	dep := deps[0]
	pod := object(asMap(dep.get("spec", "template")))
	podLabels := pod.strMap("metadata", "labels")
	ctr := object(asMap(dep.get("spec", "template", "spec", "containers", 0)))

	// Settings: the ConfigMap the container reads, and its env.
	cmName := ctr.str("envFrom", 0, "configMapRef", "name")
	var settings map[string]string
	for _, cm := range byKind(objs, "ConfigMap") {
		if cm.name() == cmName {
			settings = cm.strMap("data")
		}
	}
	if settings == nil {
		bad("the container reads ConfigMap %q, which the chart does not render", cmName)
		settings = map[string]string{}
	}
	for k := range settings {
		env[k] = true
		if !vars[k] {
			bad("ConfigMap sets %s, which the worker does not read", k)
		}
	}
	for _, s := range secretVariables {
		if _, ok := settings[s]; ok {
			bad("ConfigMap holds the secret %s", s)
		}
	}
	envList, _ := ctr.get("env").([]any)
	hasGOMEMLIMIT := false
	for _, e := range envList {
		eo := object(asMap(e))
		name := eo.str("name")
		if name == "GOMEMLIMIT" {
			hasGOMEMLIMIT = true
			if !regexp.MustCompile(`^[0-9]+MiB$`).MatchString(eo.str("value")) {
				bad("GOMEMLIMIT %q is not a size in MiB", eo.str("value"))
			}
			continue
		}
		env[name] = true
		if !vars[name] {
			bad("the container sets %s, which the worker does not read", name)
		}
		for _, s := range secretVariables {
			if name == s && eo.get("valueFrom", "secretKeyRef") == nil {
				bad("%s must come from a Secret (secretKeyRef), not a literal", s)
			}
		}
	}
	if !hasGOMEMLIMIT {
		bad("GOMEMLIMIT is not set")
	}

	// Admin port, probes and shutdown.
	adminPort := 0
	for _, p := range asList(ctr.get("ports")) {
		po := object(asMap(p))
		if po.str("name") == "admin" {
			adminPort = asInt(po.get("containerPort"))
		}
	}
	if _, port, err := net.SplitHostPort(settings["ADMIN_ADDR"]); err != nil || port != strconv.Itoa(adminPort) {
		bad("ADMIN_ADDR %q does not listen on the container port named admin (%d)", settings["ADMIN_ADDR"], adminPort)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := ctr.str(probe, "httpGet", "path"); got != path {
			bad("%s path %q, want %s", probe, got, path)
		}
		if got := fmt.Sprint(ctr.get(probe, "httpGet", "port")); got != "admin" {
			bad("%s port %q, want admin", probe, got)
		}
	}
	grace, err := time.ParseDuration(settings["SHUTDOWN_GRACE"])
	if err != nil {
		bad("SHUTDOWN_GRACE %q: %v", settings["SHUTDOWN_GRACE"], err)
	}
	if tg := asInt(pod.get("spec", "terminationGracePeriodSeconds")); time.Duration(tg)*time.Second <= grace {
		bad("terminationGracePeriodSeconds %d does not exceed SHUTDOWN_GRACE %s: the kubelet would kill pods mid-drain", tg, grace)
	}
	if r := dep.get("spec", "replicas"); r != nil && asInt(r) < 2 {
		bad("replicas %v: at least 2", r)
	}
	if settings["WORKER_SOURCE"] == "nats" && settings["NATS_URL"] == "" {
		bad("NATS_URL is empty: every pod would run an embedded NATS server")
	}

	// Image and the Dockerfile.
	img := ctr.str("image")
	if !strings.Contains(img, "@sha256:") && (!strings.Contains(img[strings.LastIndex(img, "/")+1:], ":") || strings.HasSuffix(img, ":latest")) {
		bad("image %q is neither pinned by tag nor by digest", img)
	}
	if ctr.get("command") != nil {
		bad("the container overrides the image's entrypoint")
	}
	if args := fmt.Sprint(ctr.get("args")); args != "[run]" {
		bad("args %s, want [run]", args)
	}
	if fmt.Sprint(docker.entrypoint) != "[/worker]" {
		bad("Dockerfile ENTRYPOINT %v, the chart assumes [/worker]", docker.entrypoint)
	}
	if !strings.Contains(docker.base, "distroless/static") || !strings.HasSuffix(strings.Split(docker.base, "@")[0], ":nonroot") {
		bad("Dockerfile final base %q is not distroless static nonroot", docker.base)
	}
	uid, _, _ := strings.Cut(docker.user, ":")
	if podUser := fmt.Sprint(pod.get("spec", "securityContext", "runAsUser")); podUser != uid {
		bad("pod runAsUser %s, Dockerfile USER %s", podUser, docker.user)
	}
	if len(docker.expose) != 1 || docker.expose[0] != strconv.Itoa(adminPort) {
		bad("Dockerfile EXPOSE %v, the admin port is %d", docker.expose, adminPort)
	}

	// Security.
	want := map[string]any{
		"pod runAsNonRoot":                   pod.get("spec", "securityContext", "runAsNonRoot"),
		"pod seccompProfile":                 pod.get("spec", "securityContext", "seccompProfile", "type"),
		"container readOnlyRootFilesystem":   ctr.get("securityContext", "readOnlyRootFilesystem"),
		"container allowPrivilegeEscalation": ctr.get("securityContext", "allowPrivilegeEscalation"),
		"container runAsNonRoot":             ctr.get("securityContext", "runAsNonRoot"),
		"container drops":                    fmt.Sprint(ctr.get("securityContext", "capabilities", "drop")),
		"nodeSelector kubernetes.io/os":      pod.get("spec", "nodeSelector", "kubernetes.io/os"),
	}
	expect := map[string]any{
		"pod runAsNonRoot": true, "pod seccompProfile": "RuntimeDefault", "container readOnlyRootFilesystem": true,
		"container allowPrivilegeEscalation": false, "container runAsNonRoot": true, "container drops": "[ALL]",
		"nodeSelector kubernetes.io/os": "linux",
	}
	for k, v := range expect {
		if want[k] != v {
			bad("%s is %v, want %v", k, want[k], v)
		}
	}
	for _, r := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			if ctr.get("resources", r, res) == nil {
				bad("resources.%s.%s missing", r, res)
			}
		}
	}
	keys := map[string]bool{}
	for _, t := range asList(pod.get("spec", "topologySpreadConstraints")) {
		to := object(asMap(t))
		keys[to.str("topologyKey")] = true
		if !subset(to.strMap("labelSelector", "matchLabels"), podLabels) {
			bad("a topology spread constraint does not select the pods")
		}
	}
	if !keys["topology.kubernetes.io/zone"] || !keys["kubernetes.io/hostname"] {
		bad("pods are not spread across zones and nodes: %v", keys)
	}

	// Identity.
	if podLabels["azure.workload.identity/use"] != "true" {
		bad("pods lack the label azure.workload.identity/use: \"true\"")
	}
	saName := pod.str("spec", "serviceAccountName")
	found := false
	for _, sa := range byKind(objs, "ServiceAccount") {
		if sa.name() == saName {
			found = true
			if sa.str("metadata", "annotations", "azure.workload.identity/client-id") == "" {
				bad("ServiceAccount %s has no azure.workload.identity/client-id", saName)
			}
		}
	}
	if !found {
		bad("the pods run as ServiceAccount %q, which the chart does not render", saName)
	}

	// What selects the pods.
	for _, svc := range byKind(objs, "Service") {
		if !subset(svc.strMap("spec", "selector"), podLabels) {
			bad("Service %s does not select the pods", svc.name())
		}
		for _, sm := range byKind(objs, "ServiceMonitor") {
			svcLabels := svc.strMap("metadata", "labels")
			if !subset(sm.strMap("spec", "selector", "matchLabels"), svcLabels) {
				bad("ServiceMonitor %s does not select Service %s", sm.name(), svc.name())
			}
			if job := svcLabels[sm.str("spec", "jobLabel")]; job != "graphops-worker" {
				bad("ServiceMonitor's job label would be %q; alerts, dashboard and autoscaler select job=\"graphops-worker\"", job)
			}
			for _, e := range asList(sm.get("spec", "endpoints")) {
				eo := object(asMap(e))
				if eo.str("port") != "admin" || eo.str("path") != "/metrics" {
					bad("ServiceMonitor scrapes port %q path %q, want admin /metrics", eo.str("port"), eo.str("path"))
				}
			}
		}
	}
	for _, pdb := range byKind(objs, "PodDisruptionBudget") {
		if !subset(pdb.strMap("spec", "selector", "matchLabels"), podLabels) {
			bad("PodDisruptionBudget does not select the pods")
		}
	}
	for _, np := range byKind(objs, "NetworkPolicy") {
		if !subset(np.strMap("spec", "podSelector", "matchLabels"), podLabels) {
			bad("NetworkPolicy does not select the pods")
		}
		for _, in := range asList(np.get("spec", "ingress")) {
			for _, p := range asList(object(asMap(in)).get("ports")) {
				if asInt(object(asMap(p)).get("port")) != adminPort {
					bad("NetworkPolicy lets in port %v, not only the admin port %d", object(asMap(p)).get("port"), adminPort)
				}
			}
		}
	}
	for _, so := range byKind(objs, "ScaledObject") {
		if so.str("spec", "scaleTargetRef", "name") != dep.name() {
			bad("ScaledObject scales %q, not the Deployment %q", so.str("spec", "scaleTargetRef", "name"), dep.name())
		}
		if dep.get("spec", "replicas") != nil {
			bad("with a ScaledObject the Deployment must not set replicas (each upgrade would reset the count)")
		}
		if asInt(so.get("spec", "minReplicaCount")) < 2 {
			bad("ScaledObject minReplicaCount below 2")
		}
		for _, t := range asList(so.get("spec", "triggers")) {
			to := object(asMap(t))
			if to.str("type") != "prometheus" {
				continue
			}
			threshold := to.str("metadata", "threshold")
			if !strings.Contains(to.str("metadata", "query"), "* "+threshold+"\n") {
				bad("the hold branch of the query must multiply by the threshold %s", threshold)
			}
		}
	}
	return env, problems
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asList(v any) []any         { l, _ := v.([]any); return l }

func asInt(v any) int {
	switch t := v.(type) {
	case float64:
		return int(t)
	case int:
		return t
	case int64:
		return int(t)
	case string:
		n, _ := strconv.Atoi(t)
		return n
	}
	return 0
}
