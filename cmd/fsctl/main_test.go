package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

var shared *devstack.Shared

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, func(s *devstack.Shared) { shared = s }))
}

func TestParseSetFile(t *testing.T) {
	want := &pb.FeatureSet{Name: "s", EntityType: "user", Ttl: durationpb.New(time.Hour), PersonalData: true,
		Features: []*pb.FeatureSpec{{Name: "a", Type: pb.ValueType_VALUE_TYPE_INT64}, {Name: "b", Type: pb.ValueType_VALUE_TYPE_FLOAT_LIST}}}
	tests := []struct {
		name    string
		in      string
		want    *pb.FeatureSet
		wantErr string
	}{
		{"yaml", "name: s\nentity_type: user\nttl: 1h\npersonal_data: true\nfeatures:\n  - {name: a, type: int64}\n  - {name: b, type: float_list}\n", want, ""},
		{"json with enum names", `{"name":"s","entity_type":"user","ttl":"1h","personal_data":true,"features":[{"name":"a","type":"VALUE_TYPE_INT64"},{"name":"b","type":"FLOAT_LIST"}]}`, want, ""},
		{"unknown field", "name: s\nentitytype: user\n", nil, "entitytype"},
		{"bad type", "name: s\nfeatures:\n  - {name: a, type: integer}\n", nil, "features[0].type"},
		{"bad ttl", "name: s\nttl: forever\n", nil, "ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSetFile("f.yaml", []byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseValue(t *testing.T) {
	tests := []struct {
		t       featurestore.ValueType
		in      string
		want    *pb.Value
		wantErr bool
	}{
		{featurestore.TypeInt64, "-3", &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: -3}}, false},
		{featurestore.TypeInt64, "3.5", nil, true},
		{featurestore.TypeDouble, "3.5", &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: 3.5}}, false},
		{featurestore.TypeBool, "true", &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: true}}, false},
		{featurestore.TypeBool, "yes", nil, true},
		{featurestore.TypeBytes, "AAE=", &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: []byte{0, 1}}}, false},
		{featurestore.TypeFloatList, "1, 2.5", &pb.Value{Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: []float32{1, 2.5}}}}, false},
		{featurestore.TypeInt64List, "1,x", nil, true},
		{featurestore.TypeStringList, "a,b", &pb.Value{Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: []string{"a", "b"}}}}, false},
	}
	for _, tc := range tests {
		got, err := parseValue(tc.t, tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s %q: err %v, want error %v", tc.t, tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s %q (-want +got):\n%s", tc.t, tc.in, diff)
		}
	}
}

// startServer serves the real handlers on the real stack, in process, with opts (test
// interceptors, TLS, auth).
func startServer(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	st := shared.NewStack(t, 1500*time.Millisecond, devstack.ValkeyOptions{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, _, err := devstack.NewService(st.DB, st.Cache, nil, writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}, logger)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := server.NewGRPC(server.New(svc, logger, server.Options{}), nil, logger, opts...)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func fsctl(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"-addr", addr}, args...), func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestCLI(t *testing.T) {
	addr := startServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "set.yaml")
	if err := os.WriteFile(file, []byte("name: driver_stats\nentity_type: driver\nttl: 24h\nfeatures:\n  - {name: trips, type: int64}\n  - {name: tags, type: string_list}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := fsctl(t, addr, "apply", file)
	if err != nil || !strings.Contains(out, `applied feature set "driver_stats" at version 1`) {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = fsctl(t, addr, "write", "-set", "driver_stats", "-entity", "d1", "-time", "2026-01-02T03:04:05Z", "trips=7", "tags=a,b")
	if err != nil || !strings.HasPrefix(out, "written: driver_stats/d1 at version ") {
		t.Fatalf("write: %v\n%s", err, out)
	}
	out, err = fsctl(t, addr, "write", "-set", "driver_stats", "-entity", "d1", "trips=seven")
	if err == nil || !strings.Contains(err.Error(), "trips: want an integer") {
		t.Fatalf("bad value: %v\n%s", err, out)
	}
	out, err = fsctl(t, addr, "get", "-features", "driver_stats:trips,driver_stats:tags", "-entities", "d1,d9")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"d1      driver_stats:trips  expired  ", "d1      driver_stats:tags   expired", "d9      driver_stats:trips  not_found"} {
		if !strings.Contains(out, want) {
			t.Errorf("get output lacks %q:\n%s", want, out)
		}
	}
	// A fresh write is present, and -o json is machine-readable.
	if _, err := fsctl(t, addr, "write", "-set", "driver_stats", "-entity", "d2", "trips=3"); err != nil {
		t.Fatal(err)
	}
	out, err = fsctl(t, addr, "-o", "json", "get", "-features", "driver_stats:trips", "-entities", "d2")
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Results []struct {
			Values   []map[string]string
			Statuses []string
		}
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if resp.Results[0].Statuses[0] != "FEATURE_STATUS_PRESENT" || resp.Results[0].Values[0]["int64Value"] != "3" {
		t.Fatalf("json get: %+v", resp)
	}
	out, err = fsctl(t, addr, "sets")
	if err != nil || !strings.Contains(out, "driver_stats  driver  2         24h0m0s  1") {
		t.Fatalf("sets: %v\n%s", err, out)
	}
	_, err = fsctl(t, addr, "set", "nope")
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("set nope: %v", err)
	}
}

func TestCreateTables(t *testing.T) {
	prefix := devstack.UniquePrefix(t.Name())
	for i := 0; i < 2; i++ { // idempotent
		var out bytes.Buffer
		err := run(context.Background(), []string{"create-tables", "-dynamodb-endpoint", shared.DynamoDB.Endpoint, "-table-prefix", prefix},
			func(string) string { return "" }, nil, &out, io.Discard)
		if err != nil || !strings.Contains(out.String(), "tables ready: "+prefix+"featurestore_rows (GSI by_subject") {
			t.Fatalf("run %d: %v\n%s", i, err, out.String())
		}
	}
}

func TestImportAndStream(t *testing.T) {
	addr := startServer(t)
	dir := t.TempDir()
	setFile := filepath.Join(dir, "set.yaml")
	os.WriteFile(setFile, []byte("name: s\nentity_type: u\nfeatures:\n  - {name: n, type: int64}\n  - {name: tags, type: string_list}\n"), 0o644)
	if _, err := fsctl(t, addr, "apply", setFile); err != nil {
		t.Fatal(err)
	}
	csvFile := filepath.Join(dir, "rows.csv")
	var b strings.Builder
	b.WriteString("entity_id,event_time,n,tags\n")
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&b, "e%d,2026-01-02T00:00:00Z,%d,\"a,b\"\n", i, i)
	}
	b.WriteString(",2026-01-02T00:00:00Z,1,\n") // row 300: no entity id
	os.WriteFile(csvFile, []byte(b.String()), 0o644)
	out, err := fsctl(t, addr, "import", "-set", "s", csvFile)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	for _, want := range []string{"imported 100%", "301 rows: 300 written, 0 stale, 1 rejected", `row 300 (entity ""): rows[300].entity_id: is required`} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	// Stream JSON Lines from stdin; an older row is stale.
	var sout bytes.Buffer
	stdin := strings.NewReader(`{"entity_id":"e1","event_time":"2026-01-03T00:00:00Z","n":1001}` + "\n" +
		`{"entity_id":"e2","event_time":"2026-01-01T00:00:00Z","n":5}` + "\n" +
		`{"entity_id":"e3","event_time":"2026-01-03T00:00:00Z","n":"x"}` + "\n")
	if err := run(context.Background(), []string{"-addr", addr, "stream", "-set", "s"}, func(string) string { return "" }, stdin, &sout, io.Discard); err == nil {
		t.Fatalf("stream accepted a line with a string for an int64 (want a parse error naming the line):\n%s", sout.String())
	} else if !strings.Contains(err.Error(), "line 3: n: want an integer") {
		t.Fatalf("stream error %v", err)
	}
	sout.Reset()
	stdin = strings.NewReader(`{"entity_id":"e1","event_time":"2026-01-03T00:00:00Z","n":1001}` + "\n" +
		`{"entity_id":"e2","event_time":"2026-01-01T00:00:00Z","n":5}` + "\n")
	if err := run(context.Background(), []string{"-addr", addr, "stream", "-set", "s"}, func(string) string { return "" }, stdin, &sout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sout.String(), "1 written, 1 stale, 0 rejected") {
		t.Fatalf("stream output: %s", sout.String())
	}
	out, err = fsctl(t, addr, "get", "-features", "s:n", "-entities", "e1,e2,e299")
	if err != nil || !strings.Contains(out, "e1      s:n      present  1001") || !strings.Contains(out, "e2      s:n      present  2") || !strings.Contains(out, "e299    s:n      present  299") {
		t.Fatalf("get after import and stream: %v\n%s", err, out)
	}
}
