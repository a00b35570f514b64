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
