package writethrough_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/memdb"
)

// lookupCounter counts the reads whose pipelined cache GET answered.
type lookupCounter struct {
	writethrough.NopMetrics
	n atomic.Int64
}

func (l *lookupCounter) CacheLookups(context.Context, int, int, int) { l.n.Add(1) }

// TestValkeyCluster runs the protocol unchanged against a 3-primary ValKey Cluster:
// multi-key reads and writes span slots (pipelines are split per node, and every script
// touches one key), misses heal, and a cached read does no database read.
func TestValkeyCluster(t *testing.T) {
	ctx := context.Background()
	bin, err := devstack.FindValkeyServer(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := devstack.StartValkeyCluster(ctx, bin, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	cache, err := valkey.Dial(ctx, cl.Addrs, valkey.Options{Horizon: cfg.Horizon})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	db := &countingDB{Database: memdb.New(memdb.Options{})}
	lookups := &lookupCounter{}
	c := cfg
	c.Metrics = lookups
	store, err := writethrough.New(db, cache, clock{}, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]writethrough.Key, 50)
	for i := range keys {
		keys[i] = key(fmt.Sprintf("k-%d", i))
	}
	write := func(round int) int {
		for attempt := 1; ; attempt++ {
			_, err := writethrough.Update(ctx, store, keys, func(i int, _ writethrough.Current) (writethrough.Change, struct{}, error) {
				return writethrough.Change{Put: true, Data: []byte(strconv.Itoa(round*1000 + i))}, struct{}{}, nil
			})
			if err == nil {
				return attempt
			}
			if attempt == 5 {
				t.Fatalf("write round %d: %v", round, err)
			}
			time.Sleep(cfg.Lease)
		}
	}
	readAll := func(round int) {
		t.Helper()
		items, err := store.Read(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range items {
			if string(it.Data) != strconv.Itoa(round*1000+i) {
				t.Fatalf("%s = %q, want %d", keys[i].PK, it.Data, round*1000+i)
			}
		}
	}
	// cachedRead requires a read served wholly from the cache. A read whose pipelined GET
	// timed out on a loaded machine reads everything from the database; only then, and
	// when excused (a failed write attempt leaves expired tokens that one read heals), is
	// one more read allowed.
	cachedRead := func(what string, round int, excused bool) {
		t.Helper()
		db.reads.Store(0)
		lookups.n.Store(0)
		readAll(round)
		n := db.reads.Load()
		if n == 0 {
			return
		}
		cacheFailed := lookups.n.Load() == 0
		if !cacheFailed && !excused {
			t.Fatalf("%s did %d database reads, want 0", what, n)
		}
		t.Logf("%s did %d database reads (cache GET failed: %v; excused: %v); reading again", what, n, cacheFailed, excused)
		db.reads.Store(0)
		readAll(round)
		if n := db.reads.Load(); n != 0 {
			t.Fatalf("%s, read again, did %d database reads, want 0", what, n)
		}
	}
	write(1)
	settle()
	readAll(1) // heals every key into the cluster
	cachedRead("cached read across the cluster", 1, false)
	// A second write round goes through MARK/PUBLISH on every node and stays cached.
	attempts := write(2)
	cachedRead("read after a write round", 2, attempts > 1)
}

// TestFailoverNeverServesStale: a ValKey Cluster with a replica per primary, and a
// failover that loses the writes the replica never received (its replication paused,
// then TAKEOVER). A write during the cutoff must not be acknowledged unless its MARK
// reached the replica (the cache WAITs for it), and after the failover a read must not
// return a value older than an acknowledged write. The same run without WAIT
// (Replicas: 0) acknowledges the write and then serves the older value from the promoted
// replica: that is the failure WAIT prevents.
func TestFailoverNeverServesStale(t *testing.T) {
	ctx := context.Background()
	bin, err := devstack.FindValkeyServer(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := devstack.StartReplicatedValkeyCluster(ctx, bin, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	db := memdb.New(memdb.Options{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	newStore := func(replicas int) *writethrough.Store {
		cache, err := valkey.Dial(ctx, cl.Addrs, valkey.Options{Horizon: cfg.Horizon, Replicas: replicas})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cache.Close)
		s, err := writethrough.New(db, cache, clock{}, cfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Both keys hash to the same slot ({failover}), so one failover hits both.
	safeKey, unsafeKey := key("{failover}safe"), key("{failover}unsafe")
	safe, unsafe := newStore(1), newStore(0)
	for _, tc := range []struct {
		s *writethrough.Store
		k writethrough.Key
	}{{safe, safeKey}, {unsafe, unsafeKey}} {
		put(t, tc.s, tc.k, "v1")
		settle()
		read(t, tc.s, tc.k) // populated: a VALUE, replicated
		if got := read(t, tc.s, tc.k); string(got.Data) != "v1" {
			t.Fatalf("%s before the failover = %q", tc.k.PK, got.Data)
		}
	}
	pair, err := cl.PairOf(ctx, valkey.Slot(safeKey.CacheKey()))
	if err != nil {
		t.Fatal(err)
	}
	failed := make(chan error, 1)
	go func() { failed <- cl.FailoverPair(ctx, pair, 1500*time.Millisecond) }()
	time.Sleep(300 * time.Millisecond) // the replica is paused now
	_, safeErr := writethrough.Update(ctx, safe, []writethrough.Key{safeKey}, func(int, writethrough.Current) (writethrough.Change, struct{}, error) {
		return writethrough.Change{Put: true, Data: []byte("v2")}, struct{}{}, nil
	})
	_, unsafeErr := writethrough.Update(ctx, unsafe, []writethrough.Key{unsafeKey}, func(int, writethrough.Current) (writethrough.Change, struct{}, error) {
		return writethrough.Change{Put: true, Data: []byte("v2")}, struct{}{}, nil
	})
	if err := <-failed; err != nil {
		t.Fatalf("failover: %v", err)
	}
	if !errors.Is(safeErr, writethrough.ErrNotWritten) || !errors.Is(safeErr, valkey.ErrNotReplicated) {
		t.Fatalf("write while the replica was cut off: %v, want ErrNotWritten (not replicated)", safeErr)
	}
	if unsafeErr != nil {
		t.Fatalf("write without WAIT while the replica was cut off: %v, want it acknowledged", unsafeErr)
	}
	// The clients find the new primary (MOVED or a refreshed slot map) within a while.
	deadline := time.Now().Add(10 * time.Second)
	var safeGot, unsafeGot writethrough.Item
	for {
		s, err1 := safe.Read(ctx, []writethrough.Key{safeKey})
		u, err2 := unsafe.Read(ctx, []writethrough.Key{unsafeKey})
		if err1 == nil && err2 == nil {
			safeGot, unsafeGot = s[0], u[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reads after the failover: %v %v", err1, err2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if string(safeGot.Data) != "v1" {
		t.Fatalf("with WAIT, after the failover: %q, want v1 (the write during the cutoff was refused)", safeGot.Data)
	}
	if string(unsafeGot.Data) != "v1" {
		t.Fatalf("without WAIT, after the failover: %q; expected the promoted replica to serve v1, older than the acknowledged v2", unsafeGot.Data)
	}
	// The safe store writes again once the cluster has healed and its slot map follows
	// (a client retries UNAVAILABLE the same way).
	putWithin(t, safe, safeKey, "v3", 10*time.Second)
	if got := read(t, safe, safeKey); string(got.Data) != "v3" {
		t.Fatalf("after a write following the failover: %q, want v3", got.Data)
	}
}
