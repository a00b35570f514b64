package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/loadgen"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// The benchmarks start their stack lazily, so `go test` of this package's unit tests
// does not pay for DynamoDB Local.
func startShared(b *testing.B) *devstack.Shared {
	b.Helper()
	s, err := devstack.StartShared(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Stop)
	return s
}

// benchEnv is a stack with a Service and a set of nf double features named prefix+i.
type benchEnv struct {
	shared *devstack.Shared
	st     *devstack.Stack
	svc    *featurestore.Service
	logger *slog.Logger
	fs     featurestore.FeatureSet
	lease  time.Duration
}

func newBenchEnv(b *testing.B, cfg writethrough.Config, set, prefix string, nf int) *benchEnv {
	shared := startShared(b)
	st := shared.NewStack(b, cfg.Lease, devstack.ValkeyOptions{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, _, err := devstack.NewService(st.DB, st.Cache, nil, cfg, logger)
	if err != nil {
		b.Fatal(err)
	}
	fs := featurestore.FeatureSet{Name: set, EntityType: "user"}
	for i := 0; i < nf; i++ {
		fs.Features = append(fs.Features, featurestore.FeatureSpec{Name: prefix + strconv.Itoa(i), Type: featurestore.TypeDouble})
	}
	if _, err := svc.ApplyFeatureSet(context.Background(), fs); err != nil {
		b.Fatal(err)
	}
	return &benchEnv{shared: shared, st: st, svc: svc, logger: logger, fs: fs, lease: cfg.Lease}
}

// writeEntities writes n entities (user-000, ...) with every feature of the set, waits
// until the lease has passed so that one read can cache them, and returns their ids.
func (be *benchEnv) writeEntities(b *testing.B, n int) []string {
	b.Helper()
	ids := make([]string, n)
	rows := make([]featurestore.WriteRow, n)
	for e := range ids {
		ids[e] = fmt.Sprintf("user-%03d", e)
		rows[e] = featurestore.WriteRow{EntityID: ids[e], EventTime: time.Now(), Values: map[string]featurestore.Value{}}
		for _, f := range be.fs.Features {
			rows[e].Values[f.Name] = featurestore.Value{Type: featurestore.TypeDouble, Float: float64(e)}
		}
	}
	if _, err := be.svc.WriteFeatures(context.Background(), be.fs.Name, rows); err != nil {
		b.Fatal(err)
	}
	// New keys are served from DynamoDB until the horizon passes; then one read caches them.
	time.Sleep(be.lease + 100*time.Millisecond)
	return ids
}

// baseline is the least a GetFeatures handler could do: the same pipelined ValKey GETs
// for the same keys, and a response carrying each entity's cached bytes, decoding nothing.
func serve(b *testing.B, srv *grpc.Server) pb.FeatureStoreServiceClient {
	_, c := serveAt(b, srv)
	return c
}

// serveAt serves srv on a free loopback port and returns its address and a client.
func serveAt(b *testing.B, srv *grpc.Server) (string, pb.FeatureStoreServiceClient) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return lis.Addr().String(), pb.NewFeatureStoreServiceClient(conn)
}

// BenchmarkGetFeaturesCached measures GetFeatures on cached keys against the baseline,
// interleaving the two call by call so both see the same machine noise. It reports the
// medians and p99s of both and their ratio (ours / baseline; 1.0 is "costs nothing").
func BenchmarkGetFeaturesCached(b *testing.B) {
	cfg := writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}
	be := newBenchEnv(b, cfg, "bench", "f", 10)
	st, svc, logger, fs := be.st, be.svc, be.logger, be.fs
	ctx := context.Background()
	var refs []string
	for _, f := range fs.Features {
		refs = append(refs, "bench:"+f.Name)
	}
	const entities = 100
	ids := be.writeEntities(b, entities)
	if _, err := svc.GetFeatures(ctx, refs, ids); err != nil {
		b.Fatal(err)
	}

	ours := serve(b, server.NewGRPC(server.New(svc, logger, server.Options{}), nil, logger).Server)
	bg := grpc.NewServer()
	pb.RegisterFeatureStoreServiceServer(bg, &loadgen.BareGets{Client: st.Cache.Client()})
	base := serve(b, bg)

	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("entities=%d/features=10", n), func(b *testing.B) {
			req := &pb.GetFeaturesRequest{Features: refs, EntityIds: ids[:n]}
			// Warm both paths (connections, scripts, memoized set).
			for i := 0; i < 50; i++ {
				call(b, ours, req)
				call(b, base, req)
			}
			oursNs := make([]float64, 0, b.N)
			baseNs := make([]float64, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				resp := call(b, ours, req)
				t1 := time.Now()
				call(b, base, req)
				t2 := time.Now()
				oursNs = append(oursNs, float64(t1.Sub(t0)))
				baseNs = append(baseNs, float64(t2.Sub(t1)))
				if i == 0 && resp.GetResults()[n-1].GetStatuses()[9] != pb.FeatureStatus_FEATURE_STATUS_PRESENT {
					b.Fatalf("benchmark keys are not present: %v", resp.GetResults()[n-1])
				}
			}
			b.StopTimer()
			om, op := quantiles(oursNs)
			bm, bp := quantiles(baseNs)
			b.ReportMetric(om, "ours-p50-ns")
			b.ReportMetric(op, "ours-p99-ns")
			b.ReportMetric(bm, "base-p50-ns")
			b.ReportMetric(bp, "base-p99-ns")
			b.ReportMetric(om/bm, "ratio-p50")
			b.ReportMetric(op/bp, "ratio-p99")
		})
	}
}

func call(b *testing.B, c pb.FeatureStoreServiceClient, req *pb.GetFeaturesRequest) *pb.GetFeaturesResponse {
	resp, err := c.GetFeatures(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

func quantiles(ns []float64) (p50, p99 float64) {
	s := append([]float64(nil), ns...)
	sort.Float64s(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}
