package featurestore_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/memdb"
)

// The domain's tests run on the in-memory database and a real valkey-server (which starts
// in milliseconds): no JVM. The write-through protocol has its own tests in
// featurestore/writethrough; the stores run their contract against DynamoDB Local.

// Short leases keep the tests fast; the protocol does not depend on their size.
var storeCfg = writethrough.Config{WriteTimeout: 400 * time.Millisecond, Lease: 600 * time.Millisecond}

type env struct {
	*devstack.Stack
	mem *memdb.DB
	svc *featurestore.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := devstack.NewMemoryStack(t, storeCfg.Lease, devstack.ValkeyOptions{}, memdb.Options{})
	e := &env{Stack: st, mem: st.DB.(*memdb.DB)}
	e.svc = e.newReplica(t)
	return e
}

// newReplica is another server replica on the same stores.
func (e *env) newReplica(t *testing.T) *featurestore.Service {
	t.Helper()
	svc, store, err := devstack.NewService(e.DB, e.Cache, nil, storeCfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = store.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return svc
}

// stored returns the database's item for key, bypassing the cache.
func (e *env) stored(t *testing.T, key writethrough.Key) (writethrough.Item, bool) {
	t.Helper()
	got, err := e.mem.GetItems(context.Background(), []writethrough.Key{key})
	if err != nil {
		t.Fatal(err)
	}
	it, ok := got[key]
	return it, ok
}

// cached reports whether the cache holds an entry for key.
func (e *env) cached(t *testing.T, key writethrough.Key) bool {
	t.Helper()
	c := e.Cache.Client()
	n, err := c.Do(context.Background(), c.B().Exists().Key(key.CacheKey()).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

var driverSet = featurestore.FeatureSet{
	Name:       "drivers",
	EntityType: "driver",
	TTL:        24 * time.Hour,
	Features: []featurestore.FeatureSpec{
		{Name: "trips", Type: featurestore.TypeInt64},
		{Name: "rating", Type: featurestore.TypeDouble},
	},
}

func apply(t *testing.T, svc *featurestore.Service, fs featurestore.FeatureSet) featurestore.FeatureSet {
	t.Helper()
	out, err := svc.ApplyFeatureSet(context.Background(), fs)
	if err != nil {
		t.Fatalf("apply %s: %v", fs.Name, err)
	}
	return out
}

func writeTrips(t *testing.T, svc *featurestore.Service, entity string, trips int64, at time.Time) featurestore.RowResult {
	t.Helper()
	res, err := svc.WriteFeatures(context.Background(), "drivers", []featurestore.WriteRow{{
		EntityID: entity, EventTime: at,
		Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: trips}},
	}})
	if err != nil {
		t.Fatalf("write %s trips=%d: %v", entity, trips, err)
	}
	return res[0]
}

func readTrips(t *testing.T, svc *featurestore.Service, entity string) featurestore.FeatureValue {
	t.Helper()
	res, err := svc.GetFeatures(context.Background(), []string{"drivers:trips"}, []string{entity})
	if err != nil {
		t.Fatalf("read %s: %v", entity, err)
	}
	return res.Cells[0]
}

func TestStaleAndRetriedWrites(t *testing.T) {
	e := newEnv(t)
	apply(t, e.svc, driverSet)
	t0 := time.Now().Add(-time.Minute)
	w := writeTrips(t, e.svc, "d1", 2, t0)
	if w.Status != featurestore.Written {
		t.Fatalf("first write: %+v", w)
	}
	old := writeTrips(t, e.svc, "d1", 1, t0.Add(-time.Second))
	if old.Status != featurestore.Stale || old.Version != w.Version || old.Reason != featurestore.ReasonStale {
		t.Fatalf("older write: %+v, want Stale (reason STALE) at version %d", old, w.Version)
	}
	// A retry of an applied write (same time, same value) is an idempotent success.
	retry := writeTrips(t, e.svc, "d1", 2, t0)
	if retry.Status != featurestore.Written || retry.Version != w.Version {
		t.Fatalf("retried write: %+v, want Written at version %d", retry, w.Version)
	}
	// Same time, different value: the first write at a given time wins.
	if conflict := writeTrips(t, e.svc, "d1", 3, t0); conflict.Status != featurestore.Stale {
		t.Fatalf("same-time different-value write: %+v, want Stale", conflict)
	}
	if got := readTrips(t, e.svc, "d1"); got.Value.Int != 2 {
		t.Fatalf("read: %d, want 2", got.Value.Int)
	}
	if item, _ := e.stored(t, featurestore.RowKey("drivers", "d1")); item.Version != w.Version {
		t.Fatalf("stored version %d, want %d", item.Version, w.Version)
	}
}

func TestReplicaSeesNewestFeatureSet(t *testing.T) {
	e := newEnv(t)
	other := e.newReplica(t)
	apply(t, e.svc, driverSet)
	writeTrips(t, other, "d1", 1, time.Now()) // other has now seen version 1

	v2 := driverSet
	v2.Features = append(append([]featurestore.FeatureSpec(nil), driverSet.Features...), featurestore.FeatureSpec{Name: "city", Type: featurestore.TypeString})
	if got := apply(t, e.svc, v2); got.Version != 2 {
		t.Fatalf("applied version %d, want 2", got.Version)
	}
	_, err := other.WriteFeatures(context.Background(), "drivers", []featurestore.WriteRow{{
		EntityID: "d1", EventTime: time.Now(),
		Values: map[string]featurestore.Value{"city": {Type: featurestore.TypeString, Str: "Lisbon"}},
	}})
	if err != nil {
		t.Fatalf("write of the new feature through another replica: %v", err)
	}
	bad := v2
	bad.Features = []featurestore.FeatureSpec{{Name: "trips", Type: featurestore.TypeString}, {Name: "rating", Type: featurestore.TypeDouble}, {Name: "city", Type: featurestore.TypeString}}
	if _, err := other.ApplyFeatureSet(context.Background(), bad); featurestore.ErrorKind(err) != featurestore.KindFailedPrecondition {
		t.Fatalf("type change: err %v, want FailedPrecondition", err)
	}
	same, err := other.ApplyFeatureSet(context.Background(), v2)
	if err != nil || same.Version != 2 {
		t.Fatalf("re-apply: version %d err %v, want 2 and no error", same.Version, err)
	}
}

func TestListFeatureSetsPages(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		fs := driverSet
		fs.Name = name
		apply(t, e.svc, fs)
	}
	seen := map[string]bool{}
	token := ""
	for pages := 0; ; pages++ {
		sets, next, err := e.svc.ListFeatureSets(context.Background(), token, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(sets) > 2 || pages > 5 {
			t.Fatalf("page %d: %d sets", pages, len(sets))
		}
		for _, s := range sets {
			if seen[s.Name] {
				t.Fatalf("%s listed twice", s.Name)
			}
			seen[s.Name] = true
		}
		if next == "" {
			break
		}
		token = next
	}
	if len(seen) != 5 {
		t.Fatalf("listed %v, want 5 sets", seen)
	}
	for _, tc := range []struct {
		token string
		size  int
	}{{"!!!", 0}, {"", -1}, {"", featurestore.MaxPageSize + 1}} {
		if _, _, err := e.svc.ListFeatureSets(context.Background(), tc.token, tc.size); featurestore.ErrorKind(err) != featurestore.KindInvalid {
			t.Fatalf("token %q size %d: %v, want Invalid", tc.token, tc.size, err)
		}
	}
}

func TestInvalidRequestsWriteNothing(t *testing.T) {
	e := newEnv(t)
	apply(t, e.svc, driverSet)
	personal := featurestore.FeatureSet{Name: "riders", EntityType: "rider", PersonalData: true,
		Features: []featurestore.FeatureSpec{{Name: "age", Type: featurestore.TypeInt64}}}
	apply(t, e.svc, personal)
	now := time.Now()
	good := featurestore.WriteRow{EntityID: "good", EventTime: now, Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: 1}}}
	tests := []struct {
		name     string
		set      string
		rows     []featurestore.WriteRow
		wantKind featurestore.Kind
	}{
		{"unknown set", "nope", []featurestore.WriteRow{good}, featurestore.KindNotFound},
		{"unknown feature", "drivers", []featurestore.WriteRow{good, {EntityID: "x", EventTime: now, Values: map[string]featurestore.Value{"nope": {Type: featurestore.TypeInt64}}}}, featurestore.KindInvalid},
		{"wrong type", "drivers", []featurestore.WriteRow{good, {EntityID: "x", EventTime: now, Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeString, Str: "1"}}}}, featurestore.KindInvalid},
		{"empty entity id", "drivers", []featurestore.WriteRow{good, {EntityID: "", EventTime: now, Values: good.Values}}, featurestore.KindInvalid},
		{"no event time", "drivers", []featurestore.WriteRow{good, {EntityID: "x", Values: good.Values}}, featurestore.KindInvalid},
		{"no values", "drivers", []featurestore.WriteRow{good, {EntityID: "x", EventTime: now}}, featurestore.KindInvalid},
		{"personal data without subject", "riders", []featurestore.WriteRow{{EntityID: "good", EventTime: now, Values: map[string]featurestore.Value{"age": {Type: featurestore.TypeInt64, Int: 30}}}}, featurestore.KindInvalid},
		{"too many rows", "drivers", make([]featurestore.WriteRow, featurestore.DefaultConfig().MaxRows+1), featurestore.KindInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.WriteFeatures(context.Background(), tc.set, tc.rows)
			if got := featurestore.ErrorKind(err); err == nil || got != tc.wantKind {
				t.Fatalf("err = %v (kind %v), want kind %v", err, got, tc.wantKind)
			}
			for _, set := range []string{"drivers", "riders"} {
				key := featurestore.RowKey(set, "good")
				if _, found := e.stored(t, key); found {
					t.Fatalf("%s: stored after a rejected request, want nothing written", key.PK)
				}
				if e.cached(t, key) {
					t.Fatalf("%s: the cache holds an entry after a rejected request", key.PK)
				}
			}
		})
	}

	reads := []struct {
		name     string
		refs     []string
		ids      []string
		wantKind featurestore.Kind
	}{
		{"unknown set", []string{"nope:trips"}, []string{"d1"}, featurestore.KindNotFound},
		{"unknown feature", []string{"drivers:nope"}, []string{"d1"}, featurestore.KindNotFound},
		{"bad ref", []string{"drivers.trips"}, []string{"d1"}, featurestore.KindInvalid},
		{"empty entity id", []string{"drivers:trips"}, []string{"d1", ""}, featurestore.KindInvalid},
		{"no entities", []string{"drivers:trips"}, nil, featurestore.KindInvalid},
		{"too many entities", []string{"drivers:trips"}, make([]string, featurestore.DefaultConfig().MaxEntities+1), featurestore.KindInvalid},
		{"mixed entity types", []string{"drivers:trips", "riders:age"}, []string{"d1"}, featurestore.KindInvalid},
	}
	for _, tc := range reads {
		t.Run("read "+tc.name, func(t *testing.T) {
			_, err := e.svc.GetFeatures(context.Background(), tc.refs, tc.ids)
			if got := featurestore.ErrorKind(err); err == nil || got != tc.wantKind {
				t.Fatalf("err = %v (kind %v), want kind %v", err, got, tc.wantKind)
			}
		})
	}
}

func TestDeleteEntities(t *testing.T) {
	e := newEnv(t)
	apply(t, e.svc, driverSet)
	t0 := time.Now().Add(-time.Minute)
	w := writeTrips(t, e.svc, "d1", 5, t0)
	readTrips(t, e.svc, "d1")
	dels, err := e.svc.DeleteEntities(context.Background(), "drivers", []string{"d1", "d9", "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dels) != 3 || !dels[0].Existed || dels[1].Existed || dels[2] != dels[0] || dels[0].Version <= w.Version {
		t.Fatalf("deletions %+v, want d1 existed (twice, one delete) at a version above %d, d9 not", dels, w.Version)
	}
	if got := readTrips(t, e.svc, "d1"); got.Status != featurestore.NotFoundStatus {
		t.Fatalf("read after delete: %+v", got)
	}
	c := e.Cache.Client()
	if err := c.Do(context.Background(), c.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got := readTrips(t, e.svc, "d1"); got.Status != featurestore.NotFoundStatus {
		t.Fatalf("read after delete and a cache flush: %+v", got)
	}
	// A retry of the deleted write (or any value at or before it) cannot bring it back.
	if r := writeTrips(t, e.svc, "d1", 5, t0); r.Status != featurestore.Stale {
		t.Fatalf("retried write after the delete: %+v, want STALE", r)
	}
	if r := writeTrips(t, e.svc, "d1", 6, t0.Add(time.Second)); r.Status != featurestore.Written || r.Version <= dels[0].Version {
		t.Fatalf("newer write after the delete: %+v, want WRITTEN above version %d", r, dels[0].Version)
	}
	if got := readTrips(t, e.svc, "d1"); got.Value.Int != 6 {
		t.Fatalf("read after the rewrite: %+v", got)
	}
	for _, tc := range []struct {
		set  string
		ids  []string
		kind featurestore.Kind
	}{
		{"nope", []string{"d1"}, featurestore.KindNotFound},
		{"drivers", nil, featurestore.KindInvalid},
		{"drivers", []string{""}, featurestore.KindInvalid},
	} {
		if _, err := e.svc.DeleteEntities(context.Background(), tc.set, tc.ids); featurestore.ErrorKind(err) != tc.kind {
			t.Fatalf("DeleteEntities(%q, %q): %v, want %v", tc.set, tc.ids, err, tc.kind)
		}
	}
}

func TestDeleteFeatureSetRetires(t *testing.T) {
	e := newEnv(t)
	other := e.newReplica(t)
	apply(t, e.svc, driverSet)
	writeTrips(t, other, "d1", 1, time.Now()) // the other replica memoizes the set
	retired, err := e.svc.DeleteFeatureSet(context.Background(), "drivers")
	if err != nil || retired.Name != "drivers" || retired.Retired {
		t.Fatalf("retire: %+v %v, want the set as it was", retired, err)
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"get":  func() error { _, err := other.GetFeatureSet(ctx, "drivers"); return err }(),
		"read": func() error { _, err := other.GetFeatures(ctx, []string{"drivers:trips"}, []string{"d1"}); return err }(),
		"write": func() error {
			_, err := other.WriteFeatures(ctx, "drivers", []featurestore.WriteRow{{EntityID: "d1", EventTime: time.Now(), Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: 2}}}})
			return err
		}(),
		"delete": func() error { _, err := other.DeleteEntities(ctx, "drivers", []string{"d1"}); return err }(),
		"again":  func() error { _, err := other.DeleteFeatureSet(ctx, "drivers"); return err }(),
	} {
		if featurestore.ErrorKind(err) != featurestore.KindNotFound || featurestore.ErrorReason(err) != featurestore.ReasonFeatureSetRetired {
			t.Errorf("%s after retire: %v (reason %s), want NotFound FEATURE_SET_RETIRED", name, err, featurestore.ErrorReason(err))
		}
	}
	if _, err := other.ApplyFeatureSet(ctx, driverSet); featurestore.ErrorKind(err) != featurestore.KindFailedPrecondition {
		t.Fatalf("re-creating a retired name: %v, want FailedPrecondition", err)
	}
	if sets, _, err := e.svc.ListFeatureSets(ctx, "", 0); err != nil || len(sets) != 0 {
		t.Fatalf("list after retire: %+v %v, want empty", sets, err)
	}
	if _, err := e.svc.DeleteFeatureSet(ctx, "never"); featurestore.ErrorReason(err) != featurestore.ReasonUnknownFeatureSet {
		t.Fatalf("retiring an unknown set: %v", err)
	}
}
