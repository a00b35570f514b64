package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/memdb"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// environment is one run's stores, replicas and fault injector.
type environment struct {
	cfg      Config
	valkey   *devstack.Valkey        // one server (ValkeyReplicas == 0)
	cluster  *devstack.ValkeyCluster // or a replicated cluster
	direct   *valkey.Cache           // a client of its own, for faults
	replicas []*replica
	injector *injector
	closers  []func()
	counts   *protocolCounts
}

// protocolCounts is every replica's writethrough.Metrics: what the protocol did.
type protocolCounts struct {
	writethrough.NopMetrics
	unrecorded, lost, coalesced, stored, refused, healed atomic.Int64
}

func (p *protocolCounts) Unrecorded(_ context.Context, n int) { p.unrecorded.Add(int64(n)) }
func (p *protocolCounts) LostTokens(_ context.Context, n int) { p.lost.Add(int64(n)) }
func (p *protocolCounts) Coalesced(_ context.Context, n int)  { p.coalesced.Add(int64(n)) }
func (p *protocolCounts) Healed(_ context.Context, n int)     { p.healed.Add(int64(n)) }
func (p *protocolCounts) Populates(_ context.Context, stored, refused int) {
	p.stored.Add(int64(stored))
	p.refused.Add(int64(refused))
}

func (p *protocolCounts) snapshot() map[string]int {
	return map[string]int{"unrecorded": int(p.unrecorded.Load()), "lost-tokens": int(p.lost.Load()), "coalesced": int(p.coalesced.Load()),
		"populated": int(p.stored.Load()), "populate-refused": int(p.refused.Load()), "healed-ahead": int(p.healed.Load())}
}

// replica is one server: a Service with its own connections, behind its own gRPC server.
type replica struct {
	svc      *featurestore.Service
	api      pb.FeatureStoreServiceClient // the replica's gRPC server, over loopback
	cache    *faultyCache
	db       *faultyDB // nil for DynamoDB Local, whose faults go through ddbProxy
	vkProxy  *toxiproxy.Proxy
	ddbProxy *toxiproxy.Proxy
}

func (e *environment) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

func (e *environment) defer_(f func()) { e.closers = append(e.closers, f) }

func newEnvironment(ctx context.Context, shared *devstack.Shared, cfg Config) (_ *environment, err error) {
	e := &environment{cfg: cfg, counts: &protocolCounts{}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	bin, err := devstack.FindValkeyServer(os.Getenv)
	if err != nil {
		return nil, err
	}
	var cacheAddrs []string
	if cfg.ValkeyReplicas > 0 {
		if e.cluster, err = devstack.StartReplicatedValkeyCluster(ctx, bin, 3, cfg.ValkeyReplicas); err != nil {
			return nil, err
		}
		e.defer_(e.cluster.Stop)
		cacheAddrs = e.cluster.Addrs
	} else {
		if e.valkey, err = devstack.StartValkey(ctx, bin, devstack.ValkeyOptions{MaxMemory: "3mb"}); err != nil {
			return nil, err
		}
		e.defer_(e.valkey.Stop)
		cacheAddrs = []string{e.valkey.Addr}
	}
	if e.direct, err = valkey.Dial(ctx, cacheAddrs, valkey.Options{Horizon: cfg.Horizon}); err != nil {
		return nil, err
	}
	e.defer_(e.direct.Close)

	var mem *memdb.DB
	var tables dynamo.Tables
	switch cfg.Backend {
	case BackendMemory:
		mem = memdb.New(memdb.Options{})
	case BackendDynamoDB:
		if shared == nil {
			return nil, errors.New("the dynamodb backend needs DynamoDB Local")
		}
		tables = dynamo.TablesWithPrefix(devstack.UniquePrefix(fmt.Sprintf("chaos%d", cfg.Seed)))
		if err := dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint), tables).EnsureTables(ctx); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown backend %q", cfg.Backend)
	}
	px := newProxies()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	runCtx, stop := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	e.defer_(func() { stop(); bg.Wait() })
	seeds := rand.New(rand.NewSource(cfg.Seed ^ 0x5eed))
	for i := 0; i < cfg.Replicas; i++ {
		r := &replica{}
		addrs, opts := cacheAddrs, valkey.Options{Horizon: cfg.Horizon, Timeout: 300 * time.Millisecond, Replicas: cfg.ValkeyReplicas}
		if cfg.Mutation == "no-wait" {
			opts.Replicas = 0
		}
		if e.valkey != nil {
			if r.vkProxy, err = px.add(fmt.Sprintf("valkey-%d", i), e.valkey.Addr); err != nil {
				return nil, err
			}
			e.defer_(r.vkProxy.Stop)
			addrs = []string{r.vkProxy.Listen}
		}
		cache, err := valkey.Dial(ctx, addrs, opts)
		if err != nil {
			return nil, err
		}
		e.defer_(cache.Close)
		var base writethrough.Cache = cache
		if cfg.Mutation != "" && cfg.Mutation != "no-wait" {
			if base, err = mutate(cfg.Mutation, cache, cache.Client()); err != nil {
				return nil, err
			}
		}
		r.cache = &faultyCache{Cache: base, dead: map[string]bool{}, publishLoss: cfg.PublishLoss, rng: rand.New(rand.NewSource(seeds.Int63()))}
		r.cache.pause.Store(int64(cfg.PopulatePause))
		var db devstack.Database
		if mem != nil {
			r.db = &faultyDB{DB: mem, rng: rand.New(rand.NewSource(seeds.Int63())), commitPause: cfg.CommitPause, readDelay: cfg.ReadDelay}
			db = r.db
		} else {
			if r.ddbProxy, err = px.add(fmt.Sprintf("ddb-%d", i), "127.0.0.1:"+strconv.Itoa(shared.DynamoDB.Port)); err != nil {
				return nil, err
			}
			e.defer_(r.ddbProxy.Stop)
			db = dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), "http://"+r.ddbProxy.Listen), tables)
		}
		svc, store, err := devstack.NewService(db, r.cache, nil, writethrough.Config{WriteTimeout: cfg.WriteTimeout, Lease: cfg.Lease, PutWindow: cfg.PutWindow, Horizon: cfg.Horizon, Metrics: e.counts,
			// With a handful of keys, two missing at once is a loss worth healing ahead:
			// the checker sees those heals race the writers.
			HealTogether: 2}, logger)
		if err != nil {
			return nil, err
		}
		r.svc = svc
		bg.Add(1)
		go func() { defer bg.Done(); _ = store.Run(runCtx) }()
		// The replica serves the real gRPC API on loopback; the load goes through it.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		g := server.NewGRPC(server.New(svc, logger, server.Options{}), nil, logger)
		go func() { _ = g.Serve(lis) }()
		e.defer_(g.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		e.defer_(func() { conn.Close() })
		r.api = pb.NewFeatureStoreServiceClient(conn)
		e.replicas = append(e.replicas, r)
	}
	e.injector = &injector{counts: map[string]int{}, env: e}
	return e, nil
}

// applySet creates the run's feature set: one int64 feature "v" of entity type "key".
func (e *environment) applySet(ctx context.Context) error {
	set := featurestore.FeatureSet{Name: "chaos", EntityType: "key", Features: []featurestore.FeatureSpec{{Name: "v", Type: featurestore.TypeInt64}}}
	// Setup, not under test: a cold DynamoDB Local can miss a short write deadline.
	_, err := backoff.Retry(ctx, func() (featurestore.FeatureSet, error) {
		return e.replicas[0].svc.ApplyFeatureSet(ctx, set)
	}, backoff.WithBackOff(backoff.NewConstantBackOff(e.cfg.Lease)), backoff.WithMaxTries(10))
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// faultyCache decorates a replica's cache with the faults a network cannot cause.
type faultyCache struct {
	writethrough.Cache
	// crashing: the replica dies between COMMIT and PUBLISH for every write that reaches
	// PUBLISH now; such a writer never publishes, not even through the repair loop.
	crashing atomic.Bool
	// pause delays RECORD after the database read, in nanoseconds (0: none).
	pause atomic.Int64
	// publishLoss is the chance that a write's replica dies between COMMIT and PUBLISH,
	// whatever the faults (Config.PublishLoss); rng draws it.
	publishLoss float64
	rng         *rand.Rand

	mu   sync.Mutex
	dead map[string]bool // tokens of writers that died
}

var errCrashed = errors.New("replica crashed between commit and publish")

func (c *faultyCache) Publish(ctx context.Context, pubs []writethrough.Publication) error {
	c.mu.Lock()
	if c.crashing.Load() || c.publishLoss > 0 && c.rng.Float64() < c.publishLoss {
		for _, p := range pubs {
			c.dead[p.Token] = true
		}
	}
	live := pubs[:0:0]
	for _, p := range pubs {
		if !c.dead[p.Token] {
			live = append(live, p)
		}
	}
	c.mu.Unlock()
	if len(live) < len(pubs) {
		if len(live) > 0 {
			_ = c.Cache.Publish(ctx, live)
		}
		return errCrashed
	}
	return c.Cache.Publish(ctx, pubs)
}

func (c *faultyCache) Record(ctx context.Context, recs []writethrough.Publication) ([]writethrough.Recorded, error) {
	if d := time.Duration(c.pause.Load()); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	return c.Cache.Record(ctx, recs)
}

// faultyDB decorates the in-memory database with what a slow or failing network to
// DynamoDB does: latency, commits whose answers arrive after the caller gave up, and
// connections reset before or after a write applied.
type faultyDB struct {
	*memdb.DB
	commitPause time.Duration
	readDelay   time.Duration
	latency     atomic.Int64 // nanoseconds of delay, up to, per call
	lateAnswers atomic.Bool  // writes apply, answers come after the deadline
	resets      atomic.Bool  // calls fail, writes maybe after applying
	mu          sync.Mutex
	rng         *rand.Rand
}

var errReset = errors.New("connection reset by peer")

func (d *faultyDB) delay(ctx context.Context) error {
	return d.sleepUpTo(ctx, time.Duration(d.latency.Load()))
}

// sleepUpTo waits a random while below max, or until ctx ends.
func (d *faultyDB) sleepUpTo(ctx context.Context, max time.Duration) error {
	if max <= 0 {
		return nil
	}
	d.mu.Lock()
	wait := time.Duration(d.rng.Int63n(int64(max)))
	d.mu.Unlock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}

func (d *faultyDB) coin() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.Intn(2) == 0
}

func (d *faultyDB) GetItems(ctx context.Context, keys []writethrough.Key) (map[writethrough.Key]writethrough.Item, error) {
	if err := d.delay(ctx); err != nil {
		return nil, err
	}
	if err := d.sleepUpTo(ctx, d.readDelay); err != nil {
		return nil, err
	}
	if d.resets.Load() && d.coin() {
		return nil, errReset
	}
	return d.DB.GetItems(ctx, keys)
}

// write runs put as the network would let it: delayed, its answer lost after it applied,
// or refused before it applied.
func (d *faultyDB) write(ctx context.Context, put func() error) error {
	if err := d.delay(ctx); err != nil {
		return err
	}
	if d.resets.Load() && d.coin() {
		if d.coin() {
			return errReset // before it reached the database
		}
		if err := put(); err != nil {
			return err
		}
		// Applied; the answer is lost and a retry would fail its condition.
		return fmt.Errorf("%w: %w", errReset, writethrough.ErrAmbiguous)
	}
	err := put()
	if err == nil && d.lateAnswers.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (d *faultyDB) PutItem(ctx context.Context, item writethrough.Item, prev int64) error {
	if err := d.commitDelay(ctx); err != nil {
		return err
	}
	return d.write(ctx, func() error { return d.DB.PutItem(ctx, item, prev) })
}

func (d *faultyDB) PutItems(ctx context.Context, items []writethrough.Item, prevs []int64) error {
	if err := d.commitDelay(ctx); err != nil {
		return err
	}
	return d.write(ctx, func() error { return d.DB.PutItems(ctx, items, prevs) })
}

// commitDelay holds a put for up to the configured commit pause: a writer slow between
// its read (and ASSERT) and its put, so that cache losses and readers' stores fall between.
func (d *faultyDB) commitDelay(ctx context.Context) error {
	return d.sleepUpTo(ctx, d.commitPause)
}
