// Command deploycheck holds the checks of .ci/deploy-check that no
// off-the-shelf tool does: converting Kubernetes' OpenAPI and the CRDs of
// KEDA and the Prometheus Operator into kubeconform schemas, reading the
// rendered chart for what must agree with the worker (variables, ports,
// probes, identity, security), and parsing every PromQL expression of the
// chart and the dashboard with Prometheus's own parser against a real
// scrape of the worker.
//
// It is a module of its own so that the worker's go.mod does not carry
// Prometheus's server code.
package main

import (
	"fmt"
	"os"
)

const usage = `usage:
  deploycheck schemas -out DIR -kubernetes ZIP -crds ZIP:PREFIX... [-alias FROM=TO:KIND,...]
      write kubeconform schemas (<kind>-<group>-<version>.json) from the
      OpenAPI of a k8s.io/kubernetes module zip and the CRD files under PREFIX
      in other module zips; -alias copies kinds of a group under another
      group (azmonitoring.coreos.com ServiceMonitor and PodMonitor are the
      Prometheus Operator's under another name; no module ships them)
  deploycheck chart -worker-help FILE RENDERED.yaml...
      check rendered charts against the worker's settings (worker --help)
  deploycheck rules RENDERED.yaml
      print the rendered PrometheusRule's spec as a Prometheus rules file
  deploycheck keda-query RENDERED.yaml
      print the rendered ScaledObject's prometheus query
  deploycheck promql -scrape FILE RENDERED.yaml DASHBOARD.json
      parse every query of the rules, the ScaledObject and the dashboard and
      check that each metric, label and label value exists in the scrape
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "schemas":
		err = runSchemas(os.Args[2:])
	case "chart":
		err = runChart(os.Args[2:], os.Stdout)
	case "rules":
		err = runRules(os.Args[2:], os.Stdout)
	case "keda-query":
		err = runKEDAQuery(os.Args[2:], os.Stdout)
	case "promql":
		err = runPromQL(os.Args[2:], os.Stdout)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploycheck "+os.Args[1]+": "+err.Error())
		os.Exit(1)
	}
}
