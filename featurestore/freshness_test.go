package featurestore_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/memdb"
)

// countingDB counts the database writes of freshness items, to check the bound on what
// freshness costs.
type countingDB struct {
	*memdb.DB
	freshnessPuts atomic.Int64
}

func (c *countingDB) count(items ...writethrough.Item) {
	for _, it := range items {
		if it.Key.Table == featurestore.FreshnessTable {
			c.freshnessPuts.Add(1)
		}
	}
}

func (c *countingDB) PutItem(ctx context.Context, item writethrough.Item, prev int64) error {
	err := c.DB.PutItem(ctx, item, prev)
	if err == nil {
		c.count(item)
	}
	return err
}

func (c *countingDB) PutItems(ctx context.Context, items []writethrough.Item, prev []int64) error {
	err := c.DB.PutItems(ctx, items, prev)
	if err == nil {
		c.count(items...)
	}
	return err
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// replicaOn is a replica over db and e's cache with its own clock.
func (e *env) replicaOn(t *testing.T, db featurestore.Registry, wdb writethrough.Database, clock featurestore.Clock) *featurestore.Service {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := writethrough.New(wdb, e.Cache, clock, storeCfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = store.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return featurestore.New(store, db, nil, clock, featurestore.Config{}, logger)
}

func freshnessOf(t *testing.T, svc *featurestore.Service, set string) featurestore.Freshness {
	t.Helper()
	got, err := svc.Freshness(context.Background(), []string{set})
	if err != nil {
		t.Fatalf("freshness of %s: %v", set, err)
	}
	return got[set]
}

func flush(t *testing.T, svc *featurestore.Service) {
	t.Helper()
	if err := svc.FlushFreshness(context.Background()); err != nil {
		t.Fatalf("flush freshness: %v", err)
	}
}

// Two replicas write to one set; once both flushed, each reports the same freshness,
// counting only rows that were WRITTEN (not STALE, not REJECTED) on any lane.
func TestFreshnessAgreesAcrossReplicasAndCountsWrittenRows(t *testing.T) {
	e := newEnv(t)
	a, b := e.svc, e.newReplica(t)
	apply(t, a, driverSet)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	for i, id := range []string{"d1", "d2", "d3"} {
		if r := writeTrips(t, a, id, 1, t0.Add(time.Duration(i)*time.Second)); r.Status != featurestore.Written {
			t.Fatalf("write %s: %+v", id, r)
		}
	}
	if r := writeTrips(t, a, "d1", 9, t0.Add(-time.Minute)); r.Status != featurestore.Stale {
		t.Fatalf("older write: %+v, want STALE", r)
	}
	newest := t0.Add(30 * time.Second)
	res, err := b.WriteRowsLenient(context.Background(), "drivers", "rows", 0, []featurestore.WriteRow{
		{EntityID: "d4", EventTime: newest, Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: 4}}},
		{EntityID: "", EventTime: newest.Add(time.Minute), Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: 5}}},
	})
	if err != nil || res[0].Status != featurestore.Written || res[1].Status != featurestore.Rejected {
		t.Fatalf("lenient write: %+v %v, want WRITTEN and REJECTED", res, err)
	}

	// Nothing is stored before a flush: no replica shows what only one holds in memory.
	if f := freshnessOf(t, b, "drivers"); f.RowsLastHour() != 0 || !f.LastWrite.IsZero() {
		t.Fatalf("before any flush: %+v, want nothing", f)
	}
	flush(t, a)
	flush(t, b)
	fa, fb := freshnessOf(t, a, "drivers"), freshnessOf(t, b, "drivers")
	if fa.RowsLastHour() != 4 {
		t.Errorf("rows in the last hour %d, want 4 (3 + 1 written; the stale and the rejected row do not count)", fa.RowsLastHour())
	}
	if !fa.NewestEventTime.Equal(newest) {
		t.Errorf("newest event time %v, want %v (the rejected row's later time does not count)", fa.NewestEventTime, newest)
	}
	if fa.LastWrite.IsZero() || time.Since(fa.LastWrite) > time.Minute {
		t.Errorf("last write %v, want a moment ago", fa.LastWrite)
	}
	if fa.NewestEventTime != fb.NewestEventTime || fa.LastWrite != fb.LastWrite || fa.RowsLastHour() != fb.RowsLastHour() {
		t.Errorf("replicas disagree: %+v vs %+v", fa, fb)
	}
	// A second flush with nothing new changes nothing.
	flush(t, a)
	if again := freshnessOf(t, b, "drivers"); again.RowsLastHour() != 4 {
		t.Errorf("after an empty flush: %d rows, want 4", again.RowsLastHour())
	}
	if f := freshnessOf(t, a, "unknown_set"); f.RowsLastHour() != 0 || !f.NewestEventTime.IsZero() || len(f.PerMinute) != featurestore.FreshnessWindow {
		t.Errorf("a set never written: %+v, want zero with a %d-minute window", f, featurestore.FreshnessWindow)
	}
}

// However many writes a replica makes between flushes, a flush costs one database write
// per set written to: that is the bound on the extra writes freshness costs.
func TestFreshnessFlushIsOneWritePerSet(t *testing.T) {
	e := newEnv(t)
	db := &countingDB{DB: e.mem}
	svc := e.replicaOn(t, e.mem, db, featurestore.SystemClock{})
	apply(t, svc, driverSet)
	other := driverSet
	other.Name = "drivers2"
	apply(t, svc, other)
	at := time.Now().Add(-time.Minute)
	for i := range 40 {
		writeTrips(t, svc, "d"+string(rune('a'+i%20)), int64(i), at.Add(time.Duration(i)*time.Millisecond))
	}
	if _, err := svc.WriteFeatures(context.Background(), "drivers2", []featurestore.WriteRow{{EntityID: "x", EventTime: at,
		Values: map[string]featurestore.Value{"trips": {Type: featurestore.TypeInt64, Int: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if n := db.freshnessPuts.Load(); n != 0 {
		t.Fatalf("%d freshness writes before a flush, want 0: writes must not touch it", n)
	}
	flush(t, svc)
	if n := db.freshnessPuts.Load(); n != 2 {
		t.Fatalf("%d freshness writes for 41 rows in 2 sets, want 2", n)
	}
	if got := freshnessOf(t, svc, "drivers").RowsLastHour(); got != 40 {
		t.Errorf("drivers: %d rows, want 40", got)
	}
}

// Counts land in the minute they were written and leave the window an hour later; the
// newest event time and last write stay.
func TestFreshnessWindow(t *testing.T) {
	e := newEnv(t)
	clk := &fakeClock{now: time.Now().Truncate(time.Minute).Add(10 * time.Second)}
	svc := e.replicaOn(t, e.mem, e.mem, clk)
	apply(t, svc, driverSet)
	ev := clk.Now().Add(-time.Second)
	writeTrips(t, svc, "d1", 1, ev)
	writeTrips(t, svc, "d2", 1, ev)
	flush(t, svc)
	clk.Add(30 * time.Minute)
	writeTrips(t, svc, "d3", 1, ev)
	flush(t, svc)

	f := freshnessOf(t, svc, "drivers")
	last := featurestore.FreshnessWindow - 1
	if f.PerMinute[last] != 1 || f.PerMinute[last-30] != 2 || f.RowsLastHour() != 3 {
		t.Fatalf("per minute %v, want 1 now and 2 thirty minutes ago", f.PerMinute)
	}
	if got, want := f.RowsPerMinute(), 3.0/60; got != want {
		t.Errorf("rows per minute %v, want %v", got, want)
	}
	lastWrite := f.LastWrite
	clk.Add(31 * time.Minute)
	f = freshnessOf(t, svc, "drivers")
	if f.RowsLastHour() != 1 || f.PerMinute[last-31] != 1 {
		t.Fatalf("61 minutes after the first writes: %v, want only the later row", f.PerMinute)
	}
	if !f.LastWrite.Equal(lastWrite) || !f.NewestEventTime.Equal(ev.Truncate(time.Microsecond)) {
		t.Errorf("last write %v (want %v), newest event %v (want %v): they outlive the window", f.LastWrite, lastWrite, f.NewestEventTime, ev)
	}
}

// A flush the cache refuses (nothing written) keeps its counts for the next one.
func TestFreshnessFlushFailureKeepsCounts(t *testing.T) {
	e := newEnv(t)
	apply(t, e.svc, driverSet)
	writeTrips(t, e.svc, "d1", 1, time.Now().Add(-time.Minute))
	writeTrips(t, e.svc, "d2", 1, time.Now().Add(-time.Minute))
	e.Valkey.Kill()
	if err := e.svc.FlushFreshness(context.Background()); err == nil {
		t.Fatal("flush with the cache down succeeded")
	}
	if err := e.Valkey.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The client reconnects on its own; the first flush after the restart may still fail.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := e.svc.FlushFreshness(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flush after the cache came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := freshnessOf(t, e.svc, "drivers").RowsLastHour(); got != 2 {
		t.Fatalf("%d rows after the retried flush, want 2 (kept, not lost or doubled)", got)
	}
}

// RunFreshness flushes on its own, and once more when its context ends.
func TestRunFreshnessFlushesOnShutdown(t *testing.T) {
	e := newEnv(t)
	apply(t, e.svc, driverSet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.RunFreshness(ctx) }()
	writeTrips(t, e.svc, "d1", 1, time.Now().Add(-time.Minute))
	cancel() // long before the default interval: only the final flush can store it
	if err := <-done; err != nil {
		t.Fatalf("RunFreshness: %v", err)
	}
	if got := freshnessOf(t, e.svc, "drivers").RowsLastHour(); got != 1 {
		t.Fatalf("%d rows after shutdown, want 1", got)
	}
}
