package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// proxies puts an in-process toxiproxy between each replica and each store it reaches
// over the network, so that a fault can hit one replica's path to one store.
type proxies struct {
	server *toxiproxy.ApiServer
}

func newProxies() *proxies {
	return &proxies{server: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())}
}

func (p *proxies) add(name, upstream string) (*toxiproxy.Proxy, error) {
	px := toxiproxy.NewProxy(p.server, name, "127.0.0.1:0", upstream)
	if err := px.Start(); err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	return px, nil
}

// toxic adds a toxic and returns a function that removes it.
func toxic(px *toxiproxy.Proxy, name, kind, stream string, attrs string) (func(), error) {
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"attributes":%s}`, name, kind, stream, attrs)
	if _, err := px.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		return nil, fmt.Errorf("toxic %s on %s: %w", kind, px.Name, err)
	}
	return func() { _ = px.Toxics.RemoveToxic(context.Background(), name) }, nil
}

// cacheFaults hit the cache (over toxiproxy) or the replica itself; both backends use them.
var cacheFaults = []string{
	"valkey-latency", // a slow cache path for one replica
	"valkey-stall",   // the cache path stops answering (toxiproxy timeout)
	"valkey-reset",   // connections reset
	"valkey-restart", // ValKey restarts empty: markers and values are gone
	"valkey-flush",   // FLUSHALL: the same loss, without reconnects
	"lru-eviction",   // filler data pushes hot keys out under maxmemory
	"replica-crash",  // writes on one replica die between COMMIT and PUBLISH
	"reader-pause",   // reads on one replica stall between the database read and RECORD
}

// databaseFaults hit one replica's path to the database. The names are the same for both
// backends; DynamoDB Local gets them through toxiproxy, the in-memory database through
// its decorator.
var databaseFaults = []string{
	"ddb-latency",              // a slow database path
	"ddb-timeout-after-commit", // commits land, answers come after the write deadline
	"ddb-reset",                // connections reset (a write may have applied; a retry may fail its condition)
}

// ReplicatedFaults are the faults of a run on a replicated ValKey Cluster: no proxy sits
// in front of it, so the cache faults are a failover that loses what the replica had not
// received, plus those the cache decorator injects.
var ReplicatedFaults = []string{
	"failover",      // a replica takes over its primary after its replication was cut off
	"replica-crash", // as above
	"reader-pause",  // as above
	"ddb-latency", "ddb-timeout-after-commit", "ddb-reset",
}

// FaultKinds are the faults a run on backend draws from by default.
func FaultKinds(backend string) []string {
	return append(append([]string(nil), cacheFaults...), databaseFaults...)
}

type injector struct {
	env    *environment
	rng    *rand.Rand
	mu     sync.Mutex
	counts map[string]int
	seq    atomic.Int64
}

// run injects faults until ctx ends: one at a time, each held for a random while.
func (f *injector) run(ctx context.Context, rng *rand.Rand, kinds []string, every time.Duration) {
	f.rng = rng
	for {
		wait := every/2 + time.Duration(f.rng.Int63n(int64(every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		kind := kinds[f.rng.Intn(len(kinds))]
		hold := 100*time.Millisecond + time.Duration(f.rng.Int63n(int64(f.env.cfg.FaultHold-100*time.Millisecond+1)))
		r := f.env.replicas[f.rng.Intn(len(f.env.replicas))]
		undo, err := f.inject(ctx, kind, r)
		if err != nil {
			if p := f.env.cfg.Progress; p != nil {
				fmt.Fprintf(p, "chaos: fault %s not injected: %v\n", kind, err)
			}
			continue
		}
		f.mu.Lock()
		f.counts[kind]++
		f.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		if undo != nil {
			undo()
		}
	}
}

func (f *injector) inject(ctx context.Context, kind string, r *replica) (func(), error) {
	name := fmt.Sprintf("%s-%d", kind, f.seq.Add(1))
	twoWay := func(px *toxiproxy.Proxy, toxicKind, attrs string) (func(), error) {
		up, err := toxic(px, name+"-up", toxicKind, "upstream", attrs)
		if err != nil {
			return nil, err
		}
		down, err := toxic(px, name+"-down", toxicKind, "downstream", attrs)
		if err != nil {
			up()
			return nil, err
		}
		return func() { up(); down() }, nil
	}
	deadline := f.env.cfg.WriteTimeout + 200*time.Millisecond
	switch kind {
	case "valkey-latency":
		return twoWay(r.vkProxy, "latency", `{"latency":80,"jitter":80}`)
	case "valkey-stall":
		return toxic(r.vkProxy, name, "timeout", "upstream", `{"timeout":0}`)
	case "valkey-reset":
		return toxic(r.vkProxy, name, "reset_peer", "upstream", `{"timeout":0}`)
	case "failover":
		// Writes keep arriving at the primary for the cutoff; the replica gets none of them.
		cutoff := 200*time.Millisecond + time.Duration(f.rng.Int63n(int64(400*time.Millisecond)))
		// A failover once begun runs to the end, past the load's end if need be, so the
		// cluster is whole again (and each node has one role) when the run stops.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return nil, f.env.cluster.Failover(fctx, f.rng.Int(), cutoff)
	case "valkey-restart":
		return nil, f.env.valkey.Restart(ctx)
	case "valkey-flush":
		c := f.env.direct.Client()
		return nil, c.Do(ctx, c.B().Flushall().Build()).Error()
	case "lru-eviction":
		c := f.env.direct.Client()
		filler := strings.Repeat("x", 16<<10)
		for i := 0; i < 300; i++ {
			_ = c.Do(ctx, c.B().Set().Key(fmt.Sprintf("filler:%d:%d", f.seq.Load(), i)).Value(filler).Build()).Error()
		}
		return nil, nil
	case "replica-crash":
		r.cache.crashing.Store(true)
		return func() { r.cache.crashing.Store(false) }, nil
	case "reader-pause":
		before := r.cache.pause.Swap(int64(50*time.Millisecond + time.Duration(f.rng.Int63n(int64(150*time.Millisecond)))))
		return func() { r.cache.pause.Store(before) }, nil
	}
	if r.db != nil { // the in-memory database: its decorator
		switch kind {
		case "ddb-latency":
			r.db.latency.Store(int64(120 * time.Millisecond))
			return func() { r.db.latency.Store(0) }, nil
		case "ddb-timeout-after-commit":
			r.db.lateAnswers.Store(true)
			return func() { r.db.lateAnswers.Store(false) }, nil
		case "ddb-reset":
			r.db.resets.Store(true)
			return func() { r.db.resets.Store(false) }, nil
		}
		return nil, fmt.Errorf("unknown fault %q", kind)
	}
	switch kind {
	case "ddb-latency":
		return twoWay(r.ddbProxy, "latency", `{"latency":60,"jitter":60}`)
	case "ddb-timeout-after-commit":
		// Only responses are delayed: requests arrive and commit, callers give up first.
		return toxic(r.ddbProxy, name, "latency", "downstream", fmt.Sprintf(`{"latency":%d}`, deadline.Milliseconds()))
	case "ddb-reset":
		return toxic(r.ddbProxy, name, "reset_peer", "downstream", `{"timeout":0}`)
	}
	return nil, fmt.Errorf("unknown fault %q", kind)
}
