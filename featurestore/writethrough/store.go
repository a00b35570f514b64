package writethrough

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sync/errgroup"
)

// Table names a group of items, such as one DynamoDB table. It prefixes cache keys, so
// keep it short.
type Table string

// Key addresses one item.
type Key struct {
	Table Table
	PK    string
}

// CacheKey is the key's name in the cache.
func (k Key) CacheKey() string { return string(k.Table) + ":" + k.PK }

// CacheKeys returns the cache keys of keys, cut from one string: a read of a hundred
// keys makes two allocations for their names rather than a hundred.
func CacheKeys(keys []Key) []string {
	n := 0
	for _, k := range keys {
		n += len(k.Table) + 1 + len(k.PK)
	}
	var b strings.Builder
	b.Grow(n)
	ends := make([]int, len(keys))
	for i, k := range keys {
		b.WriteString(string(k.Table))
		b.WriteByte(':')
		b.WriteString(k.PK)
		ends[i] = b.Len()
	}
	all := b.String()
	out := make([]string, len(keys))
	start := 0
	for i, end := range ends {
		out[i] = all[start:end]
		start = end
	}
	return out
}

// Item is one stored item.
type Item struct {
	Key Key
	// Version increases with every successful write and never goes backwards, also
	// across deletion.
	Version int64
	// Data is the caller's encoding; empty means the item holds nothing (a tombstone).
	Data []byte
	// Subject is the data subject the item belongs to; the database indexes items by it
	// (empty: not indexed).
	Subject string
	// ExpiresAt is the item's time to live in Unix seconds; 0 means never.
	ExpiresAt int64
}

// Limits of the database, which are DynamoDB's: an item of at most 400 KB (attribute
// names and values), a transaction of at most 100 items and 4 MB, a partition key of at
// most 2048 bytes.
const (
	MaxKeyBytes   = 2048
	MaxItemBytes  = 400 * 1024
	MaxGroupItems = 100
	MaxGroupBytes = 4 * 1024 * 1024
)

// Size is the item's size as DynamoDB counts it (attribute names plus values, numbers at
// their widest), with the attribute names the stores use.
func (it Item) Size() int {
	n := len("pk") + len(it.Key.PK) + len("version") + 21
	if len(it.Data) > 0 {
		n += len("row") + len(it.Data)
	}
	if it.Subject != "" {
		n += len("subject") + len(it.Subject)
	}
	if it.ExpiresAt != 0 {
		n += len("expires_at") + 21
	}
	return n
}

// Errors a Database returns.
var (
	// ErrConflict: a conditional write found another version.
	ErrConflict = errors.New("version conflict")
	// ErrAmbiguous: a conditional write failed its condition on an attempt the client
	// retried after an earlier attempt's outcome was lost; the earlier attempt may have
	// applied and been overwritten since, so neither "written" nor "lost the race" holds.
	ErrAmbiguous = errors.New("a retried conditional write failed its condition; an earlier attempt may have applied")
	// ErrItemTooLarge: an item exceeds MaxItemBytes, or a group MaxGroupItems or
	// MaxGroupBytes. Nothing was written.
	ErrItemTooLarge = errors.New("item or transaction exceeds the database's size limits")
	// ErrRefused: the database refused the request as invalid (DynamoDB's
	// ValidationException other than a size limit). Nothing was done, and no retry can
	// change the answer.
	ErrRefused = errors.New("the database refused the request as invalid")
)

// Errors of Update and Read; tell them apart with errors.Is. Each wraps its cause.
var (
	// ErrNotWritten: the update failed before anything could reach the database.
	ErrNotWritten = errors.New("nothing was written")
	// ErrOutcomeUnknown: a write may or may not have reached the database. Retrying an
	// idempotent mutation is safe.
	ErrOutcomeUnknown = errors.New("the write may have been applied")
	// ErrUnpublished: the write is durable but the cache could not be updated; it is
	// repaired in the background, and readers go to the database until then.
	ErrUnpublished = errors.New("written to the database, but the cache could not be updated")
	// ErrContention: conditional writes kept losing races with other writers; nothing of
	// this update was written for the keys that report it.
	ErrContention = errors.New("too many concurrent writes to one key")
	// ErrUnavailable: Read could not reach the database.
	ErrUnavailable = errors.New("database unavailable")
)

// Database is the source of truth. Every read is strongly consistent.
type Database interface {
	// GetItems reads keys; absent keys are absent from the map. Duplicates are allowed.
	GetItems(ctx context.Context, keys []Key) (map[Key]Item, error)
	// PutItem stores item if the stored version equals prevVersion (0: the item must not
	// exist). It returns ErrConflict if not, ErrAmbiguous when a retry cannot tell its
	// own earlier attempt from another writer, ErrItemTooLarge (nothing written); any
	// other error leaves the outcome unknown.
	PutItem(ctx context.Context, item Item, prevVersion int64) error
	// PutItems stores up to MaxGroupItems items (MaxGroupBytes in all) atomically, each if
	// its stored version equals its prevVersion; if any differs nothing is stored and
	// ErrConflict is returned. Errors as PutItem.
	PutItems(ctx context.Context, items []Item, prevVersions []int64) error
}

// CacheState is the state of a cache entry as a reader sees it.
type CacheState uint8

const (
	// CacheMissing: no entry.
	CacheMissing CacheState = iota
	// CacheValue: a committed version that may be served. Empty Data means "no item".
	CacheValue
	// CacheDirty: writes may be in flight or may have been lost; read the database.
	CacheDirty
)

// CacheEntry is what Get returns for one key.
type CacheEntry struct {
	State   CacheState
	Version int64
	Data    []byte
	// Renew: a servable entry stored provisionally whose horizon has passed; a read from
	// the database now would store it for good (see Run).
	Renew bool
}

// Publication carries a committed version to the cache. Token is the writer's token for
// Publish and the reader's ticket for Record ("" for none).
type Publication struct {
	Key     string
	Token   string
	Version int64
	Data    []byte
}

// Recorded is what Record did with one record.
type Recorded struct {
	// Stored: the record made the entry servable (a populate).
	Stored bool
	// Serves: once the record was done, the entry was servable at exactly the record's
	// version, so a GET at that moment would have served the record's item. Readers
	// waiting for the read that recorded it may answer with it (see the package doc).
	Serves bool
}

// Cache is the write-through cache. Each method works on many keys in one pipelined
// round trip, and updates each key atomically on its own. Implementations keep the
// guarantees the package doc relies on: MARK, ASSERT, PUBLISH, PREPARE and RECORD as
// described there, with Get reporting DIRTY for any entry that may not be served.
type Cache interface {
	Get(ctx context.Context, keys []string) ([]CacheEntry, error)
	Mark(ctx context.Context, keys []string, token string, lease time.Duration) error
	Publish(ctx context.Context, pubs []Publication) error
	// Prepare returns, per key, the ticket under which a value read from the database
	// afterwards may be stored by Record, or "" where none may.
	Prepare(ctx context.Context, keys []string) (tickets []string, err error)
	// Record records versions read from the database before a reader answers with them,
	// storing them where the ticket in Token allows, and returns what it did with each
	// record. Only a nil error says every version was recorded; with an error the
	// results say nothing.
	Record(ctx context.Context, recs []Publication) ([]Recorded, error)
	// Assert makes sure a writer's token is still on every key, adding it back (as Mark
	// does) where the entry was lost, and returns how many needed it. On error the
	// tokens may be missing.
	Assert(ctx context.Context, keys []string, token string, lease time.Duration) (lost int, err error)
}

// Clock tells the time; tests inject their own.
type Clock interface {
	Now() time.Time
}

// Metrics receives what the store observes.
type Metrics interface {
	// CacheLookups counts keys a read found servable (hits), dirty, or missing.
	CacheLookups(ctx context.Context, hits, dirty, missing int)
	// Populates counts keys a read stored in the cache after reading the database, and
	// those it could not store (no ticket, or the ticket was void by then).
	Populates(ctx context.Context, stored, refused int)
	// PublishRepairs counts background repairs of failed publishes, by outcome.
	PublishRepairs(ctx context.Context, ok bool)
	// Coalesced counts keys a read answered after waiting for another read of the same
	// replica to heal them (with that read's item, or from the cache), instead of
	// reading the database itself.
	Coalesced(ctx context.Context, n int)
	// LostTokens counts keys whose writer found its token lost before its put and
	// added it back.
	LostTokens(ctx context.Context, n int)
	// Unrecorded counts keys a read served from the database without the cache having
	// recorded them; such a read waits out the horizon first (see the package doc).
	Unrecorded(ctx context.Context, n int)
	// Renewed counts provisional entries (keys put back after a cache loss) that Run read
	// again past their horizon to store them for good.
	Renewed(ctx context.Context, n int)
	// Healed counts keys read ahead of their readers when many recent keys went missing
	// from the cache at once (a flush, a restart): healed together in one batched read.
	Healed(ctx context.Context, n int)
}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) CacheLookups(context.Context, int, int, int) {}
func (NopMetrics) Populates(context.Context, int, int)         {}
func (NopMetrics) PublishRepairs(context.Context, bool)        {}
func (NopMetrics) Coalesced(context.Context, int)              {}
func (NopMetrics) LostTokens(context.Context, int)             {}
func (NopMetrics) Unrecorded(context.Context, int)             {}
func (NopMetrics) Renewed(context.Context, int)                {}
func (NopMetrics) Healed(context.Context, int)                 {}

// Config tunes a Store. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// WriteTimeout bounds a write's COMMIT, counted from before MARK. It must be shorter
	// than Lease, so that no commit lands after its writer's lease has ended.
	WriteTimeout time.Duration
	// Lease is how long a writer's token keeps a key dirty.
	Lease time.Duration
	// PutWindow bounds each conditional put, counted from before the ASSERT that precedes
	// it: a put that cannot land within it is abandoned (its outcome unknown). Default:
	// half the horizon.
	PutWindow time.Duration
	// Horizon is how long after a key was lost (flushed, evicted, restarted) a writer
	// whose token the loss took may still land a put: PutWindow plus a margin for a put
	// the database applies after its caller gave up. What readers store before it is
	// provisional: served until half a horizon after it, and renewed by Run meanwhile. A
	// read the cache cannot record waits one and a half horizons. The cache must use
	// the same horizon: zero takes the cache's if it tells it (a Horizon method), else
	// one second.
	Horizon time.Duration
	// PublishTimeout bounds PUBLISH, which runs even when the caller has gone away.
	PublishTimeout time.Duration
	// MaxCommitAttempts bounds the retries of a conditional write that lost a race.
	MaxCommitAttempts int
	// Parallelism bounds the keys committed one by one at once by one update.
	Parallelism int
	// ReadFlights bounds the database reads this replica's readers have in flight at
	// once; readers that find them all busy share the next one, which starts after they
	// arrived (see Read).
	ReadFlights int
	// HealTogether is how many keys this replica served from the cache recently must be
	// found missing within 100 ms for it to take the cache as having lost them together
	// (a flush, a restart, a node replaced) and heal all its recent keys in one batched
	// read, ahead of their readers. Fewer missing keys are evictions, healed by their
	// readers. Default 8; negative: never.
	HealTogether int
	// Metrics receives cache and repair counts (default: discarded).
	Metrics Metrics
}

// DefaultConfig is the configuration used for zero fields.
func DefaultConfig() Config {
	return Config{WriteTimeout: 2 * time.Second, Lease: 3 * time.Second, Horizon: time.Second, PutWindow: 500 * time.Millisecond,
		PublishTimeout: time.Second, MaxCommitAttempts: 8, Parallelism: 16, ReadFlights: 2, HealTogether: lossMisses}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Lease <= 0 {
		c.Lease = d.Lease
	}
	if c.Horizon <= 0 {
		c.Horizon = d.Horizon
	}
	if c.PutWindow <= 0 {
		c.PutWindow = c.Horizon / 2
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = d.PublishTimeout
	}
	if c.MaxCommitAttempts <= 0 {
		c.MaxCommitAttempts = d.MaxCommitAttempts
	}
	if c.Parallelism <= 0 {
		c.Parallelism = d.Parallelism
	}
	if c.ReadFlights <= 0 {
		c.ReadFlights = d.ReadFlights
	}
	if c.HealTogether == 0 {
		c.HealTogether = d.HealTogether
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	return c
}

// Store runs the protocol over a Database and a Cache. It is safe for concurrent use;
// call Run to repair failed publishes in the background.
type Store struct {
	db     Database
	cache  Cache
	clock  Clock
	cfg    Config
	logger *slog.Logger

	tokenPrefix string
	tokenSeq    atomic.Uint64
	repairs     chan []Publication

	flightsMu sync.Mutex
	flights   map[string]*flight // by cache key: reads healing it on this replica

	reads *readBatcher

	loss  *lossWatch
	heals chan []Key // keys lost together, for Run to heal

	renewMu  sync.Mutex
	renewing map[Key]struct{} // keys handed to Run for renewal
	renewals chan []Key
}

// MinPutMargin is the least the horizon must exceed the put window by: a put the database
// applies after its caller gave up must still land before the horizon.
const MinPutMargin = 50 * time.Millisecond

// New returns a Store. It fails if the write timeout is not shorter than the lease, the
// put window not MinPutMargin shorter than the horizon, or the horizon not the cache's.
func New(db Database, cache Cache, clock Clock, cfg Config, logger *slog.Logger) (*Store, error) {
	if h, ok := cache.(interface{ Horizon() time.Duration }); ok {
		if cfg.Horizon == 0 {
			cfg.Horizon = h.Horizon()
		} else if cfg.Horizon != h.Horizon() {
			return nil, fmt.Errorf("horizon %v differs from the cache's %v", cfg.Horizon, h.Horizon())
		}
	}
	cfg = cfg.withDefaults()
	if cfg.WriteTimeout >= cfg.Lease {
		return nil, fmt.Errorf("write timeout %v must be shorter than the lease %v", cfg.WriteTimeout, cfg.Lease)
	}
	if cfg.Horizon-cfg.PutWindow < MinPutMargin {
		return nil, fmt.Errorf("put window %v must be at least %v shorter than the horizon %v", cfg.PutWindow, MinPutMargin, cfg.Horizon)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("token prefix: %w", err)
	}
	return &Store{db: db, cache: cache, clock: clock, cfg: cfg, logger: logger,
		tokenPrefix: hex.EncodeToString(b[:]), repairs: make(chan []Publication, 1024), flights: map[string]*flight{},
		reads: &readBatcher{db: db, slots: cfg.ReadFlights}, renewing: map[Key]struct{}{}, renewals: make(chan []Key, 256),
		loss: newLossWatch(cfg.HealTogether), heals: make(chan []Key, 1)}, nil
}

// Config returns the effective configuration.
func (s *Store) Config() Config { return s.cfg }

func (s *Store) newToken() string {
	return s.tokenPrefix + strconv.FormatUint(s.tokenSeq.Add(1), 16)
}

// Run repairs publishes that failed, with backoff, and renews provisional entries whose
// horizon has passed, until ctx ends. A failed publish leaves keys dirty (readers go to
// the database) until the repair or the lease heals them; an entry not renewed misses once
// when it ends.
func (s *Store) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case pubs := <-s.repairs:
				s.repair(ctx, pubs)
			}
		}
	})
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case keys := <-s.renewals:
				// Renew in one batch whatever else comes due within renewLinger: after a
				// loss, every hot key's entry passes its horizon within a few
				// milliseconds, and each reader that finds one hands it over alone.
				linger := time.NewTimer(renewLinger)
			collect:
				for {
					select {
					case k := <-s.renewals:
						keys = append(keys, k...)
					case <-linger.C:
						break collect
					case <-ctx.Done():
						linger.Stop()
						s.renewDone(keys)
						return nil
					}
				}
				s.renewAll(ctx, keys)
			}
		}
	})
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case keys := <-s.heals:
				s.healLost(ctx, keys)
			}
		}
	})
	return g.Wait()
}

// renewLinger is how long Run gathers renewals before it reads them: far less than the
// half horizon a provisional entry is still served after its horizon.
const renewLinger = 10 * time.Millisecond

func (s *Store) repair(ctx context.Context, pubs []Publication) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 50*time.Millisecond, 5*time.Second
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
		defer cancel()
		return struct{}{}, s.cache.Publish(pctx, pubs)
	}, backoff.WithBackOff(b), backoff.WithMaxTries(10), backoff.WithMaxElapsedTime(0))
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("gave up repairing publish; keys heal when their leases end", "keys", len(pubs))
			s.cfg.Metrics.PublishRepairs(ctx, false)
		}
		return
	}
	s.logger.Info("repaired publish", "keys", len(pubs))
	s.cfg.Metrics.PublishRepairs(ctx, true)
}

// enqueueRepair hands failed publications to Run.
func (s *Store) enqueueRepair(pubs []Publication) {
	select {
	case s.repairs <- pubs:
	default:
		s.logger.Warn("publish repair queue full; keys heal when their leases end", "keys", len(pubs))
	}
}
