package writethrough_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/memdb"
)

// Short leases keep the tests fast; the protocol does not depend on their size.
var cfg = writethrough.Config{WriteTimeout: 400 * time.Millisecond, Lease: 600 * time.Millisecond}

// countingDB counts database reads, plain and fenced, so tests can tell cache hits from
// misses.
type countingDB struct {
	writethrough.Database
	reads, fenced atomic.Int64
}

func (c *countingDB) GetItems(ctx context.Context, keys []writethrough.Key) (map[writethrough.Key]writethrough.Item, error) {
	c.reads.Add(int64(len(keys)))
	return c.Database.GetItems(ctx, keys)
}

func (c *countingDB) FencedRead(ctx context.Context, keys []writethrough.Key) (map[writethrough.Key]writethrough.Item, error) {
	c.fenced.Add(int64(len(keys)))
	return c.Database.FencedRead(ctx, keys)
}

type env struct {
	vk    *devstack.Valkey
	cache *valkey.Cache
	mem   *memdb.DB
	db    *countingDB
	store *writethrough.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := devstack.NewMemoryStack(t, cfg.Lease, devstack.ValkeyOptions{}, memdb.Options{})
	e := &env{vk: st.Valkey, cache: st.Cache, mem: st.DB.(*memdb.DB)}
	e.db = &countingDB{Database: e.mem}
	e.store = e.newStore(t, e.cache)
	return e
}

// newStore is another replica's store on the same database.
func (e *env) newStore(t *testing.T, cache writethrough.Cache) *writethrough.Store {
	t.Helper()
	s, err := writethrough.New(e.db, cache, clock{}, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

type clock struct{}

func (clock) Now() time.Time { return time.Now() }

func key(pk string) writethrough.Key { return writethrough.Key{Table: "t", PK: pk} }

// put stores value under k unconditionally (the mutation replaces the data) and returns
// the version written.
func put(t *testing.T, s *writethrough.Store, k writethrough.Key, value string) int64 {
	t.Helper()
	outs, err := writethrough.Update(context.Background(), s, []writethrough.Key{k}, func(int, writethrough.Current) (writethrough.Change, struct{}, error) {
		return writethrough.Change{Put: true, Data: []byte(value)}, struct{}{}, nil
	})
	if err != nil {
		t.Fatalf("put %s=%s: %v", k.PK, value, err)
	}
	return outs[0].Item.Version
}

// putWithin writes value to k, retrying failures (as a client retries UNAVAILABLE) until
// it succeeds or d has passed.
func putWithin(t *testing.T, s *writethrough.Store, k writethrough.Key, value string, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); ; {
		_, err := writethrough.Update(context.Background(), s, []writethrough.Key{k}, func(int, writethrough.Current) (writethrough.Change, struct{}, error) {
			return writethrough.Change{Put: true, Data: []byte(value)}, struct{}{}, nil
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("put %s=%s for %v: %v", k.PK, value, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func read(t *testing.T, s *writethrough.Store, k writethrough.Key) writethrough.Item {
	t.Helper()
	items, err := s.Read(context.Background(), []writethrough.Key{k})
	if err != nil {
		t.Fatalf("read %s: %v", k.PK, err)
	}
	return items[0]
}

// envelope returns the decoded cache entry of k, or ok=false if missing.
func (e *env) envelope(t *testing.T, k writethrough.Key) (valkey.Envelope, bool) {
	t.Helper()
	c := e.cache.Client()
	b, err := c.Do(context.Background(), c.B().Get().Key(k.CacheKey()).Build()).AsBytes()
	if err != nil {
		return valkey.Envelope{}, false
	}
	env, err := valkey.DecodeEnvelope(b)
	if err != nil {
		t.Fatalf("decode envelope of %s: %v", k.CacheKey(), err)
	}
	return env, true
}

func (e *env) del(t *testing.T, k writethrough.Key) {
	t.Helper()
	c := e.cache.Client()
	if err := c.Do(context.Background(), c.B().Del().Key(k.CacheKey()).Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

// settle waits past the lease (and so the horizon) so that recreated keys may be served
// from the cache.
func settle() { time.Sleep(cfg.Lease + 100*time.Millisecond) }

func TestWriteThenReadFromCache(t *testing.T) {
	e := newEnv(t)
	k := key("a")
	v1 := put(t, e.store, k, "one")
	// A key that was not cached before is recreated with a horizon: it is served from the
	// database, correctly, until the horizon passes.
	if got := read(t, e.store, k); string(got.Data) != "one" || got.Version != v1 {
		t.Fatalf("read after the first write: %+v", got)
	}
	settle()
	read(t, e.store, k) // heals the key: populated from the database
	if env, ok := e.envelope(t, k); !ok || env.Dirty || env.Version != v1 {
		t.Fatalf("after heal: envelope %+v (present %v), want VALUE at version %d", env, ok, v1)
	}
	v2 := put(t, e.store, k, "two")
	if v2 <= v1 {
		t.Fatalf("version went from %d to %d", v1, v2)
	}
	if env, _ := e.envelope(t, k); env.Dirty || env.Version != v2 {
		t.Fatalf("after the second write: envelope %+v, want VALUE at version %d", env, v2)
	}
	e.db.reads.Store(0)
	if got := read(t, e.store, k); string(got.Data) != "two" {
		t.Fatalf("read after the second write: %+v", got)
	}
	if n := e.db.reads.Load(); n != 0 {
		t.Fatalf("read of a cached key did %d database reads, want 0", n)
	}
}

// TestMissFallsBackAndPopulatesAfterTheHorizon: a key this replica never served from
// its cache (cold) reads plainly after a loss and is not put back until the horizon.
func TestMissFallsBackAndPopulatesAfterTheHorizon(t *testing.T) {
	e := newEnv(t)
	k := key("a")
	v := put(t, e.store, k, "five") // published, never read: cold
	settle()
	e.del(t, k) // an eviction
	e.db.reads.Store(0)
	if got := read(t, e.store, k); string(got.Data) != "five" {
		t.Fatalf("read after eviction: %+v", got)
	}
	if n := e.db.reads.Load(); n != 1 {
		t.Fatalf("read after eviction did %d database reads, want 1", n)
	}
	// Within the horizon the key must not be populated: a writer whose marker was evicted
	// may still be committing.
	if env, ok := e.envelope(t, k); !ok || !env.Dirty {
		t.Fatalf("within the horizon: envelope %+v (present %v), want DIRTY", env, ok)
	}
	settle()
	read(t, e.store, k)
	if env, ok := e.envelope(t, k); !ok || env.Dirty || env.Version != v {
		t.Fatalf("after the horizon: envelope %+v, want VALUE at version %d", env, v)
	}
}

// TestHotKeysHealAtTheirFirstMiss: keys this replica served from its cache are fenced
// by their first reader after a loss and put back at once, one database operation each,
// whether one key was evicted or the whole cache flushed; a cold key is not. Another
// replica, which never served them, treats them as cold.
func TestHotKeysHealAtTheirFirstMiss(t *testing.T) {
	e := newEnv(t)
	hot := []writethrough.Key{key("h1"), key("h2"), key("h3")}
	cold := key("c")
	versions := map[writethrough.Key]int64{}
	for _, k := range append([]writethrough.Key{cold}, hot...) {
		versions[k] = put(t, e.store, k, "v-"+k.PK)
	}
	settle()
	// The first read puts the keys in the cache (their writes' tokens were early: the
	// keys were new); the second serves them from it, which makes them hot.
	for range 2 {
		if _, err := e.store.Read(context.Background(), hot); err != nil {
			t.Fatal(err)
		}
	}

	e.del(t, hot[0]) // an eviction
	e.db.reads.Store(0)
	if got := read(t, e.store, hot[0]); string(got.Data) != "v-h1" {
		t.Fatalf("read after eviction: %+v", got)
	}
	if r, f := e.db.reads.Load(), e.db.fenced.Load(); r != 0 || f != 1 {
		t.Fatalf("first read of an evicted hot key: %d plain and %d fenced database reads, want 0 and 1", r, f)
	}
	if env, ok := e.envelope(t, hot[0]); !ok || env.Dirty || env.Version <= versions[hot[0]] {
		t.Fatalf("after the fenced read: envelope %+v (present %v), want a VALUE above version %d", env, ok, versions[hot[0]])
	}

	other := e.newStore(t, e.cache)
	if err := e.cache.Client().Do(context.Background(), e.cache.Client().B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	e.db.reads.Store(0)
	e.db.fenced.Store(0)
	items, err := e.store.Read(context.Background(), append([]writethrough.Key{cold}, hot...))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range append([]writethrough.Key{cold}, hot...) {
		if string(items[i].Data) != "v-"+k.PK {
			t.Fatalf("read of %s after the flush: %+v", k.PK, items[i])
		}
	}
	if r, f := e.db.reads.Load(), e.db.fenced.Load(); r != 1 || f != int64(len(hot)) {
		t.Fatalf("first read after a flush: %d plain and %d fenced database reads, want 1 (the cold key) and %d", r, f, len(hot))
	}
	e.db.reads.Store(0)
	e.db.fenced.Store(0)
	if _, err := e.store.Read(context.Background(), hot); err != nil {
		t.Fatal(err)
	}
	if r, f := e.db.reads.Load(), e.db.fenced.Load(); r != 0 || f != 0 {
		t.Fatalf("second read of the healed hot keys: %d plain and %d fenced database reads, want none", r, f)
	}
	if env, ok := e.envelope(t, cold); !ok || !env.Dirty {
		t.Fatalf("the cold key after its first read: envelope %+v (present %v), want DIRTY", env, ok)
	}

	// An absent item served from the cache does not make its key hot: it cannot be
	// fenced, so its fence would be a write that always fails.
	absent := key("never-written")
	for range 3 { // cached as absent once past its horizon, then served
		read(t, e.store, absent)
		settle()
	}
	e.del(t, absent)
	e.db.reads.Store(0)
	e.db.fenced.Store(0)
	read(t, e.store, absent)
	if r, f := e.db.reads.Load(), e.db.fenced.Load(); r != 1 || f != 0 {
		t.Fatalf("first read of a lost absent item: %d plain and %d fenced, want 1 and 0", r, f)
	}

	// To a replica that never served it, a lost key is cold: a plain read first.
	e.del(t, hot[1])
	e.db.reads.Store(0)
	e.db.fenced.Store(0)
	read(t, other, hot[1])
	if r, f := e.db.reads.Load(), e.db.fenced.Load(); r != 1 || f != 0 {
		t.Fatalf("another replica's first read of a lost key: %d plain and %d fenced, want 1 and 0", r, f)
	}
}

// TestConcurrentWriterAndReaders checks, on one key, that no read returns a value older
// than the last write acknowledged before the read began, and that reads never go
// backwards, while the cache is flushed underneath (internal/chaos does this in full).
func TestConcurrentWriterAndReaders(t *testing.T) {
	e := newEnv(t)
	replica := e.newStore(t, e.cache)
	k := key("hot")
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
			_, err := writethrough.Update(ctx, e.store, []writethrough.Key{k}, func(int, writethrough.Current) (writethrough.Change, struct{}, error) {
				return writethrough.Change{Put: true, Data: []byte(strconv.FormatInt(i, 10))}, struct{}{}, nil
			})
			if err != nil {
				errs <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			acked.Store(i)
		}
	}()
	for r, s := range []*writethrough.Store{e.store, replica} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for ctx.Err() == nil {
				floor := acked.Load()
				items, err := s.Read(ctx, []writethrough.Key{k})
				if err != nil {
					if ctx.Err() == nil {
						errs <- fmt.Errorf("reader %d: %w", r, err)
					}
					return
				}
				got, _ := strconv.ParseInt(string(items[0].Data), 10, 64)
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
		c := e.cache.Client()
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

// TestKilledWriterLeavesDirtyThatHeals: a writer that MARKed and COMMITted and died before
// PUBLISH. Readers must see its commit while the key is dirty, and the key must be cached
// again once the lease has ended.
func TestKilledWriterLeavesDirtyThatHeals(t *testing.T) {
	e := newEnv(t)
	k := key("a")
	v1 := put(t, e.store, k, "one")
	settle()
	read(t, e.store, k)
	ctx := context.Background()
	// The dead writer: MARK, then COMMIT version+1, no PUBLISH.
	if err := e.cache.Mark(ctx, []string{k.CacheKey()}, "deadbeef", cfg.Lease); err != nil {
		t.Fatal(err)
	}
	next := writethrough.Item{Key: k, Version: v1 + 1, Data: []byte("nine")}
	if err := e.db.PutItem(ctx, next, v1); err != nil {
		t.Fatal(err)
	}
	if got := read(t, e.store, k); string(got.Data) != "nine" {
		t.Fatalf("read while dirty: %q, want the committed nine", got.Data)
	}
	if env, _ := e.envelope(t, k); !env.Dirty {
		t.Fatalf("while the lease lives: envelope %+v, want DIRTY", env)
	}
	settle()
	if got := read(t, e.store, k); string(got.Data) != "nine" {
		t.Fatalf("read after the lease: %q, want nine", got.Data)
	}
	if env, _ := e.envelope(t, k); env.Dirty || env.Version != next.Version {
		t.Fatalf("after the lease: envelope %+v, want VALUE at version %d", env, next.Version)
	}
}

func TestCacheDownWritesFailCleanlyReadsServe(t *testing.T) {
	e := newEnv(t)
	put(t, e.store, key("a"), "four")
	e.vk.Kill()
	_, err := writethrough.Update(context.Background(), e.store, []writethrough.Key{key("b")}, func(int, writethrough.Current) (writethrough.Change, struct{}, error) {
		return writethrough.Change{Put: true, Data: []byte("x")}, struct{}{}, nil
	})
	if !errors.Is(err, writethrough.ErrNotWritten) {
		t.Fatalf("write with the cache down: %v, want ErrNotWritten", err)
	}
	if got, _ := e.mem.GetItems(context.Background(), []writethrough.Key{key("b")}); len(got) != 0 {
		t.Fatal("a write refused because the cache is down reached the database")
	}
	if got := read(t, e.store, key("a")); string(got.Data) != "four" {
		t.Fatalf("read with the cache down: %+v, want four from the database", got)
	}
	// After a restart the cache is empty; reads and writes carry on.
	if err := e.vk.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	putWithin(t, e.store, key("a"), "six", 5*time.Second) // after the cache restarted
	if got := read(t, e.store, key("a")); string(got.Data) != "six" {
		t.Fatalf("read after restart: %+v, want six", got)
	}
}

// TestGroupCommit writes many keys in one update: transactions of at most MaxGroupItems
// and MaxGroupBytes, and keys whose transaction lost a race are retried one by one with a
// fresh read, so a concurrent writer's values are merged rather than lost.
func TestGroupCommit(t *testing.T) {
	e := newEnv(t)
	const n = 130
	keys := make([]writethrough.Key, n)
	for i := range keys {
		keys[i] = key(fmt.Sprintf("k%03d", i))
	}
	// Items of ~300 KB: a 4 MB transaction holds 13 of them.
	big := bytes.Repeat([]byte{'x'}, 300_000)
	var raced atomic.Bool
	outs, err := writethrough.Update(context.Background(), e.store, keys, func(i int, cur writethrough.Current) (writethrough.Change, int, error) {
		if i == 5 && !raced.Swap(true) {
			// Another writer commits key 5 between this update's read and its put.
			if err := e.mem.PutItem(context.Background(), writethrough.Item{Key: keys[5], Version: 1, Data: []byte("theirs")}, 0); err != nil {
				t.Error(err)
			}
		}
		data := []byte(fmt.Sprintf("mine:%d;", i))
		if i < 20 {
			data = append(data, big...)
		}
		return writethrough.Change{Put: true, Data: append(append([]byte(nil), cur.Item.Data...), data...)}, len(cur.Item.Data), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range outs {
		if !o.Written || o.Err != nil {
			t.Fatalf("key %d: %+v", i, o)
		}
	}
	if !bytes.HasPrefix(outs[5].Item.Data, []byte("theirs")) || outs[5].Result != len("theirs") {
		t.Fatalf("the raced key was not re-read and merged: result %d, data %.20q", outs[5].Result, outs[5].Item.Data)
	}
	got, _ := e.mem.GetItems(context.Background(), keys)
	if len(got) != n {
		t.Fatalf("%d of %d keys stored", len(got), n)
	}
}

// TestItemTooLarge: a mutation whose item exceeds the database's limit fails that key
// with ErrItemTooLarge and writes nothing of it; the other keys are written.
func TestItemTooLarge(t *testing.T) {
	e := newEnv(t)
	keys := []writethrough.Key{key("small"), key("huge")}
	outs, err := writethrough.Update(context.Background(), e.store, keys, func(i int, _ writethrough.Current) (writethrough.Change, struct{}, error) {
		if i == 1 {
			return writethrough.Change{Put: true, Data: bytes.Repeat([]byte{'x'}, writethrough.MaxItemBytes)}, struct{}{}, nil
		}
		return writethrough.Change{Put: true, Data: []byte("ok")}, struct{}{}, nil
	})
	if !errors.Is(err, writethrough.ErrItemTooLarge) || !errors.Is(outs[1].Err, writethrough.ErrNotWritten) || outs[0].Err != nil {
		t.Fatalf("err %v, outcomes %+v", err, outs)
	}
	got, _ := e.mem.GetItems(context.Background(), keys)
	if _, ok := got[key("huge")]; ok || string(got[key("small")].Data) != "ok" {
		t.Fatalf("stored %v", got)
	}
}

// slowDB answers writes after the write timeout although they applied, as a slow
// network to DynamoDB does.
type slowDB struct{ writethrough.Database }

func (d slowDB) PutItem(ctx context.Context, it writethrough.Item, prev int64) error {
	if err := d.Database.PutItem(ctx, it, prev); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestWriteTimeoutIsOutcomeUnknown: a write that applied but whose answer arrived after
// the store's own write timeout reports ErrOutcomeUnknown, marked as the store's timeout
// (ErrWriteTimeout) so callers can tell it from their own deadline, and keeps its token:
// readers go to the database, which has the write.
func TestWriteTimeoutIsOutcomeUnknown(t *testing.T) {
	e := newEnv(t)
	s, err := writethrough.New(slowDB{e.mem}, e.cache, clock{}, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = writethrough.Update(context.Background(), s, []writethrough.Key{key("a")}, func(int, writethrough.Current) (writethrough.Change, struct{}, error) {
		return writethrough.Change{Put: true, Data: []byte("late")}, struct{}{}, nil
	})
	if !errors.Is(err, writethrough.ErrOutcomeUnknown) || !errors.Is(err, writethrough.ErrWriteTimeout) {
		t.Fatalf("err %v, want ErrOutcomeUnknown and ErrWriteTimeout", err)
	}
	if env, _ := e.envelope(t, key("a")); !env.Dirty || len(env.Tokens) != 1 {
		t.Fatalf("envelope %+v, want DIRTY with the writer's token", env)
	}
	if got := read(t, e.store, key("a")); string(got.Data) != "late" {
		t.Fatalf("read %+v, want the applied write", got)
	}
}

func TestCacheKeys(t *testing.T) {
	for _, keys := range [][]writethrough.Key{
		nil,
		{{Table: "t", PK: "a"}},
		{{Table: "features", PK: "set#u1"}, {Table: "features", PK: ""}, {Table: "", PK: "x"}, {Table: "registry", PK: "set#é"}},
	} {
		got := writethrough.CacheKeys(keys)
		if len(got) != len(keys) {
			t.Fatalf("CacheKeys(%v): %d keys, want %d", keys, len(got), len(keys))
		}
		for i, k := range keys {
			if got[i] != k.CacheKey() {
				t.Errorf("CacheKeys(%v)[%d] = %q, want %q", keys, i, got[i], k.CacheKey())
			}
		}
	}
}
