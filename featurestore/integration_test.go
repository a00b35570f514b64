package featurestore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/devstack"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
)

var shared *devstack.Shared

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, func(s *devstack.Shared) { shared = s }))
}

// Short leases keep the tests fast; the protocol does not depend on their size.
var testCfg = featurestore.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}

// countingDB counts database reads so tests can tell cache hits from misses.
type countingDB struct {
	featurestore.Database
	reads atomic.Int64
}

func (c *countingDB) GetItem(ctx context.Context, k featurestore.ItemKey) (featurestore.Item, bool, error) {
	c.reads.Add(1)
	return c.Database.GetItem(ctx, k)
}

func (c *countingDB) GetItems(ctx context.Context, keys []featurestore.ItemKey) (map[featurestore.ItemKey]featurestore.Item, error) {
	c.reads.Add(int64(len(keys)))
	return c.Database.GetItems(ctx, keys)
}

type env struct {
	*devstack.Stack
	svc *featurestore.Service
	db  *countingDB
}

func newEnv(t *testing.T, vo devstack.ValkeyOptions) *env {
	t.Helper()
	st := shared.NewStack(t, testCfg.Lease, vo)
	e := &env{Stack: st, db: &countingDB{Database: st.DB}}
	e.svc = e.newReplica(t)
	return e
}

// newReplica is another server replica on the same stores.
func (e *env) newReplica(t *testing.T) *featurestore.Service {
	t.Helper()
	svc, err := featurestore.New(e.db, e.Cache, nil, featurestore.SystemClock{}, testCfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return svc
}

// envelope returns the decoded cache entry of key, or ok=false if missing.
func (e *env) envelope(t *testing.T, key featurestore.ItemKey) (valkey.Envelope, bool) {
	t.Helper()
	c := e.Cache.Client()
	b, err := c.Do(context.Background(), c.B().Get().Key(key.CacheKey()).Build()).AsBytes()
	if err != nil {
		return valkey.Envelope{}, false
	}
	env, err := valkey.DecodeEnvelope(b)
	if err != nil {
		t.Fatalf("decode envelope of %s: %v", key.CacheKey(), err)
	}
	return env, true
}

func (e *env) del(t *testing.T, key featurestore.ItemKey) {
	t.Helper()
	c := e.Cache.Client()
	if err := c.Do(context.Background(), c.B().Del().Key(key.CacheKey()).Build()).Error(); err != nil {
		t.Fatal(err)
	}
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

// writeRetrying writes rows as a client should: UNAVAILABLE means the outcome is unknown,
// and retrying is safe because merge is idempotent. Bulk setup writes use it, because a
// loaded DynamoDB Local can miss the tests' short write deadline.
func writeRetrying(t *testing.T, svc *featurestore.Service, set string, rows []featurestore.WriteRow) []featurestore.RowResult {
	t.Helper()
	res, _ := writeAttempts(t, svc, set, rows)
	return res
}

// writeAttempts is writeRetrying that also reports how many attempts it took. An attempt
// that failed leaves its expired tokens on the keys, so the next read of them goes to the
// database once (and heals them) even after a successful retry.
func writeAttempts(t *testing.T, svc *featurestore.Service, set string, rows []featurestore.WriteRow) ([]featurestore.RowResult, int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		res, err := svc.WriteFeatures(context.Background(), set, rows)
		if err == nil {
			return res, attempt
		}
		if featurestore.ErrorKind(err) != featurestore.KindUnavailable || attempt == 5 {
			t.Fatalf("write %d rows to %s: %v", len(rows), set, err)
		}
		time.Sleep(testCfg.Lease)
	}
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
	vals := res.Cells
	if err != nil {
		t.Fatalf("read %s: %v", entity, err)
	}
	return vals[0]
}

// settle waits past the lease (and so the horizon) so that keys created in this test can
// be served from the cache.
func settle() { time.Sleep(testCfg.Lease + 100*time.Millisecond) }

func TestWriteThenReadFromCache(t *testing.T) {
	e := newEnv(t, devstack.ValkeyOptions{})
	apply(t, e.svc, driverSet)
	t0 := time.Now().Add(-time.Minute)
	r1 := writeTrips(t, e.svc, "d1", 1, t0)
	if r1.Status != featurestore.Written {
		t.Fatalf("first write: status %v, want Written", r1.Status)
	}
	// A key that was not cached before is recreated with a horizon: it is served from the
	// database, correctly, until the horizon passes.
	if got := readTrips(t, e.svc, "d1"); got.Status != featurestore.Present || got.Value.Int != 1 {
		t.Fatalf("read after first write: %+v", got)
	}
	settle()
	readTrips(t, e.svc, "d1") // heals the key: populated from the database

	key := featurestore.RowKey("drivers", "d1")
	env, ok := e.envelope(t, key)
	if !ok || env.Dirty || env.Version != r1.Version {
		t.Fatalf("after heal: envelope %+v (present %v), want VALUE at version %d", env, ok, r1.Version)
	}

	r2 := writeTrips(t, e.svc, "d1", 2, t0.Add(time.Second))
	if r2.Version <= r1.Version {
		t.Fatalf("version went from %d to %d", r1.Version, r2.Version)
	}
	env, _ = e.envelope(t, key)
	if env.Dirty || env.Version != r2.Version {
		t.Fatalf("after second write: envelope %+v, want VALUE at version %d", env, r2.Version)
	}
	e.db.reads.Store(0)
	got := readTrips(t, e.svc, "d1")
	if got.Status != featurestore.Present || got.Value.Int != 2 || got.EventTime != t0.Add(time.Second).UnixMicro() {
		t.Fatalf("read after second write: %+v", got)
	}
	if n := e.db.reads.Load(); n != 0 {
		t.Fatalf("read of a cached key did %d database reads, want 0", n)
	}
}

func TestCacheMissFallsBackAndPopulates(t *testing.T) {
	e := newEnv(t, devstack.ValkeyOptions{})
	apply(t, e.svc, driverSet)
	t0 := time.Now().Add(-time.Minute)
	w := writeTrips(t, e.svc, "d1", 5, t0)
	settle()
	readTrips(t, e.svc, "d1")
	key := featurestore.RowKey("drivers", "d1")

	e.del(t, key) // an eviction
	e.db.reads.Store(0)
	if got := readTrips(t, e.svc, "d1"); got.Value.Int != 5 {
		t.Fatalf("read after eviction: %+v", got)
	}
	if n := e.db.reads.Load(); n != 1 {
		t.Fatalf("read after eviction did %d database reads, want 1", n)
	}
	// Within the horizon the key must not be populated: a writer whose marker was evicted
	// may still be committing.
	if env, ok := e.envelope(t, key); !ok || !env.Dirty {
		t.Fatalf("within the horizon: envelope %+v (present %v), want DIRTY", env, ok)
	}
	settle()
	readTrips(t, e.svc, "d1")
	env, ok := e.envelope(t, key)
	if !ok || env.Dirty || env.Version != w.Version {
		t.Fatalf("after the horizon: envelope %+v, want VALUE at version %d", env, w.Version)
	}
	e.db.reads.Store(0)
	readTrips(t, e.svc, "d1")
	if n := e.db.reads.Load(); n != 0 {
		t.Fatalf("read after populate did %d database reads, want 0", n)
	}
}

func TestStaleAndRetriedWrites(t *testing.T) {
	e := newEnv(t, devstack.ValkeyOptions{})
	apply(t, e.svc, driverSet)
	t0 := time.Now().Add(-time.Minute)
	w := writeTrips(t, e.svc, "d1", 2, t0)

	old := writeTrips(t, e.svc, "d1", 1, t0.Add(-time.Second))
	if old.Status != featurestore.Stale || old.Version != w.Version {
		t.Fatalf("older write: %+v, want Stale at version %d", old, w.Version)
	}
	// A retry of an applied write (same time, same value) is an idempotent success.
	retry := writeTrips(t, e.svc, "d1", 2, t0)
	if retry.Status != featurestore.Written || retry.Version != w.Version {
		t.Fatalf("retried write: %+v, want Written at version %d", retry, w.Version)
	}
	// Same time, different value: the first write at a given time wins.
	conflict := writeTrips(t, e.svc, "d1", 3, t0)
	if conflict.Status != featurestore.Stale {
		t.Fatalf("same-time different-value write: %+v, want Stale", conflict)
	}
	if got := readTrips(t, e.svc, "d1"); got.Value.Int != 2 {
		t.Fatalf("read: %d, want 2", got.Value.Int)
	}
	item, _, err := e.DB.GetItem(context.Background(), featurestore.RowKey("drivers", "d1"))
	if err != nil || item.Version != w.Version {
		t.Fatalf("stored version %d (err %v), want %d", item.Version, err, w.Version)
	}
}

// TestConcurrentWriterAndReader checks, on one key, that no read returns a value older
// than the last write acknowledged before the read began, and that reads never go
// backwards, while the cache is flushed underneath. Issue 3's checker does this in full.
func TestConcurrentWriterAndReader(t *testing.T) {
	e := newEnv(t, devstack.ValkeyOptions{})
	apply(t, e.svc, driverSet)
	replica := e.newReplica(t)
	t0 := time.Now().Add(-time.Hour)
	const writes = 150
	var acked atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		for i := int64(1); i <= writes; i++ {
			_, err := e.svc.WriteFeatures(ctx, "drivers", []featurestore.WriteRow{{
				EntityID: "hot", EventTime: t0.Add(time.Duration(i) * time.Millisecond),
				Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: i}},
			}})
			if err != nil {
				errs <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			acked.Store(i)
		}
	}()
	for r, svc := range []*featurestore.Service{e.svc, replica} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for ctx.Err() == nil {
				floor := acked.Load()
				res, err := svc.GetFeatures(ctx, []string{"drivers:trips"}, []string{"hot"})
				vals := res.Cells
				if err != nil {
					if ctx.Err() == nil {
						errs <- fmt.Errorf("reader %d: %w", r, err)
					}
					return
				}
				got := vals[0].Value.Int
				if got < floor || got < last {
					errs <- fmt.Errorf("reader %d read %d after write %d was acknowledged (previous read %d)", r, got, floor, last)
					return
				}
				last = got
			}
		}()
	}
	wg.Add(1)
	go func() { // flush the cache now and then: markers and values vanish
		defer wg.Done()
		c := e.Cache.Client()
		for ctx.Err() == nil {
			time.Sleep(30 * time.Millisecond)
			_ = c.Do(context.Background(), c.B().Flushall().Build()).Error()
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if acked.Load() != writes {
		t.Fatalf("only %d of %d writes acknowledged", acked.Load(), writes)
	}
}

// TestKilledWriterLeavesDirtyThatHeals simulates a writer that MARKed and COMMITted and
// died before PUBLISH: readers must see its commit while the key is dirty, and the key
// must be cached again once the lease has ended.
func TestKilledWriterLeavesDirtyThatHeals(t *testing.T) {
	e := newEnv(t, devstack.ValkeyOptions{})
	apply(t, e.svc, driverSet)
	t0 := time.Now().Add(-time.Minute)
	writeTrips(t, e.svc, "d1", 1, t0)
	settle()
	readTrips(t, e.svc, "d1")
	key := featurestore.RowKey("drivers", "d1")
	ctx := context.Background()

	// The dead writer: MARK, then COMMIT version+1 with trips=9, no PUBLISH.
	if err := e.Cache.Mark(ctx, []string{key.CacheKey()}, "deadbeef", testCfg.Lease); err != nil {
		t.Fatal(err)
	}
	cur, _, err := e.DB.GetItem(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	row, err := featurestore.DecodeRow(cur.Data)
	if err != nil {
		t.Fatal(err)
	}
	row.Merge([]featurestore.Cell{{Name: "trips", EventTime: t0.Add(time.Second).UnixMicro(), Value: featurestore.Value{Type: featurestore.TypeInt64, Int: 9}}})
	next := featurestore.Item{Key: key, Version: cur.Version + 1, Data: featurestore.AppendRow(nil, row)}
	if err := e.DB.PutItem(ctx, next, cur.Version); err != nil {
		t.Fatal(err)
	}

	if got := readTrips(t, e.svc, "d1"); got.Value.Int != 9 {
		t.Fatalf("read while dirty: %d, want the committed 9", got.Value.Int)
	}
	if env, _ := e.envelope(t, key); !env.Dirty {
		t.Fatalf("while the lease lives: envelope %+v, want DIRTY", env)
	}
	settle()
	if got := readTrips(t, e.svc, "d1"); got.Value.Int != 9 {
		t.Fatalf("read after lease: %d, want 9", got.Value.Int)
	}
	env, _ := e.envelope(t, key)
	if env.Dirty || env.Version != next.Version {
		t.Fatalf("after the lease: envelope %+v, want VALUE at version %d", env, next.Version)
	}
	// A live writer that overlapped the dead one must not turn the key back into a VALUE
	// on its own while the dead token is there; covered by the cache's script tests.
}

func TestReplicaSeesNewestFeatureSet(t *testing.T) {
	e := newEnv(t, devstack.ValkeyOptions{})
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

func TestInvalidRequestsWriteNothing(t *testing.T) {
	e := newEnv(t, devstack.ValkeyOptions{})
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
				if _, found, err := e.DB.GetItem(context.Background(), key); err != nil || found {
					t.Fatalf("%s: item found=%v err=%v after a rejected request, want nothing written", key.PK, found, err)
				}
				if env, ok := e.envelope(t, key); ok {
					t.Fatalf("%s: cache holds %+v after a rejected request", key.PK, env)
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

func TestCacheDownWritesFailCleanlyReadsServe(t *testing.T) {
	e := newEnv(t, devstack.ValkeyOptions{})
	apply(t, e.svc, driverSet)
	writeTrips(t, e.svc, "d1", 4, time.Now().Add(-time.Minute))
	e.Valkey.Kill()

	_, err := e.svc.WriteFeatures(context.Background(), "drivers", []featurestore.WriteRow{{
		EntityID: "d2", EventTime: time.Now(), Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: 1}},
	}})
	if featurestore.ErrorKind(err) != featurestore.KindUnavailable {
		t.Fatalf("write with the cache down: %v, want Unavailable", err)
	}
	if _, found, _ := e.DB.GetItem(context.Background(), featurestore.RowKey("drivers", "d2")); found {
		t.Fatal("a write refused because the cache is down reached the database")
	}
	if got := readTrips(t, e.svc, "d1"); got.Value.Int != 4 {
		t.Fatalf("read with the cache down: %+v, want 4 from the database", got)
	}
	// After a restart the cache is empty; reads and writes carry on.
	if err := e.Valkey.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := e.svc.WriteFeatures(context.Background(), "drivers", []featurestore.WriteRow{{
			EntityID: "d1", EventTime: time.Now(), Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: 6}},
		}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("write after cache restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := readTrips(t, e.svc, "d1"); got.Value.Int != 6 {
		t.Fatalf("read after restart: %+v, want 6", got)
	}
}

var _ = errors.Is
