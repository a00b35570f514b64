package featurestore_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsfeatures/featurestore/featurestore"
)

// The registry keeps one history entry per version, saying what changed and when; an
// identical apply adds none, a caller cannot write its own, and the oldest entries go
// past MaxHistory.
func TestFeatureSetHistory(t *testing.T) {
	e := newEnv(t)
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	svc := e.replicaOn(t, e.mem, e.mem, clk)
	fs := driverSet
	fs.History = []featurestore.VersionChange{{Version: 99, Change: "forged"}}
	apply(t, svc, fs)
	clk.Add(time.Hour)
	next := driverSet
	next.Features = append(append([]featurestore.FeatureSpec(nil), driverSet.Features...), featurestore.FeatureSpec{Name: "embedding", Type: featurestore.TypeFloatList})
	next.TTL, next.Owner = 2*time.Hour, "mobility"
	apply(t, svc, next)
	clk.Add(time.Hour)
	apply(t, svc, next) // identical: no new version

	got, err := svc.GetFeatureSet(t.Context(), "drivers")
	if err != nil {
		t.Fatal(err)
	}
	want := []featurestore.VersionChange{
		{Version: 1, AppliedAt: 1_800_000_000_000_000, Change: "created with 2 features"},
		{Version: 2, AppliedAt: 1_800_003_600_000_000, Change: `added embedding (float_list); ttl 24h0m0s → 2h0m0s; owner "" → "mobility"`},
	}
	if diff := cmp.Diff(want, got.History); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}

	for i := range featurestore.MaxHistory + 5 {
		next.Description = fmt.Sprintf("revision %d", i)
		apply(t, svc, next)
	}
	got, err = svc.GetFeatureSet(t.Context(), "drivers")
	if err != nil {
		t.Fatal(err)
	}
	h := got.History
	if len(h) != featurestore.MaxHistory || h[len(h)-1].Version != got.Version || h[0].Version != got.Version-featurestore.MaxHistory+1 ||
		!strings.Contains(h[len(h)-1].Change, "description changed") {
		t.Errorf("after %d more versions: %d entries from v%d to v%d (set at v%d)", featurestore.MaxHistory+5, len(h), h[0].Version, h[len(h)-1].Version, got.Version)
	}
}
