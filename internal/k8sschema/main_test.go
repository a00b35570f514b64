package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A miniature swagger.json with the constructs the generator must handle.
const miniSpec = `{"definitions": {
  "io.k8s.api.apps.v1.Widget": {
    "description": "dropped",
    "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Widget"}],
    "required": ["spec"],
    "properties": {
      "apiVersion": {"type": "string"},
      "kind": {"type": "string"},
      "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
      "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.WidgetSpec"}
    }
  },
  "io.k8s.api.apps.v1.WidgetSpec": {
    "properties": {
      "port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
      "memory": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
      "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}}
    }
  },
  "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
    "properties": {"name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}
  },
  "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
  "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
  "io.k8s.api.core.v1.Loop": {
    "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Loop"}],
    "properties": {"next": {"$ref": "#/definitions/io.k8s.api.core.v1.Loop"}}
  }
}}`

func TestKindSchema(t *testing.T) {
	var spec struct{ Definitions map[string]map[string]any }
	if err := json.Unmarshal([]byte(miniSpec), &spec); err != nil {
		t.Fatal(err)
	}
	got, err := kindSchema(spec.Definitions, gvk{"apps", "v1", "Widget"})
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(`{
	  "required": ["spec"],
	  "additionalProperties": false,
	  "properties": {
	    "apiVersion": {"type": "string", "enum": ["apps/v1"]},
	    "kind": {"type": "string", "enum": ["Widget"]},
	    "metadata": {"additionalProperties": false, "properties": {"name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
	    "spec": {"additionalProperties": false, "properties": {
	      "port": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
	      "memory": {"oneOf": [{"type": "string"}, {"type": "number"}]},
	      "free": {"type": "object", "properties": {"a": {"type": "string"}}}
	    }}
	  }
	}`), &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	if _, err := kindSchema(spec.Definitions, gvk{"", "v1", "Loop"}); err == nil || !strings.Contains(err.Error(), "recursive definition") {
		t.Errorf("recursive definition: %v", err)
	}
	if _, err := kindSchema(spec.Definitions, gvk{"apps", "v1beta1", "Widget"}); err == nil || !strings.Contains(err.Error(), "no definition") {
		t.Errorf("unknown apiVersion: %v", err)
	}
}

func TestFileNames(t *testing.T) {
	tests := map[string]string{
		"v1 ConfigMap":                           "configmap-v1.json",
		"apps/v1 Deployment":                     "deployment-apps-v1.json",
		"autoscaling/v2 HorizontalPodAutoscaler": "horizontalpodautoscaler-autoscaling-v2.json",
		"networking.k8s.io/v1 NetworkPolicy":     "networkpolicy-networking-v1.json",
	}
	for in, want := range tests {
		apiVersion, kind, _ := strings.Cut(in, " ")
		if got := parseGVK(apiVersion, kind).fileName(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// TestRun writes only the manifests' kinds, from a spec file.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "swagger.json")
	manifest := filepath.Join(dir, "m.yaml")
	for file, content := range map[string]string{spec: miniSpec, manifest: "apiVersion: apps/v1\nkind: Widget\n---\n---\napiVersion: apps/v1\nkind: Widget\nmetadata: {name: b}\n"} {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "schemas")
	if err := run(context.Background(), []string{"-k8s-version", "v1.0.0", "-spec", spec, "-out", out, manifest}, io.Discard); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(out, "v1.0.0-standalone-strict"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"widget-apps-v1.json"}, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if err := run(context.Background(), []string{"-spec", spec, manifest}, io.Discard); err == nil {
		t.Error("ran without -k8s-version")
	}
}
