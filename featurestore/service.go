package featurestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Config tunes the Service. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// WriteTimeout bounds a write's COMMIT phase. It must be shorter than Lease: a commit
	// still running when its lease ends could be missed by a reader that heals the key.
	WriteTimeout time.Duration
	// Lease is how long a writer's token keeps the cache key dirty. The cache must use the
	// same value as its horizon.
	Lease time.Duration
	// PublishTimeout bounds PUBLISH, which runs even when the caller has gone away.
	PublishTimeout time.Duration
	// MaxCommitAttempts bounds retries of a conditional write that lost a race.
	MaxCommitAttempts int
	// Parallelism bounds the keys committed at once by one request.
	Parallelism int
	// MaxEntities, MaxFeatureRefs and MaxValues bound one GetFeatures call.
	MaxEntities    int
	MaxFeatureRefs int
	MaxValues      int
	// MaxRows bounds the rows of one WriteFeatures call.
	MaxRows int
	// Metrics, if set, receives cache and repair counts (default: discarded).
	Metrics Metrics
	// AfterCommit, if set, runs between COMMIT and PUBLISH. It exists for fault injection:
	// when it returns an error the write ends as if its replica had died there, with no
	// PUBLISH and no repair, and the caller gets that error. Leave nil in production.
	AfterCommit func(ctx context.Context, keys []ItemKey) error
	// BeforePopulate, if set, runs between a read's database read and its POPULATE. It
	// exists for fault injection: a reader paused there (a GC pause, a starved CPU) while
	// writers move on is exactly what populate tickets defend against. Leave nil in
	// production.
	BeforePopulate func(ctx context.Context)
}

// DefaultConfig is the configuration used for zero fields.
func DefaultConfig() Config {
	return Config{
		WriteTimeout:      2 * time.Second,
		Lease:             3 * time.Second,
		PublishTimeout:    time.Second,
		MaxCommitAttempts: 8,
		Parallelism:       16,
		MaxEntities:       1000,
		MaxFeatureRefs:    1000,
		MaxValues:         100_000,
		MaxRows:           1000,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	setD := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	setD(&c.WriteTimeout, d.WriteTimeout)
	setD(&c.Lease, d.Lease)
	setD(&c.PublishTimeout, d.PublishTimeout)
	set(&c.MaxCommitAttempts, d.MaxCommitAttempts)
	set(&c.Parallelism, d.Parallelism)
	set(&c.MaxEntities, d.MaxEntities)
	set(&c.MaxFeatureRefs, d.MaxFeatureRefs)
	set(&c.MaxValues, d.MaxValues)
	set(&c.MaxRows, d.MaxRows)
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	return c
}

// Service is the feature store's domain service: the registry, GetFeatures and the
// write lanes, all on the write-through protocol described in the package doc.
type Service struct {
	db       Database
	cache    Cache
	erasures Erasures
	clock    Clock
	cfg      Config
	logger   *slog.Logger

	tokenPrefix string
	tokenSeq    atomic.Uint64

	// sets memoizes decoded feature sets by name; an entry is used only when its version
	// equals the version the cache or database just returned, so it is never stale.
	sets sync.Map // string -> FeatureSet

	repairs chan []Publication
}

// New returns a Service. erasures may be nil when GDPR deletion is not wired (rows are
// then never refused for an erased subject). Call Run to start the background repair of
// failed publishes.
func New(db Database, cache Cache, erasures Erasures, clock Clock, cfg Config, logger *slog.Logger) (*Service, error) {
	cfg = cfg.withDefaults()
	if cfg.WriteTimeout >= cfg.Lease {
		return nil, fmt.Errorf("write timeout %v must be shorter than the lease %v", cfg.WriteTimeout, cfg.Lease)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("token prefix: %w", err)
	}
	return &Service{
		db:          db,
		cache:       cache,
		erasures:    erasures,
		clock:       clock,
		cfg:         cfg,
		logger:      logger,
		tokenPrefix: hex.EncodeToString(b[:]),
		repairs:     make(chan []Publication, 1024),
	}, nil
}

// Config returns the effective configuration.
func (s *Service) Config() Config { return s.cfg }

func (s *Service) newToken() string {
	return s.tokenPrefix + strconv.FormatUint(s.tokenSeq.Add(1), 16)
}

// Run repairs publishes that failed, with backoff, until ctx ends. A failed publish
// leaves keys dirty (readers go to the database) until the repair or the lease heals them.
func (s *Service) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case pubs := <-s.repairs:
			s.repair(ctx, pubs)
		}
	}
}

func (s *Service) repair(ctx context.Context, pubs []Publication) {
	backoff := 50 * time.Millisecond
	for attempt := 1; attempt <= 10; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
		err := s.cache.Publish(pctx, pubs)
		cancel()
		if err == nil {
			s.logger.Info("repaired publish", "keys", len(pubs), "attempt", attempt)
			s.cfg.Metrics.PublishRepairs(ctx, true)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	s.logger.Warn("gave up repairing publish; keys heal when their leases end", "keys", len(pubs))
	s.cfg.Metrics.PublishRepairs(ctx, false)
}

// commitFunc commits key i. It returns the item now stored, with ok when that item is
// known to be committed (and may be published), even if err reports a failure.
type commitFunc func(ctx context.Context, i int) (item Item, ok bool, err error)

// commitAllFunc commits every key and fills items, oks and errs (as commitFunc, per key).
type commitAllFunc func(ctx context.Context, items []Item, oks []bool, errs []error)

// perKey commits keys one by one, in parallel up to the configured bound.
func (s *Service) perKey(idx []int, commit commitFunc) commitAllFunc {
	return func(ctx context.Context, items []Item, oks []bool, errs []error) {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.cfg.Parallelism)
		for _, i := range idx {
			g.Go(func() error {
				items[i], oks[i], errs[i] = commit(gctx, i)
				return nil
			})
		}
		_ = g.Wait()
	}
}

func allIndexes(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// writeThrough runs MARK, COMMIT and PUBLISH for keys. It returns nil only when every
// key committed and was published. A cache failure before COMMIT is KindUnavailable and
// nothing was written; a failure after is KindUnavailable with an unknown outcome.
func (s *Service) writeThrough(ctx context.Context, keys []ItemKey, commit commitAllFunc) error {
	start := s.clock.Now()
	ckeys := make([]string, len(keys))
	for i, k := range keys {
		ckeys[i] = k.CacheKey()
	}
	token := s.newToken()
	if err := s.cache.Mark(ctx, ckeys, token, s.cfg.Lease); err != nil {
		return Unavailable("cache unavailable, nothing was written", err)
	}
	// The commit's deadline counts from before MARK, so it ends before the lease does.
	cctx, cancel := context.WithDeadline(ctx, start.Add(s.cfg.WriteTimeout))
	defer cancel()
	items := make([]Item, len(keys))
	oks := make([]bool, len(keys))
	errs := make([]error, len(keys))
	commit(cctx, items, oks, errs)

	if s.cfg.AfterCommit != nil {
		if err := s.cfg.AfterCommit(ctx, keys); err != nil {
			return err
		}
	}
	pubs := make([]Publication, 0, len(keys))
	for i := range keys {
		if oks[i] {
			pubs = append(pubs, Publication{Key: ckeys[i], Token: token, Version: items[i].Version, Data: items[i].Data})
		}
		// A key whose commit failed keeps its token: its outcome may be unknown, so only a
		// reader after the lease may decide what the cache holds.
	}
	var pubErr error
	if len(pubs) > 0 {
		// Publish even if the caller went away: the rows are durable and the cache should
		// say so. WithoutCancel keeps the caller's values (trace) but not its deadline.
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
		pubErr = s.cache.Publish(pctx, pubs)
		pcancel()
		if pubErr != nil {
			select {
			case s.repairs <- pubs:
			default:
				s.logger.Warn("publish repair queue full; keys heal when their leases end", "keys", len(pubs))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return firstError(errs)
	}
	if pubErr != nil {
		return Unavailable("written to the database but the cache could not be updated; the outcome is durable, retrying is safe", pubErr)
	}
	return nil
}

// firstError returns the first error with a Kind other than internal, else the first.
func firstError(errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		if ErrorKind(err) != KindInternal {
			return err
		}
	}
	return first
}

// resolved is what a read found for one key.
type resolved struct {
	found   bool
	version int64
	data    []byte
}

// readThrough reads keys from the cache in one pipelined round trip and reads the rest
// from the database in one wave of consistent batched reads, repopulating the cache
// where Prepare allowed it. A cache failure is not an error: reads need only the database.
func (s *Service) readThrough(ctx context.Context, keys []ItemKey) ([]resolved, error) {
	ckeys := make([]string, len(keys))
	for i, k := range keys {
		ckeys[i] = k.CacheKey()
	}
	out := make([]resolved, len(keys))
	entries, cerr := s.cache.Get(ctx, ckeys)
	var miss []int
	if cerr != nil {
		s.logger.Debug("cache get failed; reading the database", "err", cerr)
		miss = make([]int, len(keys))
		for i := range miss {
			miss[i] = i
		}
	} else {
		dirty := 0
		for i, e := range entries {
			if e.State == CacheValue {
				out[i] = resolved{found: len(e.Data) > 0, version: e.Version, data: e.Data}
			} else {
				miss = append(miss, i)
				if e.State == CacheDirty {
					dirty++
				}
			}
		}
		s.cfg.Metrics.CacheLookups(ctx, len(keys)-len(miss), dirty, len(miss)-dirty)
	}
	if len(miss) == 0 {
		return out, nil
	}
	mkeys := make([]ItemKey, len(miss))
	mckeys := make([]string, len(miss))
	for j, i := range miss {
		mkeys[j] = keys[i]
		mckeys[j] = ckeys[i]
	}
	var tickets []string
	if cerr == nil {
		var err error
		if tickets, err = s.cache.Prepare(ctx, mckeys); err != nil {
			tickets = nil
		}
	}
	items, err := s.db.GetItems(ctx, mkeys)
	if err != nil {
		return nil, Unavailable("database unavailable", err)
	}
	var pops []Publication
	refused := 0
	for j, i := range miss {
		it, ok := items[keys[i]]
		if ok {
			out[i] = resolved{found: len(it.Data) > 0, version: it.Version, data: it.Data}
		}
		if tickets != nil && tickets[j] != "" {
			// An absent item is cached too (version 0, no data), so unknown entities stay cheap.
			pops = append(pops, Publication{Key: mckeys[j], Token: tickets[j], Version: it.Version, Data: it.Data})
		} else if tickets != nil {
			refused++
		}
	}
	if len(pops) > 0 {
		if s.cfg.BeforePopulate != nil {
			s.cfg.BeforePopulate(ctx)
		}
		stored, err := s.cache.Populate(ctx, pops)
		if err != nil {
			s.logger.Debug("cache populate failed", "err", err)
		}
		refused += len(pops) - stored
		s.cfg.Metrics.Populates(ctx, stored, refused)
	} else if refused > 0 {
		s.cfg.Metrics.Populates(ctx, 0, refused)
	}
	return out, nil
}
