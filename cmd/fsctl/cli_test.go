package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/testpki"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// result is one fsctl invocation through realMain, as a shell would see it.
type result struct {
	stdout, stderr string
	code           int
}

func invoke(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := realMain(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	return result{out.String(), errOut.String(), code}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExitCodes: 0 for success and help, 2 for wrong usage, 1 for a failed command.
// None of these reach a server except the last, which finds none.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
		hidden   string // in neither
	}{
		{name: "-h", args: []string{"-h"}, wantCode: 0, wantOut: "Usage: fsctl"},
		{name: "help", args: []string{"help"}, wantCode: 0, wantOut: "-tls-ca"},
		{name: "help hides the token", env: map[string]string{"FSCTL_TOKEN": "s3cr3t"}, args: []string{"help"}, wantCode: 0, wantOut: "-token token", hidden: "s3cr3t"},
		{name: "help command", args: []string{"help", "write"}, wantCode: 0, wantOut: "Usage: fsctl write -set S"},
		{name: "command -h", args: []string{"import", "-h"}, wantCode: 0, wantOut: "-chunk"},
		{name: "gdpr -h", args: []string{"gdpr", "-h"}, wantCode: 0, wantOut: "Usage: fsctl gdpr"},
		{name: "no command", args: nil, wantCode: 2, wantErr: "no command given"},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantErr: `unknown command "frobnicate"`},
		{name: "unknown flag", args: []string{"sets", "-frob"}, wantCode: 2, wantErr: "flag provided but not defined: -frob"},
		{name: "missing argument", args: []string{"write", "-set", "s"}, wantCode: 2, wantErr: "usage: fsctl write"},
		{name: "bad output", args: []string{"-o", "xml", "sets"}, wantCode: 2, wantErr: `-o: want text or json, got "xml"`},
		{name: "yaml only for set", args: []string{"sets", "-o", "yaml"}, wantCode: 2, wantErr: "-o yaml is only for 'fsctl set'"},
		{name: "retire needs -yes", args: []string{"retire", "s"}, wantCode: 2, wantErr: "pass -yes to confirm"},
		{name: "insecure with TLS", args: []string{"sets", "-insecure", "-tls-ca", "ca.pem"}, wantCode: 2, wantErr: "-insecure (plaintext) cannot be combined"},
		{name: "cert without key", env: map[string]string{"FSCTL_TLS_CERT": "c.pem"}, args: []string{"sets"}, wantCode: 2, wantErr: "-tls-cert and -tls-key go together"},
		{name: "bad FSCTL_INSECURE", env: map[string]string{"FSCTL_INSECURE": "maybe"}, args: []string{"sets"}, wantCode: 2, wantErr: "FSCTL_INSECURE"},
		{name: "bad -time", args: []string{"write", "-set", "s", "-entity", "e", "-time", "noon", "n=1"}, wantCode: 2, wantErr: "-time: want RFC 3339"},
		{name: "missing file", args: []string{"apply", "/nonexistent/set.yaml"}, wantCode: 1, wantErr: "no such file"},
		{name: "unreachable server", args: []string{"-addr", "127.0.0.1:1", "set", "s"}, wantCode: 1, wantErr: "Unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := invoke(t, tc.env, "", tc.args...)
			if r.code != tc.wantCode {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tc.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantOut, r.stdout)
			}
			if !strings.Contains(r.stderr, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, r.stderr)
			}
			if tc.hidden != "" && strings.Contains(r.stdout+r.stderr, tc.hidden) {
				t.Errorf("output shows %q", tc.hidden)
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args    []string
		wantPos []string
		wantSet string
		wantOut string
	}{
		{[]string{"-set", "s", "e1", "e2"}, []string{"e1", "e2"}, "s", "text"},
		{[]string{"e1", "-set", "s", "e2", "-o", "json"}, []string{"e1", "e2"}, "s", "json"},
		{[]string{"-set", "s", "--", "-e1", "-o"}, []string{"-e1", "-o"}, "s", "text"},
	}
	for _, tc := range tests {
		g, err := newGlobals(func(string) string { return "" }, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		fs := g.newFlagSet("delete", "delete -set S ENTITY...")
		set := fs.String("set", "", "")
		pos, err := g.parse(fs, tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if diff := cmp.Diff(tc.wantPos, pos); diff != "" {
			t.Errorf("%q positional (-want +got):\n%s", tc.args, diff)
		}
		if *set != tc.wantSet || g.output != tc.wantOut {
			t.Errorf("%q: -set %q -o %q, want %q and %q", tc.args, *set, g.output, tc.wantSet, tc.wantOut)
		}
	}
}

const richSet = `name: riders
entity_type: rider
ttl: 36h
description: "rider features: trips and an embedding"
owner: team-ml
personal_data: true
features:
  - {name: trips, type: int64}
  - {name: emb, type: float_list}
  - {name: tags, type: string_list}
`

// TestGlobalFlagsAnywhereAndJSON: global flags work before and after the command, and
// -o json gives JSON for each command.
func TestGlobalFlagsAnywhereAndJSON(t *testing.T) {
	addr := startServer(t)
	file := writeFile(t, "set.yaml", richSet)
	if r := invoke(t, nil, "", "apply", file, "-addr", addr); r.code != 0 {
		t.Fatalf("apply with -addr after the command: %+v", r)
	}
	before := invoke(t, nil, "", "-addr", addr, "-o", "json", "sets")
	after := invoke(t, nil, "", "sets", "-o", "json", "-addr", addr)
	env := invoke(t, map[string]string{"FSCTL_ADDR": addr}, "", "sets", "-o", "json")
	if before.code != 0 || before.stdout != after.stdout || before.stdout != env.stdout {
		t.Fatalf("sets -o json before, after the command and with FSCTL_ADDR differ:\n%+v\n%+v\n%+v", before, after, env)
	}
	var list struct{ FeatureSets []struct{ Name string } }
	if err := json.Unmarshal([]byte(before.stdout), &list); err != nil || len(list.FeatureSets) != 1 || list.FeatureSets[0].Name != "riders" {
		t.Fatalf("sets JSON %v: %s", err, before.stdout)
	}

	// Every command that reaches the server answers in JSON with -o json.
	jsonOf := func(stdin string, args ...string) map[string]any {
		t.Helper()
		r := invoke(t, nil, stdin, append(args, "-addr", addr, "-o", "json")...)
		var m map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &m) != nil {
			t.Fatalf("%v -o json: exit %d, not JSON:\n%s\n%s", args, r.code, r.stdout, r.stderr)
		}
		return m
	}
	if m := jsonOf("", "set", "riders"); m["featureSet"] == nil {
		t.Errorf("set: %v", m)
	}
	if m := jsonOf("", "write", "-set", "riders", "-entity", "r1", "-subject", "u1", "trips=3"); m["results"] == nil {
		t.Errorf("write: %v", m)
	}
	if m := jsonOf("", "get", "-features", "riders:trips", "-entities", "r1"); m["results"] == nil {
		t.Errorf("get: %v", m)
	}
	csv := writeFile(t, "rows.csv", "entity_id,subject_id,trips\nr2,u2,4\nr3,u3,5\n")
	if m := jsonOf("", "import", "-q", "-set", "riders", csv); m["rowsWritten"] != "2" {
		t.Errorf("import: %v", m)
	}
	stdin := `{"entity_id":"r4","subject_id":"u4","trips":1}` + "\n" + `{"entity_id":"r5","trips":1}` + "\n"
	got := jsonOf(stdin, "stream", "-set", "riders")
	if errs, ok := got["errors"].([]any); ok && len(errs) == 1 {
		if e, ok := errs[0].(map[string]any); ok && strings.Contains(asString(e["error"]), "subject_id") {
			delete(e, "error") // a message for people; the reason is the contract
		}
	}
	wantStream := map[string]any{"rowsWritten": 1.0, "rowsStale": 0.0, "rowsRejected": 1.0,
		"errors": []any{map[string]any{"request": 1.0, "reason": "INVALID_ARGUMENT"}}}
	if diff := cmp.Diff(wantStream, got); diff != "" {
		t.Errorf("stream JSON (-want +got):\n%s", diff)
	}
	prefix := devstack.UniquePrefix(t.Name())
	r := invoke(t, nil, "", "create-tables", "-o", "json", "-dynamodb-endpoint", shared.DynamoDB.Endpoint, "-table-prefix", prefix)
	var tables map[string]string
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &tables) != nil {
		t.Fatalf("create-tables -o json: %+v", r)
	}
	want := map[string]string{"rowsTable": prefix + "featurestore_rows", "setsTable": prefix + "featurestore_sets", "deletionsTable": prefix + "featurestore_deletions", "freshnessTable": prefix + "featurestore_freshness", "subjectIndex": "by_subject", "ttlAttribute": "expires_at"}
	if diff := cmp.Diff(want, tables); diff != "" {
		t.Errorf("create-tables JSON (-want +got):\n%s", diff)
	}
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

// TestSetRoundTrip: 'fsctl set NAME -o yaml > f && fsctl apply f' (and the same with
// -o json) applies the identical set: a no-op, the version stays, and the output is
// the same again.
func TestSetRoundTrip(t *testing.T) {
	addr := startServer(t)
	if r := invoke(t, nil, "", "-addr", addr, "apply", writeFile(t, "set.yaml", richSet)); r.code != 0 || !strings.Contains(r.stdout, "at version 1") {
		t.Fatalf("apply: %+v", r)
	}
	for _, format := range []string{"yaml", "json"} {
		t.Run(format, func(t *testing.T) {
			first := invoke(t, nil, "", "-addr", addr, "set", "riders", "-o", format)
			if first.code != 0 {
				t.Fatalf("set -o %s: %+v", format, first)
			}
			file := writeFile(t, "riders."+format, first.stdout)
			if r := invoke(t, nil, "", "-addr", addr, "apply", file); r.code != 0 || !strings.Contains(r.stdout, `applied feature set "riders" at version 1 (3 features)`) {
				t.Fatalf("apply the %s of set: %+v\nfile:\n%s", format, r, first.stdout)
			}
			if again := invoke(t, nil, "", "-addr", addr, "set", "riders", "-o", format); again.stdout != first.stdout {
				t.Errorf("after the round trip (-first +again):\n%s", cmp.Diff(first.stdout, again.stdout))
			}
		})
	}
	yamlOut := invoke(t, nil, "", "-addr", addr, "set", "riders", "-o", "yaml").stdout
	for _, want := range []string{"ttl: 36h\n", "owner: team-ml\n", "personal_data: true\n", "type: float_list\n"} {
		if !strings.Contains(yamlOut, want) {
			t.Errorf("set -o yaml lacks %q:\n%s", want, yamlOut)
		}
	}
}

// TestTLSFlags: every way in to a server that requires TLS and credentials, by flags
// and by FSCTL_* variables.
func TestTLSFlags(t *testing.T) {
	p := testpki.New(t)
	policy := server.Policy{TokenHashes: map[string]string{server.HashToken("read-token"): "reader"},
		Certificates: map[string]bool{"admin": true},
		Rules:        map[string]server.Rule{"reader": {Read: []string{"*"}}, "admin": {Read: []string{"*"}, Write: []string{"*"}, Apply: true}}}
	addr := startServer(t, append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(p.ServerTLS(t)))}, server.NewAuth(policy, slog.New(slog.NewTextHandler(io.Discard, nil))).ServerOptions()...)...)
	certFile, keyFile := p.Issue(t, "admin", x509.ExtKeyUsageClientAuth)
	set := writeFile(t, "set.yaml", "name: s\nentity_type: e\nfeatures:\n  - {name: n, type: int64}\n")

	if r := invoke(t, nil, "", "apply", set, "-addr", addr, "-tls-ca", p.CAFile, "-tls-cert", certFile, "-tls-key", keyFile); r.code != 0 {
		t.Fatalf("apply with a client certificate: %+v", r)
	}
	env := map[string]string{"FSCTL_ADDR": addr, "FSCTL_TLS_CA": p.CAFile, "FSCTL_TOKEN": "read-token"}
	if r := invoke(t, env, "", "sets"); r.code != 0 || !strings.Contains(r.stdout, "s     e") {
		t.Errorf("sets with FSCTL_TLS_CA and FSCTL_TOKEN: %+v", r)
	}
	if r := invoke(t, env, "", "apply", set); r.code != 1 || !strings.Contains(r.stderr, "PermissionDenied") {
		t.Errorf("apply as reader: %+v, want exit 1 and PermissionDenied", r)
	}
	if r := invoke(t, nil, "", "sets", "-addr", addr, "-tls-ca", p.CAFile, "-token", "read-token"); r.code != 0 {
		t.Errorf("sets with -token: %+v", r)
	}
	if r := invoke(t, nil, "", "sets", "-addr", addr, "-tls-ca", p.CAFile); r.code != 1 || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Errorf("sets without credentials: %+v, want exit 1 and Unauthenticated", r)
	}
	// On loopback fsctl speaks plaintext unless told otherwise, which this server refuses.
	if r := invoke(t, nil, "", "sets", "-addr", addr, "-token", "read-token"); r.code != 1 || !strings.Contains(r.stderr, "Unavailable") {
		t.Errorf("plaintext to a TLS server: %+v, want exit 1 and Unavailable", r)
	}
}

// TestDeleteAndRetireCommands needs the server's DeleteEntities and DeleteFeatureSet.
func TestDeleteAndRetireCommands(t *testing.T) {
	addr := startServer(t)
	env := map[string]string{"FSCTL_ADDR": addr}
	if r := invoke(t, env, "", "apply", writeFile(t, "set.yaml", "name: s\nentity_type: e\nfeatures:\n  - {name: n, type: int64}\n")); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	if r := invoke(t, env, "", "write", "-set", "s", "-entity", "e1", "n=1"); r.code != 0 {
		t.Fatalf("write: %+v", r)
	}
	r := invoke(t, env, "", "delete", "e1", "e9", "-set", "s")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted s/e1 (version ") || !strings.Contains(r.stdout, "nothing stored for s/e9") {
		t.Fatalf("delete: %+v", r)
	}
	if r := invoke(t, env, "", "get", "-features", "s:n", "-entities", "e1"); !strings.Contains(r.stdout, "not_found") {
		t.Errorf("get after delete: %+v", r)
	}
	// protojson varies its spacing on purpose: decode rather than match text.
	r = invoke(t, env, "", "retire", "s", "-yes", "-o", "json")
	var retired struct {
		FeatureSet struct{ Name string } `json:"featureSet"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &retired); r.code != 0 || err != nil || retired.FeatureSet.Name != "s" {
		t.Fatalf("retire: %+v (decoded %+v, %v)", r, retired, err)
	}
	if r := invoke(t, env, "", "set", "s"); r.code != 1 || !strings.Contains(r.stderr, "NotFound") {
		t.Errorf("set after retire: %+v", r)
	}
}

// TestListPaginationCommand: 'fsctl sets' walks every page and lists the sets by name;
// it needs a server that honours page_size.
func TestListPaginationCommand(t *testing.T) {
	var mu sync.Mutex
	var pageSizes []int32
	addr := startServer(t, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*pb.ListFeatureSetsRequest); ok {
			mu.Lock()
			pageSizes = append(pageSizes, r.GetPageSize())
			mu.Unlock()
		}
		return h(ctx, req)
	}))
	env := map[string]string{"FSCTL_ADDR": addr}
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		if r := invoke(t, env, "", "apply", writeFile(t, name+".yaml", "name: "+name+"\nentity_type: x\nfeatures:\n  - {name: n, type: int64}\n")); r.code != 0 {
			t.Fatalf("apply %s: %+v", name, r)
		}
	}
	r := invoke(t, env, "", "sets", "-page-size", "2")
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		names = append(names, strings.Fields(line)[0])
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "d", "e"}, names); r.code != 0 || diff != "" {
		t.Errorf("sets -page-size 2: exit %d (-want +got):\n%s", r.code, diff)
	}
	// Five sets at two a page take at least three requests, each asking for two.
	if len(pageSizes) < 3 || slices.ContainsFunc(pageSizes, func(n int32) bool { return n != 2 }) {
		t.Errorf("page requests with sizes %v, want at least 3 of size 2", pageSizes)
	}
}

// TestSetFileRoundTrip: formatSetFile's output parses back to the same set (version
// aside), for sets with and without the optional fields.
func TestSetFileRoundTrip(t *testing.T) {
	full, err := parseSetFile("rich.yaml", []byte(richSet))
	if err != nil {
		t.Fatal(err)
	}
	full.Version = 7
	tests := []*pb.FeatureSet{
		full,
		{Name: "bare", EntityType: "e", Features: []*pb.FeatureSpec{{Name: "b", Type: pb.ValueType_VALUE_TYPE_BYTES}}},
		{Name: "odd", EntityType: "e", Description: "line one\nline two: with a colon", Ttl: durationpb.New(90 * time.Second),
			Features: []*pb.FeatureSpec{{Name: "x", Type: pb.ValueType_VALUE_TYPE_DOUBLE}, {Name: "y", Type: pb.ValueType_VALUE_TYPE_INT64_LIST}}},
	}
	for _, want := range tests {
		b, err := formatSetFile(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseSetFile("out.yaml", b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", want.GetName(), err, b)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreFields(&pb.FeatureSet{}, "version")); diff != "" {
			t.Errorf("%s (-want +got):\n%s\nfile:\n%s", want.GetName(), diff, b)
		}
	}
	if b, _ := formatSetFile(full); !strings.HasPrefix(string(b), "# feature set \"riders\" at version 7") || !strings.Contains(string(b), "ttl: 36h\n") {
		t.Errorf("file:\n%s", b)
	}
}
