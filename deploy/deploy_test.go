// Package deploy_test validates what operators apply: the Kubernetes manifests match the
// Kubernetes schemas (schema_test.go, offline, with kubeconform) and carry the fields the
// server depends on; the CloudFormation tables match the code's (tables_test.go); the
// ValKey configuration is a cache's.
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dsfeatures/featurestore/featurestore/dynamo"
)

type obj = map[string]any

func get(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(obj)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

func str(o any, path ...string) string { s, _ := get(o, path...).(string); return s }

func manifests(t *testing.T) map[string]obj {
	t.Helper()
	b, err := os.ReadFile("kubernetes/featurestore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]obj{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o obj
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("featurestore.yaml: %v", err)
		}
		if str(o, "apiVersion") == "" || str(o, "kind") == "" || str(o, "metadata", "name") == "" {
			t.Fatalf("a manifest lacks apiVersion, kind or metadata.name: %v", o)
		}
		out[str(o, "kind")] = o
	}
	return out
}

func TestKubernetesManifests(t *testing.T) {
	m := manifests(t)
	for _, kind := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} {
		if m[kind] == nil {
			t.Fatalf("no %s", kind)
		}
	}
	dep := m["Deployment"]
	labels := get(dep, "spec", "template", "metadata", "labels").(obj)
	matches := func(sel any) bool {
		s, ok := sel.(obj)
		if !ok || len(s) == 0 {
			return false
		}
		for k, v := range s {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(get(dep, "spec", "selector", "matchLabels")) {
		t.Error("the Deployment's selector does not match its pod labels")
	}
	if !matches(get(m["Service"], "spec", "selector")) {
		t.Error("the Service's selector does not match the pods")
	}
	if !matches(get(m["PodDisruptionBudget"], "spec", "selector", "matchLabels")) {
		t.Error("the PodDisruptionBudget's selector does not match the pods")
	}
	if str(m["HorizontalPodAutoscaler"], "spec", "scaleTargetRef", "name") != str(dep, "metadata", "name") {
		t.Error("the HorizontalPodAutoscaler does not target the Deployment")
	}
	c := get(dep, "spec", "template", "spec", "containers").([]any)[0]
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if get(c, probe, "grpc", "port") == nil {
			t.Errorf("container has no gRPC %s", probe)
		}
	}
	if get(c, "resources", "requests", "cpu") == nil || get(c, "resources", "limits", "memory") == nil {
		t.Error("container lacks resource requests or a memory limit")
	}
	port := get(c, "ports").([]any)[0]
	if get(port, "containerPort") != 50051 {
		t.Errorf("container port %v, want 50051", get(port, "containerPort"))
	}
	if target := str(get(m["Service"], "spec", "ports").([]any)[0], "targetPort"); target != str(port, "name") {
		t.Errorf("the Service targets port %q, the container names its port %q", target, str(port, "name"))
	}

	// Every ConfigMap key is a setting the server reads, and the listen port matches.
	src, err := os.ReadFile("../cmd/featurestore/config.go")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, mm := range regexp.MustCompile(`(?:env:)?"((?:FS|AWS|OTEL)_[A-Z_]+)[",]`).FindAllStringSubmatch(string(src), -1) {
		known[mm[1]] = true
	}
	data := get(m["ConfigMap"], "data").(obj)
	for k := range data {
		if !known[k] {
			t.Errorf("ConfigMap key %s is not a server setting", k)
		}
	}
	if !strings.HasSuffix(data["FS_LISTEN"].(string), ":50051") {
		t.Errorf("FS_LISTEN %v does not listen on the container port", data["FS_LISTEN"])
	}
}

// decodeCFN lets yaml read CloudFormation's short-form tags (!Sub, !Ref) as plain values.
func decodeCFN(t *testing.T, b []byte) obj {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		t.Fatal(err)
	}
	var strip func(*yaml.Node)
	strip = func(n *yaml.Node) {
		if strings.HasPrefix(n.Tag, "!") && n.Tag != "!!str" && !strings.HasPrefix(n.Tag, "!!") {
			n.Tag = ""
		}
		for _, c := range n.Content {
			strip(c)
		}
	}
	strip(&n)
	var o obj
	if err := n.Decode(&o); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestDynamoDBTables(t *testing.T) {
	b, err := os.ReadFile("cloudformation/dynamodb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfn := decodeCFN(t, b)
	want := dynamo.TablesWithPrefix("${TablePrefix}")
	names := map[string]string{}
	for id, r := range get(cfn, "Resources").(obj) {
		if str(r, "Type") != "AWS::DynamoDB::Table" {
			t.Errorf("%s: unexpected type %s", id, str(r, "Type"))
		}
		names[str(r, "Properties", "TableName")] = id
		if str(get(r, "Properties", "KeySchema").([]any)[0], "AttributeName") != dynamo.AttrPK {
			t.Errorf("%s: hash key is not %q", id, dynamo.AttrPK)
		}
	}
	for _, n := range []string{want.Rows, want.Sets, want.Deletions} {
		if names[n] == "" {
			t.Errorf("no table named %s (the server's default names)", n)
		}
	}
	rows := get(cfn, "Resources", names[want.Rows], "Properties")
	gsi := get(rows, "GlobalSecondaryIndexes").([]any)[0]
	if str(gsi, "IndexName") != dynamo.IndexSubject || str(get(gsi, "KeySchema").([]any)[0], "AttributeName") != dynamo.AttrSubject ||
		str(gsi, "Projection", "ProjectionType") != "KEYS_ONLY" {
		t.Errorf("rows table GSI %v, want %s on %s, keys only", gsi, dynamo.IndexSubject, dynamo.AttrSubject)
	}
	if str(rows, "TimeToLiveSpecification", "AttributeName") != dynamo.AttrExpiresAt || get(rows, "TimeToLiveSpecification", "Enabled") != true {
		t.Errorf("rows table TTL %v, want %s enabled", get(rows, "TimeToLiveSpecification"), dynamo.AttrExpiresAt)
	}
}

func TestValkeyConfigIsACache(t *testing.T) {
	b, err := os.ReadFile("valkey/valkey.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		conf[k] = strings.TrimSpace(v)
	}
	for k, want := range map[string]string{"save": `""`, "appendonly": "no", "maxmemory-policy": "allkeys-lru"} {
		if conf[k] != want {
			t.Errorf("%s = %q, want %q: the cache must not persist and must evict", k, conf[k], want)
		}
	}
	if _, ok := conf["replicaof"]; ok {
		t.Error("replicaof: cluster replicas are made by --cluster-replicas, not by a fixed primary")
	}
	// Replicas reach their primary as an ACL user that can replicate and nothing else.
	acl, err := os.ReadFile("valkey/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	user := conf["masteruser"]
	found := false
	for _, line := range strings.Split(string(acl), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == "user" && f[1] == user && user != "" {
			found = true
			for _, need := range []string{"on", "+psync", "+replconf", "-@all"} {
				if !slices.Contains(f, need) {
					t.Errorf("users.acl user %s lacks %s", user, need)
				}
			}
			for _, tok := range f[2:] {
				if strings.HasPrefix(tok, "+") && tok != "+psync" && tok != "+replconf" && tok != "+ping" {
					t.Errorf("users.acl user %s may run %s; replication needs psync, replconf and ping only", user, tok)
				}
			}
		}
	}
	if !found {
		t.Errorf("masteruser %q: no such user in users.acl, so replicas cannot authenticate (the default user is off)", user)
	}
	if conf["masterauth"] == "" {
		t.Error("masterauth is not set")
	}
}
