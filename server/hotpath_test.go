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

// BenchmarkGetFeaturesHotPath calls the GetFeatures handler in process (no network on the
// gRPC side) on cached keys, so that -benchmem reports the allocations of our hot path:
// the cache read, decoding, and building the response.
func BenchmarkGetFeaturesHotPath(b *testing.B) {
	cfg := writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}
	be := newBenchEnv(b, cfg, "hot", "feature_", 20)
	svc, logger := be.svc, be.logger
	ctx := context.Background()
	var refs []string
	for i := 0; i < 20; i += 2 { // the request asks for half of them
		refs = append(refs, "hot:feature_"+strconv.Itoa(i))
	}
	ids := be.writeEntities(b, 100)
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
