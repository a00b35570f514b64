package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/internal/devstack"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

var shared *devstack.Shared

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, func(s *devstack.Shared) { shared = s }))
}

// startServer runs the real main wiring on a free port and returns a connection to it.
func startServer(t *testing.T, extra map[string]string) (*grpc.ClientConn, context.CancelFunc, chan error) {
	t.Helper()
	ts := startServerAt(t, extra)
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, ts.cancel, ts.done
}

// testServer is a server started by startServerAt.
type testServer struct {
	addr, metricsURL string
	valkey           *devstack.Valkey
	cancel           context.CancelFunc
	done             chan error
}

// startServerAt runs the real main wiring with a fresh ValKey and table prefix, the given
// environment on top, and returns its addresses.
// With FS_VALKEY_ADDRS in extra it uses that ValKey (replicas of one deployment share
// it, and FS_TABLE_PREFIX) instead of starting its own.
func startServerAt(t *testing.T, extra map[string]string) testServer {
	t.Helper()
	return startServerLogging(t, extra, io.Discard)
}

// syncBuffer is a bytes.Buffer safe for a server's logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServerLogging is startServerAt with the server's log going to logs.
func startServerLogging(t *testing.T, extra map[string]string, logs io.Writer) testServer {
	t.Helper()
	var vk *devstack.Valkey
	vkAddr := extra["FS_VALKEY_ADDRS"]
	if vkAddr == "" {
		var err error
		if vk, err = devstack.StartValkey(context.Background(), shared.ValkeyBin, devstack.ValkeyOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(vk.Stop)
		vkAddr = vk.Addr
	}
	env := map[string]string{
		"FS_LISTEN":            "127.0.0.1:0",
		"FS_DYNAMODB_ENDPOINT": shared.DynamoDB.Endpoint,
		"FS_VALKEY_ADDRS":      vkAddr,
		"FS_TABLE_PREFIX":      devstack.UniquePrefix(t.Name()),
		"FS_WRITE_TIMEOUT":     "1s",
		"FS_LEASE":             "1500ms",
		"FS_METRICS_LISTEN":    "127.0.0.1:0",
	}
	for k, v := range extra {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, func(k string) string { return env[k] }, pw, logs)
		pw.Close()
	}()
	addrCh, metricsCh := make(chan string, 1), make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				addrCh <- a
			}
			if a, ok := strings.CutPrefix(sc.Text(), "metrics on "); ok {
				metricsCh <- a
			}
		}
	}()
	ts := testServer{cancel: cancel, done: done, valkey: vk}
	select {
	case ts.addr = <-addrCh:
	case err := <-done:
		cancel()
		t.Fatalf("server exited at start-up: %v", err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("server did not start")
	}
	if env["FS_METRICS_LISTEN"] != "" {
		select {
		case ts.metricsURL = <-metricsCh:
		case <-time.After(10 * time.Second):
			t.Fatal("server did not print its metrics address")
		}
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ts
}

func TestEndToEnd(t *testing.T) {
	conn, _, _ := startServer(t, nil)
	ctx := context.Background()
	c := pb.NewFeatureStoreServiceClient(conn)

	applied, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{
		Name: "driver_stats", EntityType: "driver", Ttl: durationpb.New(time.Hour),
		Features: []*pb.FeatureSpec{
			{Name: "trips_today", Type: pb.ValueType_VALUE_TYPE_INT64},
			{Name: "embedding", Type: pb.ValueType_VALUE_TYPE_FLOAT_LIST},
		},
	}})
	if err != nil || applied.GetFeatureSet().GetVersion() != 1 {
		t.Fatalf("apply: %v %v", applied, err)
	}
	now := time.Now().Add(-time.Second)
	w, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "driver_stats", Rows: []*pb.FeatureRow{{
		EntityId: "d1", EventTime: timestamppb.New(now),
		Values: map[string]*pb.Value{
			"trips_today": {Kind: &pb.Value_Int64Value{Int64Value: 7}},
			"embedding":   {Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: []float32{0.5, 1}}}},
		},
	}}})
	if err != nil || w.GetResults()[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_WRITTEN {
		t.Fatalf("write: %v %v", w, err)
	}
	old, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "driver_stats", Rows: []*pb.FeatureRow{{
		EntityId: "d1", EventTime: timestamppb.New(now.Add(-time.Minute)),
		Values: map[string]*pb.Value{"trips_today": {Kind: &pb.Value_Int64Value{Int64Value: 1}}},
	}}})
	if err != nil || old.GetResults()[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_STALE {
		t.Fatalf("older write: %v %v, want STALE", old, err)
	}
	got, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{
		Features:  []string{"driver_stats:trips_today", "driver_stats:embedding"},
		EntityIds: []string{"d1", "unknown"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := got.GetResults()
	if len(r) != 2 || r[0].GetEntityId() != "d1" || r[1].GetEntityId() != "unknown" {
		t.Fatalf("results not in request order: %v", r)
	}
	if r[0].GetValues()[0].GetInt64Value() != 7 || len(r[0].GetValues()[1].GetFloatListValue().GetValues()) != 2 ||
		r[0].GetStatuses()[0] != pb.FeatureStatus_FEATURE_STATUS_PRESENT ||
		!r[0].GetEventTimes()[0].AsTime().Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("d1: %v", r[0])
	}
	if r[1].GetStatuses()[0] != pb.FeatureStatus_FEATURE_STATUS_NOT_FOUND {
		t.Fatalf("unknown entity: %v", r[1])
	}

	// Values older than the set's ttl are EXPIRED, not served.
	if _, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "driver_stats", Rows: []*pb.FeatureRow{{
		EntityId: "d2", EventTime: timestamppb.New(time.Now().Add(-2 * time.Hour)),
		Values: map[string]*pb.Value{"trips_today": {Kind: &pb.Value_Int64Value{Int64Value: 3}}},
	}}}); err != nil {
		t.Fatal(err)
	}
	exp, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"driver_stats:trips_today"}, EntityIds: []string{"d2"}})
	if err != nil || exp.GetResults()[0].GetStatuses()[0] != pb.FeatureStatus_FEATURE_STATUS_EXPIRED {
		t.Fatalf("expired value: %v %v", exp, err)
	}

	list, err := c.ListFeatureSets(ctx, &pb.ListFeatureSetsRequest{})
	if err != nil || len(list.GetFeatureSets()) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}

	// Health and reflection work out of the box (grpcurl needs reflection).
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "featurestore.v1.FeatureStoreService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Recv()
	if err != nil || !strings.Contains(rr.String(), "featurestore.v1.FeatureStoreService") {
		t.Fatalf("reflection: %v %v", rr, err)
	}
	rs.CloseSend()

	// GDPR requests are validated.
	_, err = pb.NewGdprServiceClient(conn).DeleteSubject(ctx, &pb.DeleteSubjectRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("DeleteSubject without subject: %v, want InvalidArgument", err)
	}
	_, err = pb.NewGdprServiceClient(conn).GetDeletion(ctx, &pb.GetDeletionRequest{Id: "del-0123456789abcdef"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetDeletion of an unknown id: %v, want NotFound", err)
	}
	// An id that cannot be one of ours (e.g. 3,000 bytes, past DynamoDB's key limit) is
	// the caller's mistake, not an outage.
	_, err = pb.NewGdprServiceClient(conn).GetDeletion(ctx, &pb.GetDeletionRequest{Id: strings.Repeat("d", 3000)})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GetDeletion of a 3,000-byte id: %v, want InvalidArgument", err)
	}
}

func TestEndToEndInvalidRequests(t *testing.T) {
	conn, _, _ := startServer(t, nil)
	ctx := context.Background()
	c := pb.NewFeatureStoreServiceClient(conn)
	if _, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{
		Name: "s", EntityType: "user", Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}},
	}}); err != nil {
		t.Fatal(err)
	}
	ts := timestamppb.Now()
	intv := &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: 1}}
	good := &pb.FeatureRow{EntityId: "good", EventTime: ts, Values: map[string]*pb.Value{"n": intv}}
	tests := []struct {
		name      string
		call      func() error
		wantCode  codes.Code
		wantField string
	}{
		{"apply without set", func() error { _, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{}); return err }, codes.InvalidArgument, "feature_set"},
		{"apply type change", func() error {
			_, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{Name: "s", EntityType: "user", Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_STRING}}}})
			return err
		}, codes.FailedPrecondition, "feature_set.features"},
		{"get unknown set", func() error { _, err := c.GetFeatureSet(ctx, &pb.GetFeatureSetRequest{Name: "nope"}); return err }, codes.NotFound, "name"},
		{"write unknown set", func() error {
			_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "nope", Rows: []*pb.FeatureRow{good}})
			return err
		}, codes.NotFound, "feature_set"},
		{"write unknown feature", func() error {
			_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "s", Rows: []*pb.FeatureRow{good, {EntityId: "x", EventTime: ts, Values: map[string]*pb.Value{"zz": intv}}}})
			return err
		}, codes.InvalidArgument, `rows[1].values["zz"]`},
		{"write wrong type", func() error {
			_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "s", Rows: []*pb.FeatureRow{good, {EntityId: "x", EventTime: ts, Values: map[string]*pb.Value{"n": {Kind: &pb.Value_BoolValue{BoolValue: true}}}}}})
			return err
		}, codes.InvalidArgument, `rows[1].values["n"]`},
		{"write empty value", func() error {
			_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "s", Rows: []*pb.FeatureRow{good, {EntityId: "x", EventTime: ts, Values: map[string]*pb.Value{"n": {}}}}})
			return err
		}, codes.InvalidArgument, `rows[1].values["n"]`},
		{"write empty entity id", func() error {
			_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "s", Rows: []*pb.FeatureRow{good, {EventTime: ts, Values: map[string]*pb.Value{"n": intv}}}})
			return err
		}, codes.InvalidArgument, "rows[1].entity_id"},
		{"write without event time", func() error {
			_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "s", Rows: []*pb.FeatureRow{good, {EntityId: "x", Values: map[string]*pb.Value{"n": intv}}}})
			return err
		}, codes.InvalidArgument, "rows[1].event_time"},
		{"read unknown feature", func() error {
			_, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"s:zz"}, EntityIds: []string{"a"}})
			return err
		}, codes.NotFound, "features[0]"},
		{"read empty entity id", func() error {
			_, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"s:n"}, EntityIds: []string{""}})
			return err
		}, codes.InvalidArgument, "entity_ids[0]"},
		{"read too many entities", func() error {
			_, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"s:n"}, EntityIds: make([]string, 1001)})
			return err
		}, codes.InvalidArgument, "entity_ids"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st := status.Convert(err)
			if st.Code() != tc.wantCode || !strings.HasPrefix(st.Message(), tc.wantField+":") {
				t.Fatalf("got %v %q, want %v naming %s", st.Code(), st.Message(), tc.wantCode, tc.wantField)
			}
		})
	}
	// None of the rejected writes wrote the valid row that came with them.
	got, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"s:n"}, EntityIds: []string{"good"}})
	if err != nil || got.GetResults()[0].GetStatuses()[0] != pb.FeatureStatus_FEATURE_STATUS_NOT_FOUND {
		t.Fatalf("row of a rejected request is readable: %v %v", got, err)
	}
}

// writePolicy writes an access policy file for a test and returns its path.
func writePolicy(t *testing.T, policy string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStartupErrorsAreClear(t *testing.T) {
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("127.0.0.1:%d", port)
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"valkey unreachable", map[string]string{"FS_VALKEY_ADDRS": dead, "FS_DYNAMODB_ENDPOINT": shared.DynamoDB.Endpoint}, "valkey unreachable"},
		{"dynamodb unreachable", map[string]string{"FS_DYNAMODB_ENDPOINT": "http://" + dead}, "dynamodb unreachable"},
		{"bad lease", map[string]string{"FS_WRITE_TIMEOUT": "5s", "FS_LEASE": "1s"}, "must be shorter than -lease"},
		{"bad duration", map[string]string{"FS_LEASE": "soon"}, "FS_LEASE"},
		{"auth without a GDPR hash key", map[string]string{"FS_DYNAMODB_ENDPOINT": shared.DynamoDB.Endpoint, "FS_AUTH_POLICY": writePolicy(t, "rules: {}\n")}, "GDPR hash key is required"},
		{"short GDPR hash key", map[string]string{"FS_DYNAMODB_ENDPOINT": shared.DynamoDB.Endpoint, "FS_GDPR_HASH_KEY": "short"}, "at least 32 bytes"},
		// Every cache change would wait for a replica that does not exist.
		{"replicas ValKey lacks", map[string]string{"FS_DYNAMODB_ENDPOINT": shared.DynamoDB.Endpoint, "FS_VALKEY_REPLICAS": "1"},
			"-valkey-replicas (FS_VALKEY_REPLICAS) 1: the replicas to wait for do not match ValKey's replicas: waiting for 1 replica, but the standalone primary has 0 replicas"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vk, err := devstack.StartValkey(context.Background(), shared.ValkeyBin, devstack.ValkeyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer vk.Stop()
			env := map[string]string{"FS_LISTEN": "127.0.0.1:0", "FS_VALKEY_ADDRS": vk.Addr, "FS_STARTUP_TIMEOUT": "3s"}
			for k, v := range tc.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDrainReportsNotServing(t *testing.T) {
	conn, cancel, _ := startServer(t, map[string]string{"FS_DRAIN_DELAY": "3s"})
	h := healthpb.NewHealthClient(conn)
	cancel() // SIGTERM
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "featurestore.v1.FeatureStoreService"})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health during drain: %v %v, want NOT_SERVING", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGracefulShutdown(t *testing.T) {
	conn, cancel, done := startServer(t, nil)
	h := healthpb.NewHealthClient(conn)
	if _, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v on shutdown", err)
		}
		done <- nil // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop")
	}
}
