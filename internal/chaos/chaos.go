// Package chaos proves the feature store's per-key linearizability under faults. It runs
// several server replicas in-process, each a feature store Service behind its own gRPC
// server on loopback, with its own connections to one database and one valkey-server;
// drives concurrent writers on all three lanes and readers through the gRPC API over a
// small hot key space while injecting faults; records every operation with its invocation
// and response times; and checks each key's history with porcupine. A write that fails is
// recorded with an unknown outcome (it may have applied), not dropped.
//
// The database is DynamoDB Local (Backend "dynamodb", each replica's path through an
// in-process toxiproxy) or internal/memdb (Backend "memory", faults injected by a
// decorator), which needs no JVM and so runs thousands of histories in plain go test.
// Cache faults go through toxiproxy in both, plus decorators for what a network cannot
// do: a replica that dies between COMMIT and PUBLISH, a reader paused before RECORD.
// Deliberately broken protocols (mutations) live here too, to show the checker finds
// what they break.
package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/dsfeatures/featurestore/internal/devstack"
)

// Backends of a run.
const (
	BackendDynamoDB = "dynamodb"
	BackendMemory   = "memory"
)

// Config is one run.
type Config struct {
	Seed     int64
	Duration time.Duration
	// Backend is BackendDynamoDB (needs Shared) or BackendMemory (default).
	Backend  string
	Replicas int
	// ValkeyReplicas, if set, makes the cache a ValKey Cluster of three primaries with this
	// many replicas each, reached directly (no toxiproxy), whose writes WAIT for that many
	// replicas; its faults are ReplicatedFaults. Zero is one valkey-server behind toxiproxy.
	ValkeyReplicas int
	Keys           int
	Writers        int
	Readers        int
	// WriterPause, if set, makes each writer wait up to this long between writes, leaving
	// moments with no writer in flight (when readers may populate the cache).
	WriterPause time.Duration
	// ReaderPause, if set, makes each reader wait up to this long between reads. It bounds
	// a scenario's history (the check's cost grows steeply with a key's operations) where
	// readers would otherwise loop on cache hits.
	ReaderPause time.Duration
	// Faults to draw from (default: all kinds of the backend) and the mean time between them.
	Faults     []string
	FaultEvery time.Duration
	// WriteTimeout, Lease, PutWindow and Horizon configure every replica (and the cache).
	WriteTimeout time.Duration
	Lease        time.Duration
	PutWindow    time.Duration
	Horizon      time.Duration
	// PopulatePause, if set, pauses every read on every replica this long between its
	// database read and its RECORD for the whole run, as the reader-pause fault does for
	// one replica at a time.
	PopulatePause time.Duration
	// CommitPause, if set, holds every put of the in-memory database up to this long
	// after the writer's read and ASSERT, for the whole run, so that cache losses and
	// readers' stores fall inside writes.
	CommitPause time.Duration
	// ReadDelay, if set, delays every read of the in-memory database by up to this long,
	// for the whole run: a reader slow between its PREPARE and its database read reads
	// after writes that landed meanwhile.
	ReadDelay time.Duration
	// PublishLoss, if set, is the chance that any write's replica dies between COMMIT and
	// PUBLISH (as the replica-crash fault makes every write of one replica do for a while).
	PublishLoss float64
	// FaultHold is the longest a fault is held before the next (default 800ms).
	FaultHold time.Duration
	// Mutation breaks the protocol on purpose (one of Mutations; "" is the real protocol).
	Mutation string
	// OutDir receives porcupine's HTML visualization of any violating history.
	OutDir string
	// Progress, if set, receives a line per phase.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	if c.Backend == "" {
		c.Backend = BackendMemory
	}
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
		c.Faults = FaultKinds(c.Backend)
		if c.ValkeyReplicas > 0 {
			c.Faults = ReplicatedFaults
		}
	}
	if c.FaultEvery == 0 {
		c.FaultEvery = 400 * time.Millisecond
	}
	if c.FaultHold < 100*time.Millisecond {
		c.FaultHold = 800 * time.Millisecond
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 400 * time.Millisecond
	}
	if c.Lease == 0 {
		c.Lease = 700 * time.Millisecond
	}
	if c.Horizon == 0 {
		// Over the put window (half of it by default), a margin for a put that a slow
		// proxy delivers after its writer gave up (ddb-latency: 120 ms at most).
		c.Horizon = 400 * time.Millisecond
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
	Deletes    int // DeleteEntities calls among the writers' operations
	Reads      int
	Unknown    int // writes and deletes with an unknown outcome
	Faults     map[string]int
	Lanes      map[string]int // writes by lane
	// Protocol counts what the replicas' stores did: reads that could not record and
	// waited out the horizon, lost tokens put back, coalesced keys, populates stored and
	// refused. It shows the rules under test ran.
	Protocol   map[string]int
	Violations int
	// Inconclusive counts histories the checker could not decide in time.
	Inconclusive   int
	Visualizations []string
}

func (r Report) String() string {
	kinds, total := tally(r.Faults)
	lanes, _ := tally(r.Lanes)
	proto, _ := tally(r.Protocol)
	return fmt.Sprintf("seed=%d histories=%d operations=%d (writes=%d %v deletes=%d reads=%d unknown=%d) faults=%d %v protocol %v violations=%d inconclusive=%d",
		r.Seed, r.Histories, r.Operations, r.Writes, lanes, r.Deletes, r.Reads, r.Unknown, total, kinds, proto, r.Violations, r.Inconclusive)
}

// Add folds another run's counts into r.
func (r *Report) Add(o Report) {
	r.Histories += o.Histories
	r.Operations += o.Operations
	r.Writes += o.Writes
	r.Deletes += o.Deletes
	r.Reads += o.Reads
	r.Unknown += o.Unknown
	r.Violations += o.Violations
	r.Inconclusive += o.Inconclusive
	r.Visualizations = append(r.Visualizations, o.Visualizations...)
	if r.Faults == nil {
		r.Faults, r.Lanes = map[string]int{}, map[string]int{}
	}
	if r.Protocol == nil {
		r.Protocol = map[string]int{}
	}
	for k, n := range o.Protocol {
		r.Protocol[k] += n
	}
	for k, n := range o.Faults {
		r.Faults[k] += n
	}
	for k, n := range o.Lanes {
		r.Lanes[k] += n
	}
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

// Run performs one seeded run. shared is needed for BackendDynamoDB only (it provides
// DynamoDB Local); the valkey-server binary is found as devstack finds it.
func Run(ctx context.Context, shared *devstack.Shared, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	if cfg.ValkeyReplicas > 0 {
		for _, f := range cfg.Faults {
			if !slices.Contains(ReplicatedFaults, f) {
				return Report{}, fmt.Errorf("fault %q needs the single valkey-server behind toxiproxy; a replicated cluster takes %v", f, ReplicatedFaults)
			}
		}
	}
	rep := Report{Seed: cfg.Seed, Faults: map[string]int{}, Lanes: map[string]int{}}
	logf := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	env, err := newEnvironment(ctx, shared, cfg)
	if err != nil {
		return rep, err
	}
	defer env.close()
	if err := env.applySet(ctx); err != nil {
		return rep, err
	}

	cache := "one valkey-server"
	if cfg.ValkeyReplicas > 0 {
		cache = fmt.Sprintf("a cluster of 3 primaries x %d replicas", cfg.ValkeyReplicas)
	}
	logf("chaos seed=%d: %s, %s, %d replicas, %d writers, %d readers, %d keys, %v, faults every ~%v, mutation %q",
		cfg.Seed, cfg.Backend, cache, cfg.Replicas, cfg.Writers, cfg.Readers, cfg.Keys, cfg.Duration, cfg.FaultEvery, cfg.Mutation)
	rng := rand.New(rand.NewSource(cfg.Seed))
	start := time.Now()
	history, lanes := env.drive(ctx, rng, start)
	for k, n := range env.injector.counts {
		rep.Faults[k] = n
	}
	rep.Lanes = lanes
	rep.Protocol = env.counts.snapshot()
	logf("chaos seed=%d: load done after %v, %d operations; checking", cfg.Seed, time.Since(start).Round(time.Millisecond), len(history))
	check(history, cfg, &rep)
	logf("chaos %s", rep)
	return rep, nil
}
