package main

import (
	"os"
	"strings"
	"testing"
)

func loadFixture(t *testing.T) ([]object, map[string]bool, dockerFacts) {
	t.Helper()
	objs, err := readRendered("testdata/render-default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	help, err := os.ReadFile("testdata/worker-help.txt")
	if err != nil {
		t.Fatal(err)
	}
	docker, err := readDockerfile("FROM golang:1.26 AS build\nUSER root\nFROM gcr.io/distroless/static-debian12:nonroot\nUSER 65532:65532\nEXPOSE 9464\nENTRYPOINT [\"/worker\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	return objs, workerVariables(string(help)), docker
}

// find returns the first object of kind.
func find(objs []object, kind string) object { return byKind(objs, kind)[0] }

func container(objs []object) map[string]any {
	return asMap(find(objs, "Deployment").get("spec", "template", "spec", "containers", 0))
}

func TestCheckChartAcceptsTheRenderedChart(t *testing.T) {
	objs, vars, docker := loadFixture(t)
	if len(vars) < 30 {
		t.Fatalf("read %d variables from worker --help", len(vars))
	}
	env, problems := checkChart(objs, vars, docker)
	if len(problems) > 0 {
		t.Errorf("problems in the chart as rendered: %v", problems)
	}
	for _, v := range []string{"WORKER_SOURCE", "NATS_URL", "ADMIN_ADDR", "SHUTDOWN_GRACE"} {
		if !env[v] {
			t.Errorf("the render sets %s, checkChart did not see it", v)
		}
	}
}

func TestCheckChartFindsWhatIsWrong(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(objs []object, d *dockerFacts)
		want  string
	}{
		{"a variable the worker does not read", func(o []object, _ *dockerFacts) {
			asMap(find(o, "ConfigMap")["data"])["NATS_TIMEOUT"] = "5s"
		}, "NATS_TIMEOUT, which the worker does not read"},
		{"a secret in the ConfigMap", func(o []object, _ *dockerFacts) {
			asMap(find(o, "ConfigMap")["data"])["GRAPH_TOKEN"] = "ey"
		}, "holds the secret GRAPH_TOKEN"},
		{"a literal Redis password", func(o []object, _ *dockerFacts) {
			c := container(o)
			c["env"] = append(asList(c["env"]), map[string]any{"name": "REDIS_PASSWORD", "value": "hunter2"})
		}, "REDIS_PASSWORD must come from a Secret"},
		{"a probe on the wrong path", func(o []object, _ *dockerFacts) {
			asMap(asMap(container(o)["readinessProbe"])["httpGet"])["path"] = "/ready"
		}, "readinessProbe path"},
		{"the admin port differs from ADMIN_ADDR", func(o []object, _ *dockerFacts) {
			asMap(find(o, "ConfigMap")["data"])["ADMIN_ADDR"] = ":9090"
		}, "does not listen on the container port"},
		{"a grace period the kubelet cuts short", func(o []object, _ *dockerFacts) {
			asMap(asMap(find(o, "Deployment").get("spec", "template"))["spec"])["terminationGracePeriodSeconds"] = float64(25)
		}, "does not exceed SHUTDOWN_GRACE"},
		{"a floating image", func(o []object, _ *dockerFacts) {
			container(o)["image"] = "example.azurecr.io/graphops-worker:latest"
		}, "neither pinned"},
		{"a writable root filesystem", func(o []object, _ *dockerFacts) {
			asMap(container(o)["securityContext"])["readOnlyRootFilesystem"] = false
		}, "readOnlyRootFilesystem"},
		{"a Dockerfile user other than the pod's", func(_ []object, d *dockerFacts) { d.user = "1000" }, "Dockerfile USER 1000"},
		{"a Dockerfile with a shell base", func(_ []object, d *dockerFacts) { d.base = "debian:12" }, "not distroless"},
		{"pods without the workload identity label", func(o []object, _ *dockerFacts) {
			delete(asMap(find(o, "Deployment").get("spec", "template", "metadata", "labels")), "azure.workload.identity/use")
		}, "azure.workload.identity/use"},
		{"a Service selecting other pods", func(o []object, _ *dockerFacts) {
			asMap(find(o, "Service").get("spec", "selector"))["app.kubernetes.io/name"] = "other"
		}, "does not select the pods"},
		{"a hold branch not multiplied by the threshold", func(o []object, _ *dockerFacts) {
			asMap(find(o, "ScaledObject").get("spec", "triggers", 0, "metadata"))["threshold"] = "50"
		}, "multiply by the threshold 50"},
		{"replicas beside a ScaledObject", func(o []object, _ *dockerFacts) {
			asMap(find(o, "Deployment")["spec"])["replicas"] = float64(3)
		}, "must not set replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, vars, docker := loadFixture(t)
			tt.spoil(objs, &docker)
			_, problems := checkChart(objs, vars, docker)
			joined := strings.Join(problems, "\n")
			if !strings.Contains(joined, tt.want) {
				t.Errorf("problems %q do not mention %q", joined, tt.want)
			}
		})
	}
}

func TestReadDockerfileTakesTheLastStage(t *testing.T) {
	d, err := readDockerfile("FROM golang AS b\nUSER 0\nEXPOSE 1\nFROM gcr.io/distroless/static-debian12:nonroot\nCOPY --from=b /w /worker\nUSER 65532:65532\nEXPOSE 9464\nENTRYPOINT [\"/worker\"]\nCMD [\"run\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if d.base != "gcr.io/distroless/static-debian12:nonroot" || d.user != "65532:65532" || strings.Join(d.expose, ",") != "9464" || strings.Join(d.entrypoint, ",") != "/worker" {
		t.Errorf("read %+v", d)
	}
	if _, err := readDockerfile("FROM x\nENTRYPOINT /worker run\n"); err == nil {
		t.Error("a shell-form ENTRYPOINT was accepted")
	}
}
