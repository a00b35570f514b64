// Command k8sschema writes the standalone, strict JSON schemas that kubeconform needs to
// validate the Kubernetes manifests offline (go test ./deploy/), from the OpenAPI v2 spec
// that ships inside the k8s.io/kubernetes Go module (api/openapi-spec/swagger.json),
// which the Go module proxy serves. Only the kinds the manifests use are written, in
// kubeconform's layout: OUT/v<VERSION>-standalone-strict/<kind>-<group>-<version>.json.
//
// Run by hand after changing a manifest's kinds or moving to another Kubernetes version:
//
//	go run ./internal/k8sschema -k8s-version v1.37.2 -out deploy/kubernetes/schemas deploy/kubernetes/*.yaml
//
// ("-spec FILE" reads a swagger.json instead of downloading the module.)
//
// The schemas are what kubeconform's own schema repository holds, made the same way:
// every $ref inlined (standalone), objects refuse properties they do not declare
// (strict), int-or-string fields accept both, resource quantities accept strings and
// numbers, apiVersion and kind must match. Descriptions are dropped: they do not
// validate anything and would triple the files' size.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "k8sschema:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("k8sschema", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("k8s-version", "", "Kubernetes version whose schemas to write, e.g. v1.37.2 (the k8s.io/kubernetes module version)")
	specFile := fs.String("spec", "", "read this swagger.json instead of the one in k8s.io/kubernetes@VERSION")
	out := fs.String("out", "deploy/kubernetes/schemas", "directory to write <version>-standalone-strict/ under")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" || !strings.HasPrefix(*version, "v") || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: k8sschema -k8s-version vX.Y.Z [-spec swagger.json] [-out DIR] MANIFEST.yaml...")
		return errors.New("want -k8s-version vX.Y.Z and at least one manifest")
	}
	path := *specFile
	if path == "" {
		dir, err := moduleDir(ctx, "k8s.io/kubernetes@"+*version)
		if err != nil {
			return err
		}
		path = filepath.Join(dir, "api", "openapi-spec", "swagger.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the OpenAPI spec: %w", err)
	}
	var spec struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	gvks, err := manifestKinds(fs.Args())
	if err != nil {
		return err
	}
	dir := filepath.Join(*out, *version+"-standalone-strict")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, gvk := range gvks {
		schema, err := kindSchema(spec.Definitions, gvk)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(schema, "", "  ")
		if err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
		file := filepath.Join(dir, gvk.fileName())
		if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", file)
	}
	return nil
}

// moduleDir downloads a module through the Go module proxy (or finds it in the module
// cache) and returns its directory. It runs outside this module so that go.mod and
// go.sum stay untouched.
func moduleDir(ctx context.Context, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", modVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w: %s", modVersion, err, stderr.String())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no directory in %q", modVersion, out)
	}
	return info.Dir, nil
}

// gvk is a manifest's apiVersion and kind.
type gvk struct{ Group, Version, Kind string }

func parseGVK(apiVersion, kind string) gvk {
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok {
		group, version = "", apiVersion
	}
	return gvk{group, version, kind}
}

func (g gvk) apiVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

func (g gvk) String() string { return g.apiVersion() + " " + g.Kind }

// fileName is where kubeconform looks for the kind's schema: the kind, the group's first
// label and the version, lower case ("deployment-apps-v1.json", "configmap-v1.json").
func (g gvk) fileName() string {
	if g.Group == "" {
		return strings.ToLower(g.Kind) + "-" + strings.ToLower(g.Version) + ".json"
	}
	first, _, _ := strings.Cut(g.Group, ".")
	return strings.ToLower(g.Kind) + "-" + strings.ToLower(first) + "-" + strings.ToLower(g.Version) + ".json"
}

// manifestKinds returns the distinct kinds of every document in files, sorted.
func manifestKinds(files []string) ([]gvk, error) {
	var out []gvk
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			var doc struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
			}
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
			}
			if doc.APIVersion == "" && doc.Kind == "" {
				continue // an empty document
			}
			if doc.APIVersion == "" || doc.Kind == "" {
				return nil, fmt.Errorf("%s: document %d has no apiVersion or kind", file, i)
			}
			if g := parseGVK(doc.APIVersion, doc.Kind); !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	slices.SortFunc(out, func(a, b gvk) int { return strings.Compare(a.fileName(), b.fileName()) })
	return out, nil
}

const refPrefix = "#/definitions/"

// Definitions whose OpenAPI form is narrower than what the API server accepts.
const (
	defIntOrString = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
	defQuantity    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
)

// kindSchema finds the definition of g and returns it standalone and strict.
func kindSchema(defs map[string]map[string]any, g gvk) (map[string]any, error) {
	var name string
	for n, d := range defs {
		list, _ := d["x-kubernetes-group-version-kind"].([]any)
		for _, item := range list {
			m, _ := item.(map[string]any)
			if m["group"] == g.Group && m["version"] == g.Version && m["kind"] == g.Kind {
				name = n
			}
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%s: no definition in the spec (is the apiVersion served by this Kubernetes version?)", g)
	}
	s, err := expand(defs, defs[name], []string{name})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g, err)
	}
	schema := s.(map[string]any)
	props, _ := schema["properties"].(map[string]any)
	if props == nil {
		return nil, fmt.Errorf("%s: definition %s has no properties", g, name)
	}
	// Pin apiVersion and kind, as a manifest that names another one is another object.
	props["apiVersion"] = map[string]any{"type": "string", "enum": []any{g.apiVersion()}}
	props["kind"] = map[string]any{"type": "string", "enum": []any{g.Kind}}
	return schema, nil
}

// expand returns a copy of the schema node v with every $ref inlined and the strict
// rules applied. path holds the definitions being expanded, to report a cycle rather
// than recurse forever (no kind fed to it so far has one).
func expand(defs map[string]map[string]any, v any, path []string) (any, error) {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			e, err := expand(defs, item, path)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok {
			name, found := strings.CutPrefix(ref, refPrefix)
			if !found {
				return nil, fmt.Errorf("unsupported reference %q", ref)
			}
			switch name {
			case defIntOrString:
				return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}, nil
			case defQuantity:
				return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}, nil
			}
			if slices.Contains(path, name) {
				return nil, fmt.Errorf("recursive definition %s (via %s)", name, strings.Join(path, " > "))
			}
			def, ok := defs[name]
			if !ok {
				return nil, fmt.Errorf("reference to unknown definition %s", name)
			}
			return expand(defs, def, append(slices.Clone(path), name))
		}
		if v["format"] == "int-or-string" {
			return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}, nil
		}
		out := map[string]any{}
		for k, val := range v {
			if k == "description" || strings.HasPrefix(k, "x-kubernetes-") {
				continue
			}
			if k == "properties" {
				// A map of property names: expand each schema, never treat a name as a keyword.
				props, _ := val.(map[string]any)
				expanded := map[string]any{}
				for name, p := range props {
					e, err := expand(defs, p, path)
					if err != nil {
						return nil, err
					}
					expanded[name] = e
				}
				out[k] = expanded
				continue
			}
			e, err := expand(defs, val, path)
			if err != nil {
				return nil, err
			}
			out[k] = e
		}
		_, declared := v["additionalProperties"]
		if _, hasProps := v["properties"]; hasProps && !declared && v["x-kubernetes-preserve-unknown-fields"] != true {
			out["additionalProperties"] = false
		}
		return out, nil
	}
	return v, nil
}
