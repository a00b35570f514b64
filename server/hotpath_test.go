package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/devstack"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// BenchmarkGetFeaturesHotPath calls the GetFeatures handler in process (no network on the
// gRPC side) on cached keys, so that -benchmem reports the allocations of our hot path:
// the cache read, decoding, and building the response.
func BenchmarkGetFeaturesHotPath(b *testing.B) {
	shared := startShared(b)
	cfg := featurestore.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}
	st := shared.NewStack(b, cfg.Lease, devstack.ValkeyOptions{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := featurestore.New(st.DB, st.Cache, nil, featurestore.SystemClock{}, cfg, logger)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	fs := featurestore.FeatureSet{Name: "hot", EntityType: "user"}
	var refs []string
	for i := 0; i < 20; i++ { // the request asks for half of them
		fs.Features = append(fs.Features, featurestore.FeatureSpec{Name: "feature_" + strconv.Itoa(i), Type: featurestore.TypeDouble})
		if i%2 == 0 {
			refs = append(refs, "hot:feature_"+strconv.Itoa(i))
		}
	}
	if _, err := svc.ApplyFeatureSet(ctx, fs); err != nil {
		b.Fatal(err)
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
