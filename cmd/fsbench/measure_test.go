package main

import (
	"strings"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/internal/loadgen"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{0.9, 0.1, 0.5}, 0.5}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestMediansTable: one row per scenario, each run's ratio, and the median of them.
func TestMediansTable(t *testing.T) {
	run := func(ours, base float64, oursP99, baseP99 time.Duration) []result {
		return []result{{sc: scenario{name: "GetFeatureColumns cached 1x10 uniform", baseline: "bare"},
			oursMax: loadgen.Result{Throughput: ours}, baseMax: loadgen.Result{Throughput: base},
			oursOpen: loadgen.Result{P99: oursP99}, baseOpen: loadgen.Result{P99: baseP99}}}
	}
	got := medians([][]result{run(80, 100, 2, 1), run(60, 100, 3, 1), run(90, 100, 1, 1)})
	want := "| GetFeatureColumns cached 1x10 uniform | bare | 0.80, 0.60, 0.90 | 0.80 | 2.00, 3.00, 1.00 | 2.00 |"
	if !strings.Contains(got, want) {
		t.Fatalf("medians table:\n%s\nwant a row %s", got, want)
	}
}
