package chaos

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/memdb"
)

// pausePoint is a point in a call where a scripted test holds it: the first call to arrive
// closes reached and waits for release; later calls pass.
type pausePoint struct {
	armed            atomic.Bool
	reached, release chan struct{}
	at               time.Time // when it was reached; read it after reached is closed
}

func newPausePoint() *pausePoint {
	s := &pausePoint{reached: make(chan struct{}), release: make(chan struct{})}
	s.armed.Store(true)
	return s
}

func (s *pausePoint) pass(ctx context.Context) {
	if s == nil || !s.armed.CompareAndSwap(true, false) {
		return
	}
	s.at = time.Now()
	close(s.reached)
	select {
	case <-s.release:
	case <-ctx.Done():
	}
}

// await waits until a call reached s, failing t after a while.
func (s *pausePoint) await(t *testing.T, what string) {
	t.Helper()
	select {
	case <-s.reached:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// heldDB holds a replica's first database read before it starts and after it returned,
// and its first put before it lands and again after it landed (before its writer can
// publish), each where armed.
type heldDB struct {
	writethrough.Database
	read, readDone, land, landed *pausePoint
	reads                        atomic.Int32
}

func (d *heldDB) GetItems(ctx context.Context, keys []writethrough.Key) (map[writethrough.Key]writethrough.Item, error) {
	d.reads.Add(1)
	d.read.pass(ctx)
	defer d.readDone.pass(ctx)
	return d.Database.GetItems(ctx, keys)
}

func (d *heldDB) PutItem(ctx context.Context, item writethrough.Item, prevVersion int64) error {
	d.land.pass(ctx)
	// The put lands even if its caller gave up meanwhile, as DynamoDB's may; the script
	// keeps well inside the put window, so the protocol's assumptions hold.
	err := d.Database.PutItem(context.WithoutCancel(ctx), item, prevVersion)
	// Held past its own deadline too: the writer must not publish until the script ends.
	d.landed.pass(context.WithoutCancel(ctx))
	return err
}

// heldCache holds a replica's first RECORD, and counts its GETs.
type heldCache struct {
	writethrough.Cache
	record *pausePoint
	gets   atomic.Int32
}

func (c *heldCache) Get(ctx context.Context, keys []string) ([]writethrough.CacheEntry, error) {
	defer c.gets.Add(1)
	return c.Cache.Get(ctx, keys)
}

// awaitGets waits until the replica's GETs answered n times, failing t after a while.
func (c *heldCache) awaitGets(t *testing.T, n int32, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); c.gets.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (c *heldCache) Record(ctx context.Context, recs []writethrough.Publication) ([]writethrough.Recorded, error) {
	c.record.pass(ctx)
	return c.Cache.Record(ctx, recs)
}

// script drives replicas of one key through a scripted interleaving against a real
// valkey-server and the in-memory database, and keeps the history for the checker. The
// model's register holds event times and values: "v1" is (1, 1) and "v2" (2, 2).
type script struct {
	t       *testing.T
	ctx     context.Context
	horizon time.Duration
	cfg     writethrough.Config
	db      writethrough.Database
	cache   writethrough.Cache // mutated, if the script runs a mutation
	raw     *valkey.Cache
	key     writethrough.Key

	mu      sync.Mutex
	history []op
	pending []op // writes whose outcome is not known until the end
	clients int
}

// newScript starts a stack for one script. Its writes' commits and puts stay within the
// write timeout and put window, so the protocol's assumptions hold.
func newScript(t *testing.T, mutation string, horizon time.Duration) *script {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	st := devstack.NewMemoryStack(t, horizon, devstack.ValkeyOptions{}, memdb.Options{})
	s := &script{t: t, ctx: ctx, horizon: horizon, db: st.DB, cache: st.Cache, raw: st.Cache,
		key: writethrough.Key{Table: featurestore.RowsTable, PK: "k"},
		cfg: writethrough.Config{WriteTimeout: 5 * time.Second, Lease: 6 * time.Second, Horizon: horizon, PutWindow: horizon / 2,
			HealTogether: -1}}
	if mutation != "" {
		var err error
		if s.cache, err = mutate(mutation, st.Cache, st.Cache.Client()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// replica starts a store (a replica) over db and c, stopped when the test ends.
func (s *script) replica(db writethrough.Database, c writethrough.Cache) *writethrough.Store {
	s.t.Helper()
	st, err := writethrough.New(db, c, featurestore.SystemClock{}, s.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = st.Run(rctx); close(done) }()
	s.t.Cleanup(func() { stop(); <-done })
	return st
}

func (s *script) now() int64 { return time.Now().UnixNano() }

func (s *script) client() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients++
	return s.clients
}

func (s *script) add(o op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history = append(s.history, o)
}

func (s *script) update(st *writethrough.Store, v string) (int64, error) {
	outs, err := writethrough.Update(s.ctx, st, []writethrough.Key{s.key}, func(int, writethrough.Current) (writethrough.Change, struct{}, error) {
		return writethrough.Change{Put: true, Data: []byte(v)}, struct{}{}, nil
	})
	if err != nil {
		return 0, err
	}
	return outs[0].Item.Version, nil
}

// write writes v through st and returns its version.
func (s *script) write(st *writethrough.Store, v string) int64 {
	s.t.Helper()
	call := s.now()
	ver, err := s.update(st, v)
	if err != nil {
		s.t.Fatalf("write %s: %v", v, err)
	}
	s.add(op{Key: "k", Client: s.client(), Input: writeIn{T: int64(v[1] - '0'), V: int64(v[1] - '0')}, Output: writeOut{Status: "written"}, Call: call, Return: s.now()})
	return ver
}

// writeLater starts a write of v through st whose put landed holds after landing: it
// answers only when the test ends, so its outcome counts as unknown.
func (s *script) writeLater(st *writethrough.Store, v string, landed *pausePoint) {
	call, client := s.now(), s.client()
	done := make(chan struct{})
	go func() { _, _ = s.update(st, v); close(done) }()
	s.pending = append(s.pending, op{Key: "k", Client: client, Input: writeIn{T: int64(v[1] - '0'), V: int64(v[1] - '0')}, Output: writeOut{Status: "unknown"}, Call: call})
	s.t.Cleanup(func() {
		if landed.armed.CompareAndSwap(true, false) {
			close(landed.reached) // never reached: nothing waits on it
		}
		close(landed.release)
		<-done
	})
}

// readLater starts a read through st; the returned function waits for its answer.
func (s *script) readLater(st *writethrough.Store) func(who string) writethrough.Item {
	call, client := s.now(), s.client()
	type answer struct {
		item writethrough.Item
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		items, err := st.Read(s.ctx, []writethrough.Key{s.key})
		if err != nil {
			ch <- answer{err: err}
			return
		}
		ch <- answer{item: items[0]}
	}()
	return func(who string) writethrough.Item {
		s.t.Helper()
		select {
		case a := <-ch:
			if a.err != nil {
				s.t.Fatalf("%s: %v", who, a.err)
			}
			v, found := map[string]int64{"v1": 1, "v2": 2}[string(a.item.Data)]
			s.add(op{Key: "k", Client: client, Output: readOut{Found: found, T: v, V: v}, Call: call, Return: s.now()})
			return a.item
		case <-time.After(20 * time.Second):
			s.t.Fatalf("timed out waiting for %s", who)
		}
		return writethrough.Item{}
	}
}

// read reads through st and waits for the answer.
func (s *script) read(st *writethrough.Store, who string) writethrough.Item {
	s.t.Helper()
	return s.readLater(st)(who)
}

func (s *script) flush() {
	s.t.Helper()
	c := s.raw.Client()
	if err := c.Do(s.ctx, c.B().Flushall().Build()).Error(); err != nil {
		s.t.Fatal(err)
	}
}

// envelope returns the key's cache entry, or false if it is missing.
func (s *script) envelope() (valkey.Envelope, bool) {
	s.t.Helper()
	c := s.raw.Client()
	b, err := c.Do(s.ctx, c.B().Get().Key(s.key.CacheKey()).Build()).AsBytes()
	if err != nil {
		return valkey.Envelope{}, false
	}
	e, err := valkey.DecodeEnvelope(b)
	if err != nil {
		s.t.Fatalf("decode the entry: %v", err)
	}
	return e, true
}

// verdict requires the script's last read to have been stale exactly when want says,
// and the linearizability checker to agree on the history.
func (s *script) verdict(stale, want bool) {
	s.t.Helper()
	if stale != want {
		s.t.Errorf("a read that began after another answered v2 answered v1: %v, want %v", stale, want)
	}
	history := append([]op(nil), s.history...)
	for _, o := range s.pending {
		o.Return = math.MaxInt64
		history = append(history, o)
	}
	var rep Report
	check(history, Config{OutDir: s.t.TempDir()}, &rep)
	if got := rep.Violations > 0; got != want {
		s.t.Errorf("checker: %d violations in %d operations (%v), want violations: %v", rep.Violations, len(history), rep.Visualizations, want)
	}
}

// scriptCase is one run of a script: with the correct protocol (mutation "", where no
// read may be stale) or with a mutation (where the last read must be).
type scriptCase struct {
	mutation  string
	wantStale bool
}

// withAndWithout runs script with the correct protocol and then with mutation.
func withAndWithout(t *testing.T, mutation string, script func(t *testing.T, tc scriptCase)) {
	t.Run("correct protocol", func(t *testing.T) { script(t, scriptCase{}) })
	t.Run(mutation, func(t *testing.T) { script(t, scriptCase{mutation: mutation, wantStale: true}) })
}

// TestNoRecordIsCaught catches the "no-record" mutation (readers record nothing unless
// they may store) every time, with one scripted interleaving against a real
// valkey-server, where a random scenario needs luck (TestMutationsAreCaught's found it in
// a quarter to a seventh of its seeds, and once in none of 20 under make test). The
// correct protocol passes the same script.
//
//  1. A writer asserts its token on a key holding v1, and its put waits.
//  2. A flush takes the token. Reader B misses, PREPAREs (ticket g1) and its database
//     read waits.
//  3. Another flush. Reader C misses, PREPAREs (ticket g2), reads v1 and waits before
//     RECORD.
//  4. The writer's put of v2 lands (within its put window; the writer never publishes).
//  5. B reads v2 and RECORDs it under the void ticket g1, then answers v2.
//  6. C RECORDs v1 under the live ticket g2, and answers v1.
//  7. Reader D, which starts after B answered v2, must not see v1. With the record, B
//     raised the entry's newest to v2, so C stores v2; without it, C stores v1.
func TestNoRecordIsCaught(t *testing.T) {
	withAndWithout(t, "no-record", func(t *testing.T, tc scriptCase) {
		s := newScript(t, tc.mutation, 4*time.Second)
		wdb := &heldDB{Database: s.db, land: newPausePoint(), landed: newPausePoint()}
		wdb.land.armed.Store(false) // the first put, of v1, goes through
		wdb.landed.armed.Store(false)
		bdb := &heldDB{Database: s.db, read: newPausePoint()}
		ccache := &heldCache{Cache: s.cache, record: newPausePoint()}
		w, b, c, d := s.replica(wdb, s.cache), s.replica(bdb, s.cache), s.replica(s.db, ccache), s.replica(s.db, s.cache)
		v1 := s.write(w, "v1")
		if it := s.read(d, "warming read"); it.Version != v1 {
			t.Fatalf("warming read: version %d, want %d", it.Version, v1)
		}

		// 1.
		wdb.land.armed.Store(true)
		wdb.landed.armed.Store(true)
		s.writeLater(w, "v2", wdb.landed)
		wdb.land.await(t, "the writer's put")
		// 2.
		s.flush()
		bAnswer := s.readLater(b)
		bdb.read.await(t, "reader B's database read")
		// 3.
		s.flush()
		cAnswer := s.readLater(c)
		ccache.record.await(t, "reader C's RECORD")
		// 4. The put window counts from before the ASSERT, a moment before land.at.
		if d := time.Since(wdb.land.at); d > s.cfg.PutWindow/2 {
			t.Fatalf("steps 2 and 3 took %v, more than half the put window %v: the machine is too slow for this script", d, s.cfg.PutWindow)
		}
		close(wdb.land.release)
		wdb.landed.await(t, "the writer's put to land")
		// 5.
		close(bdb.read.release)
		bItem := bAnswer("reader B")
		if bItem.Version <= v1 {
			t.Fatalf("reader B, whose read began after the put landed: version %d, want newer than %d", bItem.Version, v1)
		}
		// 6.
		close(ccache.record.release)
		if it := cAnswer("reader C"); it.Version != v1 {
			t.Fatalf("reader C, whose read ended before the put landed: version %d, want %d", it.Version, v1)
		}
		// C stored under its ticket: the newest B recorded, or, without the record, v1.
		want := bItem.Version
		if tc.wantStale {
			want = v1
		}
		if e, ok := s.envelope(); !ok || !e.Dirty || !strings.HasPrefix(e.Ticket, "P:") || e.Version != want {
			t.Fatalf("after C's RECORD the entry is %+v (present %v), want provisional at version %d", e, ok, want)
		}
		// 7.
		dItem := s.read(d, "reader D")
		t.Logf("B answered version %d; D, after it, version %d (v1 is %d)", bItem.Version, dItem.Version, v1)
		s.verdict(dItem.Version < bItem.Version, tc.wantStale)
	})
}

// unreachableCache is a replica's view of a cache it cannot reach: every read-side call
// fails, so its readers read the database and wait out the horizon before answering.
type unreachableCache struct{ writethrough.Cache }

var errUnreachable = errors.New("injected: the cache is unreachable from this replica")

func (unreachableCache) Get(context.Context, []string) ([]writethrough.CacheEntry, error) {
	return nil, errUnreachable
}
func (unreachableCache) Prepare(context.Context, []string) ([]string, error) {
	return nil, errUnreachable
}
func (unreachableCache) Record(context.Context, []writethrough.Publication) ([]writethrough.Recorded, error) {
	return nil, errUnreachable
}

// TestNoAssertIsCaught catches the "no-assert" mutation (a writer does not put its
// token back before its put) with one scripted interleaving against a real
// valkey-server, which no random scenario does: it needs a write that outlives the
// horizon and a reader that cannot reach the cache. The correct protocol passes it.
//
//  1. A writer marks its token on a key holding v1, and waits before its put (its
//     commit stays within the write timeout and the put within its window).
//  2. A flush takes the token. A reader heals the key with v1; past the horizon, v1 is
//     stored for good, as a VALUE.
//  3. The writer ASSERTs its token (under the mutation: nothing) and its put of v2
//     lands. It never publishes.
//  4. A reader of a replica that cannot reach the cache reads v2, waits out its
//     one and a half horizons and answers v2.
//  5. A reader after it must not be served v1. ASSERT made the entry DIRTY before the put;
//     without it, the VALUE v1 is served.
func TestNoAssertIsCaught(t *testing.T) {
	withAndWithout(t, "no-assert", func(t *testing.T, tc scriptCase) {
		s := newScript(t, tc.mutation, 300*time.Millisecond)
		wdb := &heldDB{Database: s.db, read: newPausePoint(), landed: newPausePoint()}
		wdb.read.armed.Store(false) // the first put, of v1, goes through
		wdb.landed.armed.Store(false)
		w, d, x := s.replica(wdb, s.cache), s.replica(s.db, s.cache), s.replica(s.db, unreachableCache{s.cache})
		v1 := s.write(w, "v1")
		s.read(d, "warming read")

		// 1.
		wdb.read.armed.Store(true)
		wdb.landed.armed.Store(true)
		s.writeLater(w, "v2", wdb.landed)
		wdb.read.await(t, "the writer's read before its put")
		// 2.
		s.flush()
		// The writer's read is held within its commit's deadline (the write timeout,
		// from before MARK): the heal must end well before it.
		for deadline := wdb.read.at.Add(s.cfg.WriteTimeout / 2); ; {
			if it := s.read(d, "reader healing the key"); it.Version != v1 {
				t.Fatalf("healing reader: version %d, want %d", it.Version, v1)
			}
			if e, ok := s.envelope(); ok && !e.Dirty && e.Version == v1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("v1 was not stored for good within %v: the machine is too slow for this script", s.cfg.WriteTimeout/2)
			}
			time.Sleep(s.horizon / 4)
		}
		// 3.
		close(wdb.read.release)
		wdb.landed.await(t, "the writer's put to land")
		// ASSERT put the token back, making the entry DIRTY; without it, v1 stays a VALUE.
		if e, ok := s.envelope(); !ok || e.Dirty != !tc.wantStale || (tc.wantStale && e.Version != v1) || (!tc.wantStale && len(e.Tokens) == 0) {
			t.Fatalf("after the put landed the entry is %+v (present %v), want DIRTY with the writer's token (or, without ASSERT, VALUE v1)", e, ok)
		}
		// 4.
		xItem := s.read(x, "reader without the cache")
		if xItem.Version <= v1 {
			t.Fatalf("reader without the cache, after the put landed: version %d, want newer than %d", xItem.Version, v1)
		}
		// 5.
		dItem := s.read(d, "reader after it")
		t.Logf("the reader without the cache answered version %d; the next, version %d (v1 is %d)", xItem.Version, dItem.Version, v1)
		s.verdict(dItem.Version < xItem.Version, tc.wantStale)
	})
}

// TestShareUnservedIsCaught catches the "share-unserved" mutation (RECORD claims that
// it left every entry servable at the version it recorded, so readers waiting for the
// read answer with it) with one scripted interleaving against a real valkey-server. The
// correct protocol passes it.
//
//  1. A flush takes a key holding v1. Reader A of replica R misses, PREPAREs, reads v1
//     and waits before RECORD (as its database read returns).
//  2. A writer MARKs (voiding A's ticket) and its put of v2 lands; it does not publish.
//  3. Reader C of another replica reads v2 and answers it, recording v2 as the newest.
//  4. Reader B of replica R starts, finds the key DIRTY and waits for A's read.
//  5. A RECORDs v1 under its void ticket, which stores nothing, and answers v1.
//  6. B must not answer v1, which is older than C's answer. RECORD reported that it left
//     nothing servable at v1, so B looks again and reads v2 itself; under the mutation
//     it takes A's v1.
func TestShareUnservedIsCaught(t *testing.T) {
	withAndWithout(t, "share-unserved", func(t *testing.T, tc scriptCase) {
		s := newScript(t, tc.mutation, 4*time.Second)
		wdb := &heldDB{Database: s.db, landed: newPausePoint()}
		wdb.landed.armed.Store(false) // the first put, of v1, goes through
		rdb := &heldDB{Database: s.db, readDone: newPausePoint()}
		rcache := &heldCache{Cache: s.cache}
		w, r, c := s.replica(wdb, s.cache), s.replica(rdb, rcache), s.replica(s.db, s.cache)
		v1 := s.write(w, "v1")
		if it := s.read(c, "warming read"); it.Version != v1 {
			t.Fatalf("warming read: version %d, want %d", it.Version, v1)
		}

		// 1.
		s.flush()
		aAnswer := s.readLater(r)
		rdb.readDone.await(t, "reader A's database read")
		// 2.
		wdb.landed.armed.Store(true)
		s.writeLater(w, "v2", wdb.landed)
		wdb.landed.await(t, "the writer's put to land")
		// 3.
		cItem := s.read(c, "reader C")
		if cItem.Version <= v1 {
			t.Fatalf("reader C, after the put landed: version %d, want newer than %d", cItem.Version, v1)
		}
		// 4. B's GET is R's second; then, with no I/O in between, it joins A's read.
		bAnswer := s.readLater(r)
		rcache.awaitGets(t, 2, "reader B's GET")
		time.Sleep(200 * time.Millisecond)
		// 5.
		close(rdb.readDone.release)
		if it := aAnswer("reader A"); it.Version != v1 {
			t.Fatalf("reader A, whose read ended before the put landed: version %d, want %d", it.Version, v1)
		}
		// A's RECORD stored nothing: the entry is DIRTY at C's v2, with the writer's token.
		if e, ok := s.envelope(); !ok || !e.Dirty || strings.HasPrefix(e.Ticket, "P:") || e.Version != cItem.Version || len(e.Tokens) != 1 {
			t.Fatalf("after A's RECORD the entry is %+v (present %v), want DIRTY at version %d with the writer's token", e, ok, cItem.Version)
		}
		// 6.
		bItem := bAnswer("reader B")
		// B joined A's read: with the real RECORD it then looked in the cache again (a
		// third GET on R) before reading itself. Two would mean it never waited for A,
		// and the script proved nothing.
		if n := rcache.gets.Load(); !tc.wantStale && n != 3 {
			t.Fatalf("replica R sent %d GETs, want 3: reader B did not wait for A's read", n)
		}
		t.Logf("C answered version %d; B, after it, version %d (v1 is %d)", cItem.Version, bItem.Version, v1)
		s.verdict(bItem.Version < cItem.Version, tc.wantStale)
	})
}

// TestWaitersTakeWhatRecordServes: a reader that waits for another read of its replica,
// whose database read began before it arrived, answers with that read's item without
// another GET when the read's RECORD, sent after it arrived, stored that item. (After
// a cache loss that is every reader that arrives while the heal's database read is in
// flight: one GET each instead of two.)
func TestWaitersTakeWhatRecordServes(t *testing.T) {
	s := newScript(t, "", 4*time.Second)
	rdb := &heldDB{Database: s.db, readDone: newPausePoint()}
	rdb.readDone.armed.Store(false)
	rcache := &heldCache{Cache: s.cache}
	w, r := s.replica(s.db, s.cache), s.replica(rdb, rcache)
	v1 := s.write(w, "v1")
	s.flush()
	rdb.readDone.armed.Store(true)
	aAnswer := s.readLater(r)
	rdb.readDone.await(t, "reader A's database read")
	bAnswer := s.readLater(r)
	rcache.awaitGets(t, 2, "reader B's GET")
	time.Sleep(200 * time.Millisecond)
	close(rdb.readDone.release)
	for _, answer := range []func(string) writethrough.Item{aAnswer, bAnswer} {
		if it := answer("reader"); it.Version != v1 {
			t.Fatalf("version %d, want %d", it.Version, v1)
		}
	}
	if n := rdb.reads.Load(); n != 1 {
		t.Errorf("the two readers made %d database reads, want 1: the waiter did not wait for the other's", n)
	}
	if n := rcache.gets.Load(); n != 2 {
		t.Errorf("the two readers sent %d GETs, want 2: the waiter looked in the cache again", n)
	}
	if e, ok := s.envelope(); !ok || !strings.HasPrefix(e.Ticket, "P:") || e.Version != v1 {
		t.Errorf("the entry is %+v (present %v), want provisional at %d", e, ok, v1)
	}
	s.verdict(false, false)
}
