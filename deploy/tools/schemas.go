package main

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func runSchemas(args []string) error {
	fs := flag.NewFlagSet("schemas", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write the schemas to")
	kube := fs.String("kubernetes", "", "zip of the k8s.io/kubernetes module")
	var crds, aliases listFlag
	fs.Var(&crds, "crds", "ZIP:PREFIX of CRD YAML files in a module zip (repeatable)")
	fs.Var(&aliases, "alias", "FROM=TO:KIND,KIND… kinds of API group FROM whose schemas are also written under group TO (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *kube == "" {
		return errors.New("-out and -kubernetes are required")
	}
	schemas := map[gvk]map[string]any{}

	swagger, err := readZipFile(*kube, "/api/openapi-spec/swagger.json")
	if err != nil {
		return err
	}
	if err := kubernetesSchemas(swagger, schemas); err != nil {
		return err
	}
	for _, c := range crds {
		zipPath, prefix, ok := strings.Cut(c, ":")
		if !ok {
			return fmt.Errorf("-crds %q: want ZIP:PREFIX", c)
		}
		files, err := readZipDir(zipPath, prefix)
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("-crds %q: no YAML file under %s", c, prefix)
		}
		for name, data := range files {
			if err := crdSchemas(data, schemas); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	for _, a := range aliases {
		from, rest, ok := strings.Cut(a, "=")
		to, kinds, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 {
			return fmt.Errorf("-alias %q: want FROM=TO:KIND,KIND", a)
		}
		n := 0
		for k, s := range schemas {
			if k.group == from && slices.Contains(strings.Split(kinds, ","), k.kind) {
				schemas[gvk{to, k.version, k.kind}] = s
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("-alias %q: no schema of group %s", a, from)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for k, s := range schemas {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, k.fileName()), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("deploycheck schemas: %d schemas in %s\n", len(schemas), *out)
	return nil
}

// gvk names a kind of object.
type gvk struct{ group, version, kind string }

// fileName is kubeconform's {{.ResourceKind}}{{.KindSuffix}}.json: the kind
// in lower case, the first label of the group, the version.
func (k gvk) fileName() string {
	suffix := "-" + strings.ToLower(k.version)
	if k.group != "" {
		suffix = "-" + strings.ToLower(strings.Split(k.group, ".")[0]) + suffix
	}
	return strings.ToLower(k.kind) + suffix + ".json"
}

// kubernetesSchemas makes a standalone schema of every kind in Kubernetes'
// swagger.json: the kind's definition with the definitions it references.
func kubernetesSchemas(swagger []byte, out map[gvk]map[string]any) error {
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(swagger, &doc); err != nil {
		return fmt.Errorf("swagger.json: %w", err)
	}
	if len(doc.Definitions) == 0 {
		return errors.New("swagger.json: no definitions")
	}
	defs := map[string]any{}
	for name, d := range doc.Definitions {
		defs[name] = kubernetesDefinition(name, d)
	}
	for name, d := range doc.Definitions {
		kinds, _ := d["x-kubernetes-group-version-kind"].([]any)
		for _, k := range kinds {
			m, _ := k.(map[string]any)
			id := gvk{str(m["group"]), str(m["version"]), str(m["kind"])}
			if id.kind == "" || id.version == "" {
				continue
			}
			used := map[string]any{}
			collectRefs(defs[name], defs, used)
			s := map[string]any{}
			for k, v := range defs[name].(map[string]any) {
				s[k] = v
			}
			s["$schema"] = "http://json-schema.org/draft-07/schema#"
			s["definitions"] = used
			out[id] = s
		}
	}
	return nil
}

// kubernetesDefinition rewrites a definition for validation: the two
// formats JSON Schema does not know become what they accept, and objects
// refuse fields they do not declare (kubeconform -strict).
func kubernetesDefinition(name string, d map[string]any) any {
	switch name {
	case "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	case "io.k8s.apimachinery.pkg.api.resource.Quantity":
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	}
	return strict(d)
}

// strict adds additionalProperties: false to every object schema that
// declares its properties and does not keep unknown fields.
func strict(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t)+1)
		for k, x := range t {
			if k == "x-kubernetes-group-version-kind" {
				out[k] = x
				continue
			}
			out[k] = strict(x)
		}
		if t["x-kubernetes-int-or-string"] == true {
			delete(out, "type")
			out["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
		}
		if _, has := t["properties"]; has {
			if _, set := t["additionalProperties"]; !set && t["x-kubernetes-preserve-unknown-fields"] != true {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = strict(x)
		}
		return out
	}
	return v
}

// collectRefs adds to used every definition v references, transitively.
func collectRefs(v any, defs, used map[string]any) {
	switch t := v.(type) {
	case map[string]any:
		if ref, ok := t["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			if _, seen := used[name]; !seen {
				if d, ok := defs[name]; ok {
					used[name] = d
					collectRefs(d, defs, used)
				}
			}
		}
		for _, x := range t {
			collectRefs(x, defs, used)
		}
	case []any:
		for _, x := range t {
			collectRefs(x, defs, used)
		}
	}
}

// crdSchemas adds the schema of every served version of a
// CustomResourceDefinition.
func crdSchemas(data []byte, out map[gvk]map[string]any) error {
	var crd struct {
		Kind string `json:"kind"`
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		return err
	}
	if crd.Kind != "CustomResourceDefinition" {
		return nil
	}
	for _, v := range crd.Spec.Versions {
		if !v.Served || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		s := strict(v.Schema.OpenAPIV3Schema).(map[string]any)
		s["$schema"] = "http://json-schema.org/draft-07/schema#"
		out[gvk{crd.Spec.Group, v.Name, crd.Spec.Names.Kind}] = s
	}
	return nil
}

func str(v any) string { s, _ := v.(string); return s }

// readZipFile reads the file of a module zip whose path inside the module is
// suffix without its leading slash.
func readZipFile(zipPath, suffix string) ([]byte, error) {
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	for _, f := range zr.File {
		if "/"+modulePath(f.Name) == suffix {
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(rc)
		}
	}
	return nil, fmt.Errorf("%s: no file %s", zipPath, suffix)
}

// readZipDir reads the YAML files directly under dir (a path inside the
// module) of a module zip.
func readZipDir(zipPath, dir string) (map[string][]byte, error) {
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	out := map[string][]byte{}
	for _, f := range zr.File {
		inModule := modulePath(f.Name)
		if filepath.Dir(inModule) != strings.TrimSuffix(dir, "/") || !strings.HasSuffix(inModule, ".yaml") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		out[inModule] = b
	}
	return out, nil
}

// modulePath is a zip entry's path inside its module: the part after the
// "<module>@<version>/" directory.
func modulePath(name string) string {
	at := strings.Index(name, "@")
	if at < 0 {
		return name
	}
	_, rest, _ := strings.Cut(name[at:], "/")
	return rest
}
