package writethrough_test

import (
	"context"
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
	cache, err := valkey.Dial(ctx, cl.Addrs, valkey.Options{Horizon: cfg.Lease})
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
