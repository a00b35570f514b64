package server_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/client"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// BenchmarkReadHotPath calls the GetFeatures and GetFeatureColumns handlers in process on
// cached keys of one set of 200 double features, asking for every other one, so that
// -benchmem compares the two forms' allocations per request at the sizes of fsbench's
// cached scenarios (the cache read, decoding and building the response; no network).
func BenchmarkReadHotPath(b *testing.B) {
	be, ids := newWideEnv(b)
	srv := server.New(be.svc, be.logger, server.Options{})
	benchReadForms(b, ids, srv.GetFeatures, srv.GetFeatureColumns)
}

// BenchmarkReadEndToEnd is BenchmarkReadHotPath through the real gRPC transport on
// loopback, with a client of grpc's default codec: marshalling, unmarshalling and the
// transport are part of each request, and -benchmem counts the allocations of client and
// server together (one process). Row-wise, every value reaches the client as its own
// Value message with a Timestamp; columnar, a column is one message of packed arrays.
//
// A third form reads the columns as a Go user does, through featurestore/client's
// ReadColumns (its own codec decodes the response into the typed views' arrays), and
// reads every column's statuses.
func BenchmarkReadEndToEnd(b *testing.B) {
	be, ids := newWideEnv(b)
	addr, c := serveAt(b, server.NewGRPC(server.New(be.svc, be.logger, server.Options{}), nil, be.logger).Server)
	benchReadForms(b, ids,
		func(ctx context.Context, req *pb.GetFeaturesRequest) (*pb.GetFeaturesResponse, error) {
			return c.GetFeatures(ctx, req)
		},
		func(ctx context.Context, req *pb.GetFeatureColumnsRequest) (*pb.GetFeatureColumnsResponse, error) {
			return c.GetFeatureColumns(ctx, req)
		})
	gc, err := client.Dial(addr, client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gc.Close() })
	ctx := context.Background()
	for _, size := range readSizes {
		refs, ids := wideRefs[:size.nf], ids[:size.n]
		b.Run(fmt.Sprintf("client-columns/entities=%d/features=%d", size.n, size.nf), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				cols, err := gc.ReadColumns(ctx, refs, ids)
				if err != nil {
					b.Fatal(err)
				}
				for _, ref := range refs {
					if st, err := cols.Statuses(ref); err != nil || st[size.n-1] != pb.FeatureStatus_FEATURE_STATUS_PRESENT {
						b.Fatalf("%s: %v %v", ref, st, err)
					}
				}
			}
		})
	}
}

// readSizes are fsbench's cached sizes; wideRefs asks for every other feature of the
// wide set.
var (
	readSizes = []struct{ n, nf int }{{1, 10}, {10, 100}, {100, 10}, {100, 100}}
	wideRefs  = func() (refs []string) {
		for i := 0; i < 200; i += 2 {
			refs = append(refs, "wide:f"+strconv.Itoa(i))
		}
		return refs
	}()
)

// newWideEnv is a stack with a set "wide" of 200 double features f0..f199 and 100
// entities written with all of them.
func newWideEnv(b *testing.B) (*benchEnv, []string) {
	cfg := writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}
	be := newBenchEnv(b, cfg, "wide", "f", 200)
	return be, be.writeEntities(b, 100)
}

// benchReadForms runs both forms of the read at fsbench's cached sizes, asking for every
// other feature of the wide set, after one read that heals every key into the cache.
func benchReadForms(b *testing.B, ids []string,
	rows func(context.Context, *pb.GetFeaturesRequest) (*pb.GetFeaturesResponse, error),
	cols func(context.Context, *pb.GetFeatureColumnsRequest) (*pb.GetFeatureColumnsResponse, error)) {
	ctx := context.Background()
	if _, err := rows(ctx, &pb.GetFeaturesRequest{Features: wideRefs, EntityIds: ids}); err != nil {
		b.Fatal(err)
	}
	for _, size := range readSizes {
		refs, ids := wideRefs[:size.nf], ids[:size.n]
		b.Run(fmt.Sprintf("rows/entities=%d/features=%d", size.n, size.nf), func(b *testing.B) {
			req := &pb.GetFeaturesRequest{Features: refs, EntityIds: ids}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := rows(ctx, req)
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
				resp, err := cols(ctx, req)
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
