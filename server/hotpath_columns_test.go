package server_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// BenchmarkReadHotPath calls the GetFeatures and GetFeatureColumns handlers in process on
// cached keys of one set of 200 double features, asking for every other one, so that
// -benchmem compares the two forms' allocations per request at the sizes of fsbench's
// cached scenarios (the cache read, decoding and building the response; no network).
func BenchmarkReadHotPath(b *testing.B) {
	cfg := writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}
	be := newBenchEnv(b, cfg, "wide", "f", 200)
	svc, logger := be.svc, be.logger
	ctx := context.Background()
	const entities = 100
	ids := be.writeEntities(b, entities)
	srv := server.New(svc, logger, server.Options{})
	var all []string
	for i := 0; i < 200; i += 2 {
		all = append(all, "wide:f"+strconv.Itoa(i))
	}
	if _, err := srv.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: all, EntityIds: ids}); err != nil { // heals the keys into the cache
		b.Fatal(err)
	}
	for _, size := range []struct{ n, nf int }{{1, 10}, {10, 100}, {100, 10}, {100, 100}} {
		refs, ids := all[:size.nf], ids[:size.n]
		b.Run(fmt.Sprintf("rows/entities=%d/features=%d", size.n, size.nf), func(b *testing.B) {
			req := &pb.GetFeaturesRequest{Features: refs, EntityIds: ids}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := srv.GetFeatures(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if resp.GetResults()[size.n-1].GetStatuses()[size.nf-1] != pb.FeatureStatus_FEATURE_STATUS_PRESENT {
					b.Fatal("not present")
				}
			}
		})
		b.Run(fmt.Sprintf("columns/entities=%d/features=%d", size.n, size.nf), func(b *testing.B) {
			req := &pb.GetFeatureColumnsRequest{Features: refs, EntityIds: ids}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := srv.GetFeatureColumns(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if resp.GetColumns()[size.nf-1].GetStatuses()[size.n-1] != pb.FeatureStatus_FEATURE_STATUS_PRESENT {
					b.Fatal("not present")
				}
			}
		})
	}
}

// BenchmarkReadEndToEnd is BenchmarkReadHotPath through the real gRPC transport on
// loopback, with a client of grpc's default codec: marshalling, unmarshalling and the
// transport are part of each request, and -benchmem counts the allocations of client and
// server together (one process). Row-wise, every value reaches the client as its own
// Value message with a Timestamp; columnar, a column is one message of packed arrays.
func BenchmarkReadEndToEnd(b *testing.B) {
	cfg := writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}
	be := newBenchEnv(b, cfg, "wide", "f", 200)
	ctx := context.Background()
	ids := be.writeEntities(b, 100)
	_, c := serveAt(b, server.NewGRPC(server.New(be.svc, be.logger, server.Options{}), nil, be.logger).Server)
	var all []string
	for i := 0; i < 200; i += 2 {
		all = append(all, "wide:f"+strconv.Itoa(i))
	}
	if _, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: all, EntityIds: ids}); err != nil { // heals the keys into the cache
		b.Fatal(err)
	}
	for _, size := range []struct{ n, nf int }{{1, 10}, {10, 100}, {100, 10}, {100, 100}} {
		refs, ids := all[:size.nf], ids[:size.n]
		b.Run(fmt.Sprintf("rows/entities=%d/features=%d", size.n, size.nf), func(b *testing.B) {
			req := &pb.GetFeaturesRequest{Features: refs, EntityIds: ids}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := c.GetFeatures(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if resp.GetResults()[size.n-1].GetStatuses()[size.nf-1] != pb.FeatureStatus_FEATURE_STATUS_PRESENT {
					b.Fatal("not present")
				}
			}
		})
		b.Run(fmt.Sprintf("columns/entities=%d/features=%d", size.n, size.nf), func(b *testing.B) {
			req := &pb.GetFeatureColumnsRequest{Features: refs, EntityIds: ids}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := c.GetFeatureColumns(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if resp.GetColumns()[size.nf-1].GetStatuses()[size.n-1] != pb.FeatureStatus_FEATURE_STATUS_PRESENT {
					b.Fatal("not present")
				}
			}
		})
	}
}
