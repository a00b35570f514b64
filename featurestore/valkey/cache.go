// Package valkey implements featurestore.Cache on ValKey (or Redis 7+), standalone or
// cluster. Each key holds one envelope string (VALUE or DIRTY) and is changed only by
// single-key Lua scripts, so every update is atomic and works across cluster slots.
package valkey

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	vk "github.com/valkey-io/valkey-go"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// Options tune the cache.
type Options struct {
	// ValueTTL is how long a VALUE (and a DIRTY marker) lives without being touched.
	ValueTTL time.Duration
	// FenceTTL is how long an empty VALUE (an absent or erased row: a version fence) lives.
	// It must outlast the longest read deadline. Default 1 minute.
	FenceTTL time.Duration
	// Horizon is how long a key recreated after it went missing (evicted, expired, or lost
	// in a flush or restart) stays under suspicion: writers whose tokens the loss took may
	// still land a put until then (writethrough.Config.Horizon). What readers store before
	// it is provisional: served until half a horizon after it, and renewed for good by a
	// read after it. Required.
	Horizon time.Duration
	// Timeout bounds every cache call, so that a stalled or dead cache costs reads a
	// bounded delay before they fall back to the database. Default 500ms.
	Timeout time.Duration
	// Replicas is how many replicas must acknowledge a writer's MARK (and a token ASSERT
	// put back) before the writer goes on to commit: with ValKey replicas, a failover
	// must not lose the marker of a writer that may commit. 0 (no replicas) waits for
	// none. See the README's section on replicas.
	Replicas int
	// Tracer, if set, traces each pipelined round trip.
	Tracer trace.Tracer
	// Metrics, if set, counts entries refused for being bound to another key.
	Metrics Metrics
	// Username and Password authenticate to ValKey (an ACL user, or the default user's
	// requirepass with an empty Username); TLS, if set, encrypts the connection.
	Username, Password string
	TLS                *tls.Config
}

// Metrics receives what the cache observes beyond the store's own counts.
type Metrics interface {
	// CacheMisbound counts entries found under a key they are not bound to (copied or
	// renamed there); they are read from the database instead.
	CacheMisbound(ctx context.Context, n int)
}

// Cache is a writethrough.Cache on a ValKey client.
type Cache struct {
	client  vk.Client
	opts    Options
	scripts [5]script

	ticketPrefix string
	ticketSeq    atomic.Uint64

	clocks *serverClocks
}

var _ writethrough.Cache = (*Cache)(nil)

type script struct {
	src string
	sha string
}

var scriptNames = [...]string{"valkey.MARK", "valkey.PUBLISH", "valkey.PREPARE", "valkey.RECORD", "valkey.ASSERT"}

// span starts a client span for one pipelined round trip of n commands.
func (c *Cache) span(ctx context.Context, name string, n int) (context.Context, func(error)) {
	if c.opts.Tracer == nil {
		return ctx, func(error) {}
	}
	ctx, sp := c.opts.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attribute.Int("valkey.keys", n)))
	return ctx, func(err error) {
		if err != nil {
			sp.SetStatus(otelcodes.Error, err.Error())
		}
		sp.End()
	}
}

const (
	scriptMark = iota
	scriptPublish
	scriptPrepare
	scriptRecord
	scriptAssert
)

// Dial connects to ValKey at addrs (one address for standalone, any node addresses for a
// cluster) and checks that it answers. It returns an error naming the address if not.
func Dial(ctx context.Context, addrs []string, opts Options) (*Cache, error) {
	client, err := vk.NewClient(vk.ClientOption{
		InitAddress:  addrs,
		Username:     opts.Username,
		Password:     opts.Password,
		TLSConfig:    opts.TLS,
		DisableCache: true,
		// Fail fast when the server is gone: reads fall back to the database and writes
		// answer UNAVAILABLE. The client's own retries would hide an outage behind a hang.
		ConnWriteTimeout: 2 * time.Second,
		DisableRetry:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to valkey at %v: %w", addrs, err)
	}
	c, err := New(client, opts)
	if err != nil {
		client.Close()
		return nil, err
	}
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		client.Close()
		return nil, fmt.Errorf("ping valkey at %v: %w", addrs, err)
	}
	return c, nil
}

// New wraps an existing client.
func New(client vk.Client, opts Options) (*Cache, error) {
	if opts.ValueTTL <= 0 {
		opts.ValueTTL = 24 * time.Hour
	}
	if opts.FenceTTL <= 0 {
		opts.FenceTTL = time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 500 * time.Millisecond
	}
	if opts.Horizon <= 0 {
		return nil, errors.New("valkey cache: the horizon after a loss is required")
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("ticket prefix: %w", err)
	}
	c := &Cache{client: client, opts: opts, ticketPrefix: hex.EncodeToString(b[:]), clocks: newServerClocks()}
	for i, src := range []string{markScript, publishScript, prepareScript, recordScript, assertScript} {
		sum := sha1.Sum([]byte(src))
		c.scripts[i] = script{src: src, sha: hex.EncodeToString(sum[:])}
	}
	return c, nil
}

// Horizon returns Options.Horizon: a writethrough.Store must use the same.
func (c *Cache) Horizon() time.Duration { return c.opts.Horizon }

// Client returns the underlying client, for tests and tools.
func (c *Cache) Client() vk.Client { return c.client }

// Close closes the client.
func (c *Cache) Close() { c.client.Close() }

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Get reads keys in one pipelined round trip.
func (c *Cache) Get(ctx context.Context, keys []string) ([]writethrough.CacheEntry, error) {
	cmds := make(vk.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.client.B().Get().Key(k).Build()
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	ctx, end := c.span(ctx, "valkey.GET", len(keys))
	res := c.client.DoMulti(ctx, cmds...)
	end(nil)
	out := make([]writethrough.CacheEntry, len(keys))
	var provisional []int // positions of provisional entries, judged once their clocks are known
	var envs []Envelope
	misbound := 0
	defer func() {
		if misbound > 0 && c.opts.Metrics != nil {
			c.opts.Metrics.CacheMisbound(ctx, misbound)
		}
	}()
	for i, r := range res {
		b, err := r.AsBytes()
		if vk.IsValkeyNil(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("valkey get: %w", err)
		}
		e, err := DecodeEnvelopeFor(b, keys[i])
		if err != nil {
			// Another key's, not ours, or damaged: treat as dirty, so the reader goes to
			// the database (and PREPARE replaces the entry).
			if errors.Is(err, ErrMisbound) {
				misbound++
			}
			out[i] = writethrough.CacheEntry{State: writethrough.CacheDirty}
			continue
		}
		if e.Dirty {
			out[i] = writethrough.CacheEntry{State: writethrough.CacheDirty, Version: e.Version}
			if e.Provisional() {
				provisional = append(provisional, i)
				envs = append(envs, e)
			}
		} else {
			out[i] = writethrough.CacheEntry{State: writethrough.CacheValue, Version: e.Version, Data: e.Payload}
		}
	}
	if len(provisional) > 0 {
		pkeys := make([]string, len(provisional))
		for j, i := range provisional {
			pkeys[j] = keys[i]
		}
		c.sampleClocks(ctx, pkeys)
		for j, i := range provisional {
			out[i] = c.provisional(pkeys[j], envs[j])
		}
	}
	return out, nil
}

// provisional is what Get reports of key's provisional entry: servable until half a
// horizon after its own (the grace the store's readers wait out too), and to be renewed
// once the horizon has surely passed, when a read from the database may store it for good.
func (c *Cache) provisional(key string, e Envelope) writethrough.CacheEntry {
	lo, hi, ok := c.bounds(key)
	if !ok || hi >= e.HorizonMs+c.opts.Horizon.Milliseconds()/2 {
		return writethrough.CacheEntry{State: writethrough.CacheDirty, Version: e.Version}
	}
	return writethrough.CacheEntry{State: writethrough.CacheValue, Version: e.Version, Data: e.Payload, Renew: lo >= e.HorizonMs}
}

// Mark adds token with lease to every key. An error means some keys may be marked; they
// heal when the lease ends.
func (c *Cache) Mark(ctx context.Context, keys []string, token string, lease time.Duration) error {
	calls, err := c.markCalls(keys, token, lease)
	if err != nil {
		return err
	}
	_, err = c.runWritten(ctx, scriptMark, calls)
	return err
}

// Assert makes sure token is still on every key, adding it back with lease where the
// entry was lost, and returns how many keys needed it. An error means the tokens may be
// missing: the writer must not put.
func (c *Cache) Assert(ctx context.Context, keys []string, token string, lease time.Duration) (int, error) {
	calls, err := c.markCalls(keys, token, lease)
	if err != nil {
		return 0, err
	}
	res, err := c.runWritten(ctx, scriptAssert, calls)
	if err != nil {
		return 0, err
	}
	lost := 0
	for _, r := range res {
		if n, _ := r.AsInt64(); n == 0 {
			lost++
		}
	}
	return lost, nil
}

func (c *Cache) markCalls(keys []string, token string, lease time.Duration) ([]call, error) {
	if lease < time.Millisecond {
		return nil, fmt.Errorf("lease %v: the writer's lease has ended", lease)
	}
	args := []string{token, ms(lease), ms(c.opts.Horizon), ms(c.opts.ValueTTL)}
	calls := make([]call, len(keys))
	for i, k := range keys {
		calls[i] = call{key: k, args: args}
	}
	return calls, nil
}

// Publish records committed versions and removes the writers' tokens. With replicas it
// returns only once they hold the outcome: a writer whose token a loss took may have made
// a servable entry DIRTY, and its acknowledgement must not outlive a failover.
func (c *Cache) Publish(ctx context.Context, pubs []writethrough.Publication) error {
	write := c.writeFlag()
	_, err := c.runWritten(ctx, scriptPublish, c.pubCalls(pubs, func(int) []string { return []string{ms(c.opts.Horizon), write} }))
	return err
}

// Record records versions read from the database, each under the ticket Prepare
// returned for it (Publication.Token, "" for none), and returns what it did with each
// (see recordScript). With replicas it returns only once they hold what it recorded, or
// what was there already. On error it returns no results: any record may have failed.
func (c *Cache) Record(ctx context.Context, recs []writethrough.Publication) ([]writethrough.Recorded, error) {
	base, write, horizon := c.newTicket(), c.writeFlag(), ms(c.opts.Horizon)
	sent := time.Now()
	res, err := c.runWritten(ctx, scriptRecord, c.pubCalls(recs, func(i int) []string {
		return []string{base + strconv.Itoa(i), write, horizon}
	}))
	received := time.Now()
	if err != nil {
		return nil, err
	}
	out := make([]writethrough.Recorded, len(recs))
	for i, r := range res {
		v, err := r.AsIntSlice()
		if err != nil || len(v) != 3 {
			return nil, fmt.Errorf("valkey record: unexpected reply %v: %w", r, err)
		}
		out[i] = writethrough.Recorded{Stored: v[0] == 1 || v[0] == 2, Serves: v[1] == 1}
		if v[0] == 2 {
			// Its readers' GETs need the node's clock to serve it: the script's own
			// reading of it, taken between sent and received, is a sample for the slot.
			c.clocks.offer(Slot(recs[i].Key), v[2], sent, received)
		}
	}
	return out, nil
}

// writeFlag tells the scripts to write the entry even when nothing changes, so that the
// WAIT after them covers the state they saw: with replicas only.
func (c *Cache) writeFlag() string {
	if c.opts.Replicas > 0 {
		return "1"
	}
	return "0"
}

func (c *Cache) newTicket() string {
	return c.ticketPrefix + strconv.FormatUint(c.ticketSeq.Add(1), 16) + "-"
}

func (c *Cache) pubCalls(pubs []writethrough.Publication, extra func(i int) []string) []call {
	ttl, fence := ms(c.opts.ValueTTL), ms(c.opts.FenceTTL)
	calls := make([]call, len(pubs))
	for i, p := range pubs {
		t := ttl
		if len(p.Data) == 0 {
			t = fence
		}
		args := []string{p.Token, strconv.FormatInt(p.Version, 10), vk.BinaryString(p.Data), t}
		if extra != nil {
			args = append(args, extra(i)...)
		}
		calls[i] = call{key: p.Key, args: args}
	}
	return calls
}

// Prepare returns, per key, the ticket under which a value read from the database
// afterwards may be stored by Record, or "" where none may. With replicas it returns
// only once they hold the state the tickets were granted on.
func (c *Cache) Prepare(ctx context.Context, keys []string) ([]string, error) {
	base := c.newTicket()
	horizon, ttl := ms(c.opts.Horizon), ms(c.opts.ValueTTL)
	calls := make([]call, len(keys))
	for i, k := range keys {
		calls[i] = call{key: k, args: []string{base + strconv.Itoa(i), horizon, ttl}}
	}
	res, err := c.runWritten(ctx, scriptPrepare, calls)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(keys))
	for i, r := range res {
		out[i], _ = r.ToString()
	}
	return out, nil
}

// ErrNotReplicated: fewer replicas than Options.Replicas acknowledged a write in time.
// The write is on the primary; a failover may lose it.
var ErrNotReplicated = errors.New("valkey: the write was not acknowledged by enough replicas")

// runWritten is run for the scripts whose effect must survive a failover: with
// Options.Replicas set, each slot's calls go on a dedicated connection followed by WAIT
// there, which covers that connection's writes and, since a primary replicates in one
// ordered stream, every write the node made before them.
func (c *Cache) runWritten(ctx context.Context, which int, calls []call) ([]vk.ValkeyResult, error) {
	if c.opts.Replicas <= 0 {
		return c.run(ctx, which, calls)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	ctx, end := c.span(ctx, scriptNames[which]+"+WAIT", len(calls))
	var err error
	defer func() { end(err) }()
	bySlot := map[uint16][]int{}
	for i, cl := range calls {
		s := Slot(cl.key)
		bySlot[s] = append(bySlot[s], i)
	}
	res := make([]vk.ValkeyResult, len(calls))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, idx := range bySlot {
		g.Go(func() error {
			for attempt := 0; ; attempt++ {
				err := c.client.Dedicated(func(d vk.DedicatedClient) error {
					out, err := c.replicated(gctx, d, which, calls, idx)
					for j, i := range idx {
						res[i] = out[j]
					}
					return err
				})
				// A dedicated connection does not follow MOVED, and after a failover the
				// client's slot map is refreshed only after a short random delay. MOVED
				// means the node ran nothing, so the scripts are sent again once the map
				// has changed, within this call's timeout.
				if _, ok := moved(err); !ok || attempt == 20 {
					return err
				}
				select {
				case <-gctx.Done():
					return err
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	err = g.Wait()
	return res, err
}

// replicated runs calls idx (one slot) and WAIT on d, resending by source what the
// server did not know by SHA.
func (c *Cache) replicated(ctx context.Context, d vk.DedicatedClient, which int, calls []call, idx []int) ([]vk.ValkeyResult, error) {
	s := c.scripts[which]
	wait := d.B().Wait().Numreplicas(int64(c.opts.Replicas)).Timeout(max(1, c.opts.Timeout.Milliseconds()/2)).Build()
	cmds := make(vk.Commands, 0, len(idx)+1)
	for _, i := range idx {
		cmds = append(cmds, d.B().Evalsha().Sha1(s.sha).Numkeys(1).Key(calls[i].key).Arg(calls[i].args...).Build())
	}
	res := d.DoMulti(ctx, append(cmds, wait)...)
	if err, ok := vk.IsValkeyErr(res[0].Error()); ok && err.IsNoScript() {
		cmds = cmds[:0]
		for _, i := range idx {
			cmds = append(cmds, d.B().Eval().Script(s.src).Numkeys(1).Key(calls[i].key).Arg(calls[i].args...).Build())
		}
		wait := d.B().Wait().Numreplicas(int64(c.opts.Replicas)).Timeout(max(1, c.opts.Timeout.Milliseconds()/2)).Build()
		res = d.DoMulti(ctx, append(cmds, wait)...)
	}
	for _, r := range res[:len(idx)] {
		if err := r.Error(); err != nil && !vk.IsValkeyNil(err) {
			return res, fmt.Errorf("valkey script: %w", err)
		}
	}
	n, err := res[len(idx)].AsInt64()
	if err != nil {
		return res, fmt.Errorf("valkey wait: %w", err)
	}
	if n < int64(c.opts.Replicas) {
		return res, fmt.Errorf("%w: %d of %d", ErrNotReplicated, n, c.opts.Replicas)
	}
	return res, nil
}

// moved reports whether err is a MOVED redirection, and to which node.
func moved(err error) (string, bool) {
	var verr *vk.ValkeyError
	if !errors.As(err, &verr) {
		return "", false
	}
	return verr.IsMoved()
}

type call struct {
	key  string
	args []string
}

// run executes one script per call in one pipelined round trip, by SHA; if the server
// does not know the script (first use, or after a restart) it resends those calls with
// the source, which also loads it.
func (c *Cache) run(ctx context.Context, which int, calls []call) (res []vk.ValkeyResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	ctx, end := c.span(ctx, scriptNames[which], len(calls))
	defer func() { end(err) }()
	s := c.scripts[which]
	cmds := make(vk.Commands, len(calls))
	for i, cl := range calls {
		cmds[i] = c.client.B().Evalsha().Sha1(s.sha).Numkeys(1).Key(cl.key).Arg(cl.args...).Build()
	}
	res = c.client.DoMulti(ctx, cmds...)
	var retry []int
	for i, r := range res {
		if err, ok := vk.IsValkeyErr(r.Error()); ok && err.IsNoScript() {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		cmds := make(vk.Commands, len(retry))
		for j, i := range retry {
			cmds[j] = c.client.B().Eval().Script(s.src).Numkeys(1).Key(calls[i].key).Arg(calls[i].args...).Build()
		}
		for j, r := range c.client.DoMulti(ctx, cmds...) {
			res[retry[j]] = r
		}
	}
	for _, r := range res {
		if err := r.Error(); err != nil && !vk.IsValkeyNil(err) {
			return res, fmt.Errorf("valkey script: %w", err)
		}
	}
	return res, nil
}
