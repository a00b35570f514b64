package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// scrape returns the value of the sample whose name and labels contain every fragment.
func scrape(t *testing.T, url string) func(name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	text := string(b)
	return func(name string, labels ...string) float64 {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
		total := 0.0
	lines:
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			for _, l := range labels {
				if !strings.Contains(m[1], l) {
					continue lines
				}
			}
			v, _ := strconv.ParseFloat(m[2], 64)
			total += v
		}
		return total
	}
}

// TestMetrics drives known traffic through the real server and checks that the counters
// on /metrics moved by exactly that much.
func TestMetrics(t *testing.T) {
	ts := startServerAt(t, nil)
	c, err := client.Dial(ts.addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.API().ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{Name: "m", EntityType: "u",
		Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}}}}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if _, err := c.Write(ctx, "m", client.Row("a", old, map[string]*pb.Value{"n": client.Int64(1)}), client.Row("b", old, map[string]*pb.Value{"n": client.Int64(2)})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(ctx, "m", client.Row("a", old.Add(-time.Minute), map[string]*pb.Value{"n": client.Int64(0)})); err != nil { // stale
		t.Fatal(err)
	}
	w, err := c.NewStreamWriter(ctx, client.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Send("m", client.Row("c", old, map[string]*pb.Value{"n": client.Int64(3)}), client.Row("d", old, map[string]*pb.Value{"nope": client.Int64(3)}))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1600 * time.Millisecond) // past the lease: the next read heals the keys
	// cache is the cache counters now: hits, and keys stored by populates.
	cache := func() (hits, stored float64) {
		get := scrape(t, ts.metricsURL)
		return get("featurestore_cache_lookups_total", `result="hit"`), get("featurestore_cache_populates_total", `result="stored"`)
	}
	h0, s0 := cache()
	if _, err := c.GetFeatures(ctx, []string{"m:n"}, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	// The set and both rows are now served from the cache: each was a hit, or was read
	// from DynamoDB and stored. (The set may have been cached before the lease ended, by
	// a fenced read of the writes' validation.)
	h1, s1 := cache()
	if got := (h1 - h0) + (s1 - s0); got != 3 {
		t.Errorf("first read after the lease: %v hits + %v stored, want 3 together", h1-h0, s1-s0)
	}
	if s1-s0 < 2 {
		t.Errorf("first read after the lease stored %v keys, want both rows at least", s1-s0)
	}
	if _, err := c.GetFeatures(ctx, []string{"m:n"}, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	h2, s2 := cache()
	if h2-h1 != 3 || s2 != s1 {
		t.Errorf("second read: %v hits, %v stored; want 3 hits (set and rows), nothing stored", h2-h1, s2-s1)
	}
	// The failing read hits the set and row a before validation refuses it.
	if _, err := c.GetFeatures(ctx, []string{"m:nope"}, []string{"a"}); err == nil {
		t.Fatal("unknown feature accepted")
	}
	if h3, _ := cache(); h3-h2 != 2 {
		t.Errorf("failing read: %v hits, want 2", h3-h2)
	}

	get := scrape(t, ts.metricsURL)
	checks := []struct {
		what      string
		got, want float64
	}{
		{"GetFeatures OK", get("featurestore_rpc_requests_total", `rpc="/featurestore.v1.FeatureStoreService/GetFeatures"`, `code="OK"`), 2},
		{"GetFeatures NotFound", get("featurestore_rpc_requests_total", `rpc="/featurestore.v1.FeatureStoreService/GetFeatures"`, `code="NotFound"`), 1},
		{"WriteFeatures OK", get("featurestore_rpc_requests_total", `rpc="/featurestore.v1.FeatureStoreService/WriteFeatures"`, `code="OK"`), 2},
		{"StreamWriteFeatures OK", get("featurestore_rpc_requests_total", `rpc="/featurestore.v1.FeatureStoreService/StreamWriteFeatures"`, `code="OK"`), 1},
		{"GetFeatures latency observations", get("featurestore_rpc_duration_seconds_count", `rpc="/featurestore.v1.FeatureStoreService/GetFeatures"`), 3},
		{"ondemand written", get("featurestore_rows_total", `lane="ondemand"`, `status="written"`), 2},
		{"ondemand stale", get("featurestore_rows_total", `lane="ondemand"`, `status="stale"`), 1},
		{"stream written", get("featurestore_rows_total", `lane="stream"`, `status="written"`), 1},
		{"stream rejected", get("featurestore_rows_total", `lane="stream"`, `status="rejected"`), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if n := get("featurestore_dynamodb_attempts_total", `operation="TransactWriteItems"`); n < 1 {
		t.Errorf("no DynamoDB TransactWriteItems attempts counted")
	}
	if n := get("featurestore_dynamodb_attempts_total", `operation="BatchGetItem"`, `result="ok"`); n < 1 {
		t.Errorf("no DynamoDB BatchGetItem attempts counted")
	}
}
