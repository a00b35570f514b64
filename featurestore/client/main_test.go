package client

import (
	"context"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
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

// newService is one server replica's domain over the test's own ValKey and tables,
// wired as cmd/featurestore does.
func newService(t *testing.T, st *devstack.Stack) *featurestore.Service {
	t.Helper()
	svc, _, err := devstack.NewService(st.DB, st.Cache, nil,
		writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// serve runs the real gRPC handlers over svc on a loopback port, with the server's
// default request limit of 16 MiB (cmd/featurestore -max-message-bytes) and opts (test
// interceptors, TLS, auth), and returns the address.
func serve(t *testing.T, svc *featurestore.Service, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(16 << 20)}, opts...)
	g := server.NewGRPC(server.New(svc, logger, server.Options{}), nil, logger, opts...)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// startServer starts a stack and one server over it.
func startServer(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	// A horizon whose put window (half of it) is longer than the write timeout: rows of
	// megabytes through DynamoDB Local under the race detector may take most of it.
	st := shared.NewStack(t, 3*time.Second, devstack.ValkeyOptions{})
	return serve(t, newService(t, st), opts...)
}

func dial(t *testing.T, addr string, opts Options) *Client {
	t.Helper()
	c, err := Dial(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// applySet applies a feature set of int64 features n (and more names if given).
func applySet(t *testing.T, c *Client, name string, features ...*pb.FeatureSpec) {
	t.Helper()
	if len(features) == 0 {
		features = []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}}
	}
	_, err := c.ApplyFeatureSet(testCtx(t), &pb.FeatureSet{Name: name, EntityType: "e", Ttl: durationpb.New(0), Features: features})
	if err != nil {
		t.Fatalf("apply %s: %v", name, err)
	}
}

// calls counts RPCs by method, as seen by a server interceptor.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) add(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[method]++
	return c.n[method]
}

func (c *calls) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

// readValues reads feature ref for entities and returns each entity's int64 value, or
// -1 when it is not present.
func readValues(t *testing.T, c *Client, ref string, entities ...string) []int64 {
	t.Helper()
	resp, err := c.GetFeatures(testCtx(t), []string{ref}, entities)
	if err != nil {
		t.Fatalf("read %s: %v", ref, err)
	}
	out := make([]int64, len(entities))
	for i, r := range resp.GetResults() {
		out[i] = -1
		if r.GetStatuses()[0] == pb.FeatureStatus_FEATURE_STATUS_PRESENT {
			out[i] = r.GetValues()[0].GetInt64Value()
		}
	}
	return out
}
