package server_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// BenchmarkGetFeaturesHotPath calls the GetFeatures handler in process (no network on the
// gRPC side) on cached keys, so that -benchmem reports the allocations of our hot path:
// the cache read, decoding, and building the response.
func BenchmarkGetFeaturesHotPath(b *testing.B) {
	cfg := writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}
	be := newBenchEnv(b, cfg, "hot", "feature_", 20)
	svc, logger, fs := be.svc, be.logger, be.fs
	ctx := context.Background()
	var refs []string
	for i := 0; i < 20; i += 2 { // the request asks for half of them
		refs = append(refs, "hot:feature_"+strconv.Itoa(i))
	}
	ids := make([]string, 100)
	rows := make([]featurestore.WriteRow, 100)
	for e := range ids {
		ids[e] = fmt.Sprintf("user-%03d", e)
		rows[e] = featurestore.WriteRow{EntityID: ids[e], EventTime: time.Now(), Values: map[string]featurestore.Value{}}
		for _, f := range fs.Features {
			rows[e].Values[f.Name] = featurestore.Value{Type: featurestore.TypeDouble, Float: float64(e)}
		}
	}
	if _, err := svc.WriteFeatures(ctx, "hot", rows); err != nil {
		b.Fatal(err)
	}
	time.Sleep(cfg.Lease + 100*time.Millisecond)
	srv := server.New(svc, logger, server.Options{})
	for _, n := range []int{1, 100} {
		req := &pb.GetFeaturesRequest{Features: refs, EntityIds: ids[:n]}
		if _, err := srv.GetFeatures(ctx, req); err != nil { // heals the keys into the cache
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("entities=%d/features=10", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := srv.GetFeatures(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if resp.GetResults()[n-1].GetStatuses()[9] != pb.FeatureStatus_FEATURE_STATUS_PRESENT {
					b.Fatal("not present")
				}
			}
		})
	}
}
