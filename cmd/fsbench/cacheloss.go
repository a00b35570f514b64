package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/loadgen"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// The cache-loss scenarios (issue 15): steady open-loop reads of a small pool of hot
// entities, then, at a fixed point, the cache loses them: all at once (FLUSHALL, as a
// flush, a restart or a node replacement does) or one key at a time (as LRU eviction or
// TTL expiry does). They report what the loss costs: DynamoDB operations against the
// ideal (one read per lost key per replica), latency in the windows before and after, and
// how long the cache takes to serve over 99% of lookups again.

const (
	lossWindow = 5 * time.Second
	lossBucket = 100 * time.Millisecond
)

// timeline counts DynamoDB operations (calls), the keys they read (one BatchGetItem of
// a set and a row reads two) and cache lookups per bucket of the run; it is the service's
// dynamo.Metrics and writethrough.Metrics, and wraps its database to count keys.
type timeline struct {
	writethrough.NopMetrics
	start                    atomic.Int64 // unix nanoseconds
	dbOps, dbKeys, hits, all []atomic.Int64
}

func newTimeline(d time.Duration) *timeline {
	n := int(d/lossBucket) + 2
	return &timeline{dbOps: make([]atomic.Int64, n), dbKeys: make([]atomic.Int64, n),
		hits: make([]atomic.Int64, n), all: make([]atomic.Int64, n)}
}

func (t *timeline) reset() {
	for i := range t.dbOps {
		t.dbOps[i].Store(0)
		t.dbKeys[i].Store(0)
		t.hits[i].Store(0)
		t.all[i].Store(0)
	}
	t.start.Store(time.Now().UnixNano())
}

// keyCounter is the scenario's database, counting the keys each read asks for.
type keyCounter struct {
	devstack.Database
	t *timeline
}

func (k keyCounter) GetItems(ctx context.Context, keys []writethrough.Key) (map[writethrough.Key]writethrough.Item, error) {
	k.t.dbKeys[k.t.bucket()].Add(int64(len(keys)))
	return k.Database.GetItems(ctx, keys)
}

func (t *timeline) bucket() int {
	i := int(time.Duration(time.Now().UnixNano()-t.start.Load()) / lossBucket)
	return max(0, min(i, len(t.dbOps)-1))
}

// DynamoAttempt implements dynamo.Metrics. Nothing writes during the run, so every
// operation is the read path's (reads, and whatever else a read sends to DynamoDB).
func (t *timeline) DynamoAttempt(context.Context, string, bool, error) { t.dbOps[t.bucket()].Add(1) }

// CacheLookups implements writethrough.Metrics.
func (t *timeline) CacheLookups(_ context.Context, hits, dirty, missing int) {
	i := t.bucket()
	t.hits[i].Add(int64(hits))
	t.all[i].Add(int64(hits + dirty + missing))
}

// sum adds counters over [from, to).
func sum(c []atomic.Int64, from, to time.Duration) int64 {
	var n int64
	for i := int(from / lossBucket); i < int(to/lossBucket) && i < len(c); i++ {
		n += c[i].Load()
	}
	return n
}

// recovery is the time from the fault to the start of the first bucket from which every
// bucket until the end serves over 99% of lookups from the cache, or -1.
func (t *timeline) recovery(fault, end time.Duration) time.Duration {
	last := int(end/lossBucket) - 1
	rec := -1
	for i := last; i >= int(fault/lossBucket); i-- {
		all, hits := t.all[i].Load(), t.hits[i].Load()
		if all == 0 || float64(hits) < 0.99*float64(all) {
			break
		}
		rec = i
	}
	if rec < 0 {
		return -1
	}
	return time.Duration(rec)*lossBucket - fault
}

type lossResult struct {
	variant                   string
	keys                      int
	rate                      float64
	ideal                     int64
	reqBefore, reqAfter       int
	dbBefore, dbAfter, dbLoss int64 // calls; dbLoss: the first second after the fault
	keysAfter                 int64 // keys read after the fault
	p50b, p99b, p999b         time.Duration
	p50a, p99a, p999a         time.Duration
	recovery                  time.Duration
	errors                    int
}

// cacheLoss runs both variants on a service of its own (so its DynamoDB client and
// metrics count only this scenario) and returns the Markdown table.
func cacheLoss(ctx context.Context, o options, e *env, log io.Writer) (string, error) {
	tl := newTimeline(2 * lossWindow)
	cfg := writethrough.DefaultConfig()
	cfg.Metrics = tl
	cache, err := valkey.Dial(ctx, []string{e.valkeyAddr}, valkey.Options{Horizon: cfg.Horizon})
	if err != nil {
		return "", err
	}
	defer cache.Close()
	db := dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), e.ddbEndpoint, dynamo.Instrument(tl, nil)), e.tables)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, store, err := devstack.NewService(keyCounter{Database: db, t: tl}, cache, nil, cfg, logger)
	if err != nil {
		return "", err
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = store.Run(rctx) }()
	cl, err := serveGRPC(e, server.NewGRPC(server.New(svc, logger, server.Options{}), nil, logger).Server)
	if err != nil {
		return "", err
	}
	c := cl.API()

	// Half the most the service does on one hot entity per request sets the load; the
	// pool is small enough that one read per key is under 0.5% of the window's requests.
	read := func(keys int) loadgen.Op {
		pool := loadgen.Keys{N: keys}
		return func(ctx context.Context, _ int, rng *rand.Rand) error {
			_, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: e.refs[10], EntityIds: []string{entity("h", pool.Pick(rng))}})
			return err
		}
	}
	maxr := loadgen.Closed(ctx, o.seed, 8, o.duration, read(100))
	rate := 0.5 * maxr.Throughput
	keys := max(10, min(200, int(0.004*rate*lossWindow.Seconds())))
	fmt.Fprintf(log, "  max %.0f req/s; offering %.0f req/s over %d hot entities\n", maxr.Throughput, rate, keys)

	if !o.coldDB {
		if err := warmReads(ctx, db, keys, log); err != nil {
			return "", err
		}
	}
	var rows []lossResult
	for _, variant := range []string{"flush", "evict"} {
		// Warm the pool: every key cached (a key lost earlier heals after its horizon).
		time.Sleep(cfg.Lease + 200*time.Millisecond)
		ids := make([]string, keys)
		for i := range ids {
			ids[i] = entity("h", i)
		}
		for range 3 {
			if _, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: e.refs[10], EntityIds: ids}); err != nil {
				return "", err
			}
		}
		tl.reset()
		var evicted atomic.Int64
		fault := make(chan error, 1)
		go func() {
			t := time.NewTimer(lossWindow)
			defer t.Stop()
			select {
			case <-ctx.Done():
				fault <- ctx.Err()
				return
			case <-t.C:
			}
			if variant == "flush" {
				fault <- e.valkey.Do(ctx, e.valkey.B().Flushall().Build()).Error()
				return
			}
			// One hot key at a time, as LRU eviction or TTL expiry takes them.
			rng := rand.New(rand.NewSource(o.seed))
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			end := time.After(lossWindow - 200*time.Millisecond)
			for {
				select {
				case <-ctx.Done():
					fault <- nil
					return
				case <-end:
					fault <- nil
					return
				case <-tick.C:
					k := featurestore.RowKey("b10", entity("h", rng.Intn(keys))).CacheKey()
					if err := e.valkey.Do(ctx, e.valkey.B().Del().Key(k).Build()).Error(); err != nil {
						fault <- err
						return
					}
					evicted.Add(1)
				}
			}
		}()
		samples, _, _ := loadgen.OpenSamples(ctx, o.seed+1, rate, 1024, 2*lossWindow, read(keys))
		if err := <-fault; err != nil {
			return "", fmt.Errorf("cache loss %s: %w", variant, err)
		}
		r := lossResult{variant: variant, keys: keys, rate: rate}
		var before, after []loadgen.Sample
		for _, s := range samples {
			if s.Err {
				r.errors++
			}
			if s.Start < lossWindow {
				before = append(before, s)
			} else {
				after = append(after, s)
			}
		}
		r.reqBefore, r.reqAfter = len(before), len(after)
		r.p50b, r.p99b, r.p999b = loadgen.Quantiles(before)
		r.p50a, r.p99a, r.p999a = loadgen.Quantiles(after)
		r.dbBefore = sum(tl.dbOps, 0, lossWindow)
		r.dbAfter = sum(tl.dbOps, lossWindow, 2*lossWindow)
		r.dbLoss = sum(tl.dbOps, lossWindow, lossWindow+time.Second)
		r.keysAfter = sum(tl.dbKeys, lossWindow, 2*lossWindow)
		r.recovery = tl.recovery(lossWindow, 2*lossWindow)
		if variant == "flush" {
			r.ideal = int64(keys + 1) // the entities and the feature set, on one replica
		} else {
			r.ideal = evicted.Load()
		}
		fmt.Fprintf(log, "  %s: %d DynamoDB operations, %d keys read after (ideal %d keys), p99 %s -> %s, recovery %v\n",
			variant, r.dbAfter, r.keysAfter, r.ideal, us(r.p99b), us(r.p99a), r.recovery)
		// Where the tail comes from: per 100 ms after the fault, the database operations
		// and the p99 of the requests that were due to start then.
		for i := 0; i < 12; i++ {
			lo := lossWindow + time.Duration(i)*100*time.Millisecond
			var in []loadgen.Sample
			for _, s := range after {
				if s.Start >= lo && s.Start < lo+100*time.Millisecond {
					in = append(in, s)
				}
			}
			_, p99, _ := loadgen.Quantiles(in)
			fmt.Fprintf(log, "    +%4d ms: %4d DynamoDB ops (%4d keys), %4d requests, p99 %s\n", i*100, sum(tl.dbOps, lo, lo+100*time.Millisecond),
				sum(tl.dbKeys, lo, lo+100*time.Millisecond), len(in), us(p99))
		}
		rows = append(rows, r)
	}

	// The floor of any recovery: under the same offered load on the warm cache, one
	// consistent read of every hot key (and the set), straight to the database: one call
	// per key issued at once, as lost keys' readers would each send their own, and one
	// batched read of them all, as this replica's readers share it.
	time.Sleep(cfg.Horizon + 200*time.Millisecond)
	fkeys := []writethrough.Key{featurestore.SetKey("b10")}
	for i := range keys {
		fkeys = append(fkeys, featurestore.RowKey("b10", entity("h", i)))
	}
	plain := func(ks []writethrough.Key) error { _, err := db.GetItems(ctx, ks); return err }
	single := floor(ctx, each(fkeys), plain, func() { loadgen.OpenSamples(ctx, o.seed+2, rate, 1024, 2*time.Second, read(keys)) }, log)
	batched := floor(ctx, [][]writethrough.Key{fkeys}, plain, func() { loadgen.OpenSamples(ctx, o.seed+3, rate, 1024, 2*time.Second, read(keys)) }, log)
	fmt.Fprintf(log, "  read floor: %d consistent reads issued at once took %v under the same load; one batched read of them %v\n", len(fkeys), single.Round(time.Millisecond), batched.Round(time.Millisecond))
	return lossTable(rows) + fmt.Sprintf("\nRead floor: DynamoDB answered %d consistent reads (one per hot key and the set), issued at once under the same offered load, in %d ms; one batched read of the same keys took %d ms.\n",
		len(fkeys), single.Milliseconds(), batched.Milliseconds()), nil
}

// warmRounds batched reads of the hot keys warm DynamoDB Local's read path: idle, a
// fresh JVM's read of 130 keys took 15-25 ms over its first ten, and 7 ms from about
// the fiftieth on.
const warmRounds = 150

// warmReads reads the hot keys straight from DynamoDB warmRounds times, in one batched
// read each. The 5 s before a loss are all cache hits, so nothing else compiles
// DynamoDB Local's read path before the heal needs it, and a production DynamoDB has
// no JIT to warm: without this, the scenario measures the JIT as much as the recovery
// (BENCHMARKS.md, "Cache loss", has runs both ways; -cold-db skips it).
func warmReads(ctx context.Context, db writethrough.Database, keys int, log io.Writer) error {
	hot := make([]writethrough.Key, keys)
	for i := range hot {
		hot[i] = featurestore.RowKey("b10", entity("h", i))
	}
	start := time.Now()
	for range warmRounds {
		if _, err := db.GetItems(ctx, hot); err != nil {
			return fmt.Errorf("warm DynamoDB Local's reads: %w", err)
		}
	}
	fmt.Fprintf(log, "  warmed DynamoDB Local's batched reads: %d reads of the %d hot keys in %v\n", warmRounds, keys, time.Since(start).Round(10*time.Millisecond))
	return nil
}

// each makes one call of every key.
func each(keys []writethrough.Key) [][]writethrough.Key {
	out := make([][]writethrough.Key, len(keys))
	for i, k := range keys {
		out[i] = []writethrough.Key{k}
	}
	return out
}

// floor runs load for its duration and, one second into it, makes the calls, all at once;
// it returns how long they took together.
func floor(ctx context.Context, calls [][]writethrough.Key, op func([]writethrough.Key) error, load func(), log io.Writer) time.Duration {
	done := make(chan time.Duration, 1)
	go func() {
		time.Sleep(time.Second)
		start := time.Now()
		var g errgroup.Group
		for _, ks := range calls {
			g.Go(func() error { return op(ks) })
		}
		if err := g.Wait(); err != nil {
			fmt.Fprintf(log, "  floor: %v\n", err)
		}
		done <- time.Since(start)
	}()
	load()
	return <-done
}

func lossTable(rows []lossResult) string {
	var b strings.Builder
	b.WriteString("| cache loss | hot keys | offered /s | DynamoDB ops 5 s before | ops after (first 1 s) | keys read after | ideal keys | keys / ideal | p50/p99/p999 us before | after | p99 after / before | >99% hits again after | errors |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		rec := "never"
		if r.recovery >= 0 {
			rec = fmt.Sprintf("%d ms", r.recovery.Milliseconds())
		}
		name := "FLUSHALL at 5 s"
		if r.variant == "evict" {
			name = "one hot key evicted every 100 ms from 5 s"
		}
		fmt.Fprintf(&b, "| %s | %d | %.0f | %d | %d (%d) | %d | %d | %.1f | %s / %s / %s | %s / %s / %s | %.2f | %s | %d |\n",
			name, r.keys, r.rate, r.dbBefore, r.dbAfter, r.dbLoss, r.keysAfter, r.ideal, float64(r.keysAfter)/float64(max(1, r.ideal)),
			us(r.p50b), us(r.p99b), us(r.p999b), us(r.p50a), us(r.p99a), us(r.p999a),
			float64(r.p99a)/float64(max(1, r.p99b)), rec, r.errors)
	}
	return b.String()
}
