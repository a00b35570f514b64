// Package chaos proves the feature store's per-key linearizability under faults. It runs
// several server replicas in-process (each a featurestore.Service with its own store
// connections, behind its own gRPC server on loopback) against one DynamoDB Local and one
// valkey-server, each replica's paths to both stores going through an in-process
// toxiproxy; drives concurrent writers on all three lanes and readers through the gRPC API
// over a small hot key space while injecting faults; records every operation with its
// invocation and response times; and checks each key's history with porcupine. A write that fails is
// recorded with an unknown outcome (it may have applied), not dropped.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/client"
	"github.com/dsfeatures/featurestore/featurestore/devstack"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// Config is one run.
type Config struct {
	Seed     int64
	Duration time.Duration
	Replicas int
	Keys     int
	Writers  int
	Readers  int
	// WriterPause, if set, makes each writer wait up to this long between writes, leaving
	// moments with no writer in flight (when readers may populate the cache).
	WriterPause time.Duration
	// Faults to draw from (default: all kinds) and the mean time between them.
	Faults     []string
	FaultEvery time.Duration
	// WriteTimeout and Lease configure every replica.
	WriteTimeout time.Duration
	Lease        time.Duration
	// PopulatePause, if set, pauses every read on every replica this long between its
	// database read and its POPULATE for the whole run, as the reader-pause fault does for
	// one replica at a time.
	PopulatePause time.Duration
	// Mutation breaks the cache protocol on purpose (mutation testing).
	Mutation valkey.Mutation
	// OutDir receives porcupine's HTML visualization of any violating history.
	OutDir string
	// Progress, if set, receives a line per phase.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.Keys == 0 {
		c.Keys = 4
	}
	if c.Writers == 0 {
		c.Writers = 4
	}
	if c.Readers == 0 {
		c.Readers = 4
	}
	if len(c.Faults) == 0 {
		c.Faults = faultKinds
	}
	if c.FaultEvery == 0 {
		c.FaultEvery = 400 * time.Millisecond
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 400 * time.Millisecond
	}
	if c.Lease == 0 {
		c.Lease = 700 * time.Millisecond
	}
	if c.OutDir == "" {
		c.OutDir = filepath.Join(os.TempDir(), "featurestore-chaos")
	}
	return c
}

// Report is what a run found.
type Report struct {
	Seed       int64
	Histories  int // keys checked
	Operations int
	Writes     int
	Reads      int
	Unknown    int // writes with an unknown outcome
	Faults     map[string]int
	Lanes      map[string]int // writes by lane
	Violations int
	// Inconclusive counts histories the checker could not decide in time.
	Inconclusive   int
	Visualizations []string
}

func (r Report) String() string {
	kinds, total := tally(r.Faults)
	lanes, _ := tally(r.Lanes)
	return fmt.Sprintf("seed=%d histories=%d operations=%d (writes=%d %v reads=%d unknown=%d) faults=%d %v violations=%d inconclusive=%d",
		r.Seed, r.Histories, r.Operations, r.Writes, lanes, r.Reads, r.Unknown, total, kinds, r.Violations, r.Inconclusive)
}

// tally lists counts as sorted "name=n" and sums them.
func tally(counts map[string]int) ([]string, int) {
	out := make([]string, 0, len(counts))
	total := 0
	for k, n := range counts {
		out = append(out, k+"="+strconv.Itoa(n))
		total += n
	}
	sort.Strings(out)
	return out, total
}

type environment struct {
	cfg    Config
	valkey *devstack.Valkey
	cache  *valkey.Cache // a direct client, for faults
}

type replica struct {
	svc      *featurestore.Service
	api      pb.FeatureStoreServiceClient // the replica's gRPC server, over loopback
	cache    *valkey.Cache
	vkProxy  *toxiproxy.Proxy
	ddbProxy *toxiproxy.Proxy
	crashing atomic.Bool
	// pause delays this replica's reads between their database read and POPULATE, in
	// nanoseconds (0: no pause).
	pause atomic.Int64
}

var errCrashed = errors.New("replica crashed between commit and publish")

// LaneKinds are the write lanes, each driven through a replica's gRPC server:
// WriteFeatures (on-demand), StreamWriteFeatures and BatchWriteFeatures.
var LaneKinds = []string{"ondemand", "stream", "batch"}

// writeRow writes one row through lane and returns its outcome for the history:
// "written", "stale", or "unknown" when the call failed (it may have applied) or when the
// batch lane retried the row, which makes a stale answer ambiguous.
func writeRow(ctx context.Context, api pb.FeatureStoreServiceClient, lane string, row *pb.FeatureRow) string {
	status := func(st pb.WriteStatus) string {
		switch st {
		case pb.WriteStatus_WRITE_STATUS_WRITTEN:
			return "written"
		case pb.WriteStatus_WRITE_STATUS_STALE:
			return "stale"
		}
		return "rejected" // never valid here: the checker flags it
	}
	switch lane {
	case "stream":
		st, err := api.StreamWriteFeatures(ctx)
		if err != nil {
			return "unknown"
		}
		if err := st.Send(&pb.StreamWriteFeaturesRequest{Sequence: 1, FeatureSet: "chaos", Rows: []*pb.FeatureRow{row}}); err != nil {
			return "unknown"
		}
		if err := st.CloseSend(); err != nil {
			return "unknown"
		}
		ack, err := st.Recv()
		if err != nil || ack.GetSequence() != 1 || len(ack.GetResults()) != 1 {
			return "unknown"
		}
		return status(ack.GetResults()[0].GetStatus())
	case "batch":
		st, err := api.BatchWriteFeatures(ctx)
		if err != nil {
			return "unknown"
		}
		if err := st.Send(&pb.BatchWriteFeaturesRequest{FeatureSet: "chaos", Rows: []*pb.FeatureRow{row}}); err != nil {
			return "unknown"
		}
		sum, err := st.CloseAndRecv()
		switch {
		case err != nil || sum.GetRowsWritten()+sum.GetRowsStale() != 1:
			return "unknown"
		case sum.GetRowsWritten() == 1:
			return "written"
		case sum.GetRowsRetried() > 0:
			return "unknown"
		}
		return "stale"
	default:
		res, err := api.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "chaos", Rows: []*pb.FeatureRow{row}})
		if err != nil || len(res.GetResults()) != 1 {
			return "unknown"
		}
		return status(res.GetResults()[0].GetStatus())
	}
}

// Run performs one seeded run against shared's DynamoDB Local and a fresh valkey-server.
func Run(ctx context.Context, shared *devstack.Shared, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	rep := Report{Seed: cfg.Seed, Faults: map[string]int{}, Lanes: map[string]int{}}
	logf := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	vk, err := devstack.StartValkey(ctx, shared.ValkeyBin, devstack.ValkeyOptions{MaxMemory: "3mb"})
	if err != nil {
		return rep, err
	}
	defer vk.Stop()
	direct, err := valkey.Dial(ctx, []string{vk.Addr}, valkey.Options{Horizon: cfg.Lease})
	if err != nil {
		return rep, err
	}
	defer direct.Close()
	env := &environment{cfg: cfg, valkey: vk, cache: direct}

	prefix := devstack.UniquePrefix(fmt.Sprintf("chaos%d", cfg.Seed))
	tables := dynamo.TablesWithPrefix(prefix)
	if err := dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint), tables).EnsureTables(ctx); err != nil {
		return rep, err
	}
	px := newProxies()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	replicas := make([]*replica, cfg.Replicas)
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var bg sync.WaitGroup
	for i := range replicas {
		r := &replica{}
		if r.vkProxy, err = px.add(fmt.Sprintf("valkey-%d", i), vk.Addr); err != nil {
			return rep, err
		}
		defer r.vkProxy.Stop()
		if r.ddbProxy, err = px.add(fmt.Sprintf("ddb-%d", i), "127.0.0.1:"+strconv.Itoa(shared.DynamoDB.Port)); err != nil {
			return rep, err
		}
		defer r.ddbProxy.Stop()
		if r.cache, err = valkey.Dial(ctx, []string{r.vkProxy.Listen}, valkey.Options{Horizon: cfg.Lease, Mutation: cfg.Mutation, Timeout: 300 * time.Millisecond}); err != nil {
			return rep, err
		}
		defer r.cache.Close()
		db := dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), "http://"+r.ddbProxy.Listen), tables)
		rr := r
		r.svc, err = featurestore.New(db, r.cache, nil, featurestore.SystemClock{}, featurestore.Config{
			WriteTimeout: cfg.WriteTimeout,
			Lease:        cfg.Lease,
			AfterCommit: func(context.Context, []featurestore.ItemKey) error {
				if rr.crashing.Load() {
					return errCrashed
				}
				return nil
			},
			BeforePopulate: func(ctx context.Context) {
				if d := time.Duration(rr.pause.Load()); d > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(d):
					}
				}
			},
		}, logger)
		if err != nil {
			return rep, err
		}
		r.pause.Store(int64(cfg.PopulatePause))
		bg.Add(1)
		go func() { defer bg.Done(); _ = rr.svc.Run(runCtx) }()
		// The replica serves the real gRPC API on loopback; the load goes through it.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return rep, err
		}
		g := server.NewGRPC(server.New(r.svc, logger, server.Options{}), nil, logger)
		go func() { _ = g.Serve(lis) }()
		defer g.Stop()
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return rep, err
		}
		defer conn.Close()
		r.api = pb.NewFeatureStoreServiceClient(conn)
		replicas[i] = r
	}
	defer bg.Wait()
	defer stopRun()

	set := featurestore.FeatureSet{Name: "chaos", EntityType: "key", Features: []featurestore.FeatureSpec{{Name: "v", Type: featurestore.TypeInt64}}}
	// Setup, not under test: a cold DynamoDB Local can miss a short write deadline.
	for attempt := 1; ; attempt++ {
		_, err := replicas[0].svc.ApplyFeatureSet(ctx, set)
		if err == nil {
			break
		}
		if attempt == 10 {
			return rep, fmt.Errorf("apply: %w", err)
		}
		time.Sleep(cfg.Lease)
	}
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}

	logf("chaos seed=%d: %d replicas, %d writers, %d readers, %d keys, %v, faults every ~%v", cfg.Seed, cfg.Replicas, cfg.Writers, cfg.Readers, cfg.Keys, cfg.Duration, cfg.FaultEvery)
	rng := rand.New(rand.NewSource(cfg.Seed))
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var (
		mu      sync.Mutex
		history []op
		clock   atomic.Int64 // event times: mostly increasing, sometimes older
		values  atomic.Int64
	)
	record := func(o op) {
		mu.Lock()
		history = append(history, o)
		mu.Unlock()
	}
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Writers; w++ {
		seed := rng.Int63()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			rp := replicas[w%len(replicas)]
			lanes := map[string]int{}
			defer func() {
				mu.Lock()
				for l, n := range lanes {
					rep.Lanes[l] += n
				}
				mu.Unlock()
			}()
			for loadCtx.Err() == nil {
				key := keys[r.Intn(len(keys))]
				t := clock.Add(1)
				if r.Intn(5) == 0 {
					t -= int64(r.Intn(20)) // an older event: STALE unless it is new to the key
				}
				v := values.Add(1)
				in := writeIn{T: t, V: v}
				row := client.Row(key, time.UnixMicro(1_000_000_000+t), map[string]*pb.Value{"v": client.Int64(v)})
				lane := LaneKinds[r.Intn(len(LaneKinds))]
				call := now()
				wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				status := writeRow(wctx, rp.api, lane, row)
				cancel()
				lanes[lane]++
				o := op{Key: key, Client: w, Input: in, Output: writeOut{Status: status}, Call: call, Return: now()}
				if status == "unknown" {
					// It may apply at any time from its call on.
					o.Return = math.MaxInt64
				}
				record(o)
				if cfg.WriterPause > 0 {
					time.Sleep(time.Duration(r.Int63n(int64(cfg.WriterPause))))
				}
			}
		}()
	}
	for rd := 0; rd < cfg.Readers; rd++ {
		seed := rng.Int63()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			rp := replicas[rd%len(replicas)]
			clientID := cfg.Writers + rd
			for loadCtx.Err() == nil {
				n := 1 + r.Intn(min(3, len(keys)))
				ks := make([]string, 0, n)
				for _, i := range r.Perm(len(keys))[:n] {
					ks = append(ks, keys[i])
				}
				call := now()
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				resp, err := rp.api.GetFeatures(rctx, &pb.GetFeaturesRequest{Features: []string{"chaos:v"}, EntityIds: ks})
				cancel()
				ret := now()
				if err != nil || len(resp.GetResults()) != len(ks) {
					continue // a failed read observed nothing
				}
				for i, k := range ks {
					out := readOut{}
					if er := resp.GetResults()[i]; er.GetStatuses()[0] == pb.FeatureStatus_FEATURE_STATUS_PRESENT {
						out = readOut{Found: true, T: er.GetEventTimes()[0].AsTime().UnixMicro() - 1_000_000_000, V: er.GetValues()[0].GetInt64Value()}
					}
					record(op{Key: k, Client: clientID, Output: out, Call: call, Return: ret})
				}
			}
		}()
	}
	inj := &injector{rng: rand.New(rand.NewSource(rng.Int63())), counts: map[string]int{}, replicas: replicas, env: env}
	wg.Add(1)
	go func() { defer wg.Done(); inj.run(loadCtx, cfg.Faults, cfg.FaultEvery) }()
	wg.Wait()
	for k, n := range inj.counts {
		rep.Faults[k] = n
	}
	logf("chaos seed=%d: load done after %v, %d operations; checking", cfg.Seed, time.Since(start).Round(time.Millisecond), len(history))

	ops := make([]porcupine.Operation, len(history))
	for i, o := range history {
		ops[i] = porcupine.Operation{ClientId: o.Client, Input: o.Input, Output: o.Output, Call: o.Call, Return: o.Return, Metadata: o.Key}
		if o.Input != nil {
			rep.Writes++
			if o.Output.(writeOut).Status == "unknown" {
				rep.Unknown++
			}
		} else {
			rep.Reads++
		}
	}
	rep.Operations = len(ops)
	for _, part := range model.Partition(ops) {
		rep.Histories++
		res, info := porcupine.CheckOperationsVerbose(porcupine.Model{
			Init: model.Init, Step: model.Step, Hash: model.Hash, DescribeOperation: model.DescribeOperation,
			DescribeState: model.DescribeState, DescribeOperationMetadata: model.DescribeOperationMetadata,
		}, part, time.Minute)
		switch res {
		case porcupine.Illegal:
			rep.Violations++
			if err := os.MkdirAll(cfg.OutDir, 0o755); err == nil {
				path := filepath.Join(cfg.OutDir, fmt.Sprintf("violation-seed%d-%s.html", cfg.Seed, part[0].Metadata))
				if err := porcupine.VisualizePath(model, info, path); err == nil {
					rep.Visualizations = append(rep.Visualizations, path)
				}
			}
		case porcupine.Unknown:
			rep.Inconclusive++
		}
	}
	logf("chaos %s", rep)
	return rep, nil
}
