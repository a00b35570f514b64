package deploy_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yannh/kubeconform/pkg/validator"
)

// The Kubernetes JSON schemas kubeconform validates against live in the repo, so that
// `go test ./deploy/` runs offline; internal/k8sschema writes them (see README,
// "Deploying"). There is one directory, named after the Kubernetes version.
const schemaDir = "kubernetes/schemas"

// newValidator is kubeconform in strict mode (unknown fields and duplicate keys are
// errors) over the repo's schemas.
func newValidator(t *testing.T) validator.Validator {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(schemaDir, "v*-standalone-strict"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want exactly one %s/v<version>-standalone-strict directory, found %v (%v)", schemaDir, dirs, err)
	}
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(dirs[0]), "v"), "-standalone-strict")
	abs, err := filepath.Abs(schemaDir)
	if err != nil {
		t.Fatal(err)
	}
	location := filepath.Join(abs, "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}", "{{ .ResourceKind }}{{ .KindSuffix }}.json")
	v, err := validator.New([]string{location}, validator.Opts{Strict: true, KubernetesVersion: version})
	if err != nil {
		t.Fatalf("kubeconform: %v", err)
	}
	return v
}

// validate returns one line per resource that is not valid, and how many were.
func validate(v validator.Validator, name string, manifest []byte) (problems []string, valid int) {
	for _, res := range v.Validate(name, io.NopCloser(bytes.NewReader(manifest))) {
		kind := "?"
		if sig, err := res.Resource.Signature(); err == nil {
			kind = sig.Kind + " " + sig.Name
		}
		switch res.Status {
		case validator.Valid:
			valid++
		case validator.Empty:
		case validator.Invalid:
			for _, e := range res.ValidationErrors {
				problems = append(problems, fmt.Sprintf("%s: %s at %s: %s", name, kind, e.Path, e.Msg))
			}
			if len(res.ValidationErrors) == 0 {
				problems = append(problems, fmt.Sprintf("%s: %s: %v", name, kind, res.Err))
			}
		case validator.Skipped:
			problems = append(problems, fmt.Sprintf("%s: %s: skipped", name, kind))
		default: // a missing schema or unparseable YAML is a failure too
			problems = append(problems, fmt.Sprintf("%s: %s: %v", name, kind, res.Err))
		}
	}
	return problems, valid
}

// TestManifestsMatchKubernetesSchemas validates every manifest in deploy/kubernetes.
func TestManifestsMatchKubernetesSchemas(t *testing.T) {
	v := newValidator(t)
	files, err := filepath.Glob("kubernetes/*.y*ml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		problems, valid := validate(v, file, b)
		for _, p := range problems {
			if strings.Contains(p, "could not find schema") {
				p += " (a new kind or apiVersion: regenerate the schemas with 'make k8s-schemas')"
			}
			t.Error(p)
		}
		if valid == 0 {
			t.Errorf("%s: no resource validated", file)
		}
	}
}

// TestSchemaValidationCatchesMistakes: mutated copies of the real manifest must fail
// (and one harmless change must pass), so the check above cannot pass vacuously.
func TestSchemaValidationCatchesMistakes(t *testing.T) {
	v := newValidator(t)
	orig, err := os.ReadFile("kubernetes/featurestore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if problems, _ := validate(v, "featurestore.yaml", orig); len(problems) > 0 {
		t.Fatalf("the original does not validate: %v", problems)
	}
	tests := []struct {
		name      string
		old, new  string
		wantValid bool
		wantMsg   string
	}{
		{name: "misspelled field", old: "  replicas: 3\n", new: "  replcas: 3\n", wantMsg: "replcas"},
		{name: "string for an integer", old: "containerPort: 50051}", new: "containerPort: \"fifty\"}", wantMsg: "containerPort"},
		{name: "field in the wrong place", old: "      terminationGracePeriodSeconds: 30", new: "      terminationGracePeriod: 30", wantMsg: "terminationGracePeriod"},
		{name: "apiVersion with no schema", old: "apiVersion: policy/v1\n", new: "apiVersion: policy/v1beta1\n", wantMsg: "could not find schema"},
		{name: "duplicate key", old: "  minReplicas: 3\n", new: "  minReplicas: 3\n  minReplicas: 4\n", wantMsg: "minReplicas"},
		{name: "percent for int-or-string is fine", old: "maxUnavailable: 0,", new: "maxUnavailable: \"25%\",", wantValid: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := bytes.Count(orig, []byte(tc.old)); n != 1 {
				t.Fatalf("the manifest holds %q %d times; update this test", tc.old, n)
			}
			mutated := bytes.Replace(orig, []byte(tc.old), []byte(tc.new), 1)
			problems, _ := validate(v, "mutated.yaml", mutated)
			if tc.wantValid {
				if len(problems) > 0 {
					t.Errorf("rejected: %v", problems)
				}
				return
			}
			if len(problems) == 0 {
				t.Fatal("accepted")
			}
			t.Logf("rejected as expected: %v", problems)
			if all := strings.Join(problems, "\n"); !strings.Contains(all, tc.wantMsg) {
				t.Errorf("problems do not mention %q:\n%s", tc.wantMsg, all)
			}
		})
	}
}
