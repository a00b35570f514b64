package main

import (
	"context"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// collector is an in-process OTLP/gRPC receiver that keeps what it is sent.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	colmetricpb.UnimplementedMetricsServiceServer
	mu      sync.Mutex
	spans   []*tracepb.Span
	metrics map[string]bool
}

func (c *collector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type metricsReceiver struct {
	colmetricpb.UnimplementedMetricsServiceServer
	c *collector
}

func (m metricsReceiver) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	for _, rm := range req.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, mt := range sm.Metrics {
				m.c.metrics[mt.Name] = true
			}
		}
	}
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

// TestOTLPExport runs the server against an OTLP collector and checks that each RPC
// arrives as a server span with the ValKey and DynamoDB calls made for it as its
// descendants, and that the metrics arrive too.
func TestOTLPExport(t *testing.T) {
	col := &collector{metrics: map[string]bool{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, col)
	colmetricpb.RegisterMetricsServiceServer(gs, metricsReceiver{c: col})
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	ts := startServerAt(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": lis.Addr().String(), "FS_OTLP_INSECURE": "true"})
	c, err := client.Dial(ts.addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.API().ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{Name: "o", EntityType: "u",
		Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(ctx, "o", client.Row("a", time.Now(), map[string]*pb.Value{"n": client.Int64(1)})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetFeatures(ctx, []string{"o:n"}, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	// Stopping the server flushes both exporters.
	ts.cancel()
	if err := <-ts.done; err != nil {
		t.Fatalf("server: %v", err)
	}
	ts.done <- nil // for the cleanup registered by startServerAt

	col.mu.Lock()
	defer col.mu.Unlock()
	byID := map[string]*tracepb.Span{}
	for _, s := range col.spans {
		byID[hex.EncodeToString(s.SpanId)] = s
	}
	// under reports the RPC server span that s descends from, if any.
	under := func(s *tracepb.Span) string {
		for p := s; p != nil; p = byID[hex.EncodeToString(p.ParentSpanId)] {
			if p.Kind == tracepb.Span_SPAN_KIND_SERVER {
				return p.Name
			}
		}
		return ""
	}
	found := map[[2]string]bool{}
	for _, s := range col.spans {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			found[[2]string{under(s), s.Name}] = true
		}
	}
	for _, want := range [][2]string{
		{"featurestore.v1.FeatureStoreService/WriteFeatures", "valkey.MARK"},
		{"featurestore.v1.FeatureStoreService/WriteFeatures", "dynamodb.GetItem"},
		{"featurestore.v1.FeatureStoreService/WriteFeatures", "dynamodb.PutItem"},
		{"featurestore.v1.FeatureStoreService/WriteFeatures", "valkey.PUBLISH"},
		{"featurestore.v1.FeatureStoreService/GetFeatures", "valkey.GET"},
	} {
		if !found[want] {
			t.Errorf("no %s span under %s; client spans by RPC: %v", want[1], want[0], found)
		}
	}
	for _, name := range []string{"featurestore.rpc.requests", "featurestore.rpc.duration", "featurestore.rows", "featurestore.cache.lookups"} {
		if !col.metrics[name] {
			t.Errorf("metric %s not exported over OTLP; got %v", name, col.metrics)
		}
	}
}
