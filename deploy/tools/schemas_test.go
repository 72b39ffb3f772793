package main

import (
	"encoding/json"
	"testing"
)

func TestFileNamesAreKubeconformsKindSuffix(t *testing.T) {
	for _, tt := range []struct {
		k    gvk
		want string
	}{
		{gvk{"", "v1", "Service"}, "service-v1.json"},
		{gvk{"apps", "v1", "Deployment"}, "deployment-apps-v1.json"},
		{gvk{"keda.sh", "v1alpha1", "ScaledObject"}, "scaledobject-keda-v1alpha1.json"},
		{gvk{"azmonitoring.coreos.com", "v1", "ServiceMonitor"}, "servicemonitor-azmonitoring-v1.json"},
	} {
		if got := tt.k.fileName(); got != tt.want {
			t.Errorf("%v: %s, want %s", tt.k, got, tt.want)
		}
	}
}

func TestKubernetesSchemasAreStandaloneAndStrict(t *testing.T) {
	swagger := `{"definitions":{
	  "io.k8s.api.x.v1.Thing":{"type":"object","properties":{"port":{"$ref":"#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
	     "size":{"$ref":"#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},"free":{"type":"object","x-kubernetes-preserve-unknown-fields":true,"properties":{"a":{"type":"string"}}}},
	     "x-kubernetes-group-version-kind":[{"group":"x.k8s.io","version":"v1","kind":"Thing"}]},
	  "io.k8s.apimachinery.pkg.util.intstr.IntOrString":{"type":"string","format":"int-or-string"},
	  "io.k8s.apimachinery.pkg.api.resource.Quantity":{"type":"string"},
	  "io.k8s.api.x.v1.Unused":{"type":"object","properties":{"b":{"type":"string"}}}}}`
	out := map[gvk]map[string]any{}
	if err := kubernetesSchemas([]byte(swagger), out); err != nil {
		t.Fatal(err)
	}
	s, ok := out[gvk{"x.k8s.io", "v1", "Thing"}]
	if !ok || len(out) != 1 {
		t.Fatalf("schemas %v", out)
	}
	b, _ := json.Marshal(s)
	var got struct {
		AdditionalProperties *bool                     `json:"additionalProperties"`
		Definitions          map[string]map[string]any `json:"definitions"`
		Properties           map[string]map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.AdditionalProperties == nil || *got.AdditionalProperties {
		t.Error("unknown fields are not refused")
	}
	if _, has := got.Properties["free"]["additionalProperties"]; has {
		t.Error("x-kubernetes-preserve-unknown-fields was made strict")
	}
	if len(got.Definitions) != 2 || got.Definitions["io.k8s.api.x.v1.Unused"] != nil {
		t.Errorf("definitions %v, want only the two referenced", got.Definitions)
	}
	if got.Definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["oneOf"] == nil || got.Definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"] == nil {
		t.Error("IntOrString and Quantity do not accept both forms")
	}
}

func TestCRDSchemasIntOrStringAndServedVersionsOnly(t *testing.T) {
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
spec:
  group: keda.sh
  names: {kind: ScaledObject}
  versions:
    - name: v1alpha1
      served: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                target: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}, {type: string}]}
    - name: v0
      served: false
      schema:
        openAPIV3Schema: {type: object}
`
	out := map[gvk]map[string]any{}
	if err := crdSchemas([]byte(crd), out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("schemas %v, want the served version only", out)
	}
	s := out[gvk{"keda.sh", "v1alpha1", "ScaledObject"}]
	spec := asMap(asMap(s["properties"])["spec"])
	if spec["additionalProperties"] != false {
		t.Error("spec does not refuse unknown fields")
	}
	if asMap(asMap(spec["properties"])["target"])["oneOf"] == nil {
		t.Error("x-kubernetes-int-or-string not turned into oneOf")
	}
}
