package featurestore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// The tables of the feature store, as write-through tables. They also prefix cache keys.
const (
	// RowsTable holds one item per (feature set, entity).
	RowsTable writethrough.Table = "f"
	// SetsTable holds the registry: one item per feature set.
	SetsTable writethrough.Table = "r"
)

// RowKey is the key of one entity's row in a feature set: "<set>#<entity_id>".
func RowKey(set, entityID string) writethrough.Key {
	return writethrough.Key{Table: RowsTable, PK: set + "#" + entityID}
}

// SetKey is the key of a feature set in the registry.
func SetKey(name string) writethrough.Key { return writethrough.Key{Table: SetsTable, PK: name} }

// Registry lists the stored feature sets, a page at a time, in a stable order. It reads
// the database directly and consistently (the cache holds no listing).
type Registry interface {
	// ListItems returns up to limit items of table after the key named by start ("" for
	// the first page), and the start of the next page ("" after the last).
	ListItems(ctx context.Context, table writethrough.Table, start string, limit int) (items []writethrough.Item, next string, err error)
}

// Erasure is a data subject's GDPR deletion as the write lanes see it.
type Erasure struct {
	// At is the deletion time T in Unix microseconds: rows of the subject with an event
	// time at or before it are refused for good.
	At int64
	// InProgress: a deletion of the subject is pending or running, and every row of the
	// subject is refused until it ends, so nothing is written under the subject while its
	// data is being erased.
	InProgress bool
}

// Erasures tells which data subjects have been erased (GDPR). Reads are strongly
// consistent.
type Erasures interface {
	// Erasures returns the erasure of each of subjects that has one.
	Erasures(ctx context.Context, subjects []string) (map[string]Erasure, error)
}

// Clock tells the time; tests inject their own.
type Clock = writethrough.Clock

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Config bounds the requests the Service accepts. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// MaxEntities, MaxFeatureRefs and MaxValues bound one GetFeatures call.
	MaxEntities    int
	MaxFeatureRefs int
	MaxValues      int
	// MaxRows bounds the rows of one WriteFeatures call.
	MaxRows int
	// MaxFutureSkew bounds how far ahead of the server's clock an event time may be.
	MaxFutureSkew time.Duration
	// MaxResponseBytes bounds the response of one read: a small request naming a big value
	// many times must not cost the server (and the network) a hundred times its size.
	MaxResponseBytes int
	// FreshnessInterval is how often RunFreshness flushes the freshness this replica
	// aggregated: at most one write per set written to, per interval and replica.
	FreshnessInterval time.Duration
}

// DefaultConfig is the configuration used for zero fields.
func DefaultConfig() Config {
	return Config{MaxEntities: 1000, MaxFeatureRefs: 1000, MaxValues: 100_000, MaxRows: 1000, MaxFutureSkew: time.Hour, MaxResponseBytes: 32 << 20,
		FreshnessInterval: DefaultFreshnessInterval}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	for _, f := range []struct {
		v *int
		d int
	}{
		{&c.MaxEntities, d.MaxEntities}, {&c.MaxFeatureRefs, d.MaxFeatureRefs}, {&c.MaxValues, d.MaxValues}, {&c.MaxRows, d.MaxRows}, {&c.MaxResponseBytes, d.MaxResponseBytes},
	} {
		if *f.v <= 0 {
			*f.v = f.d
		}
	}
	if c.MaxFutureSkew <= 0 {
		c.MaxFutureSkew = d.MaxFutureSkew
	}
	if c.FreshnessInterval <= 0 {
		c.FreshnessInterval = d.FreshnessInterval
	}
	return c
}

// Service is the feature store's domain: the registry, GetFeatures, the write lanes and
// erasure, each a pure mapping of stored items handed to the write-through store.
type Service struct {
	store    *writethrough.Store
	registry Registry
	erasures Erasures
	clock    Clock
	cfg      Config
	logger   *slog.Logger

	// sets memoizes decoded feature sets by name; an entry is used only when its item
	// version equals the version the store just returned, so it is never stale.
	sets sync.Map // string -> memoSet

	// fresh aggregates the rows written per set until RunFreshness flushes them.
	fresh freshnessBuffer

	// plans remembers the plans of recently read lists of refs.
	plans *refPlans
}

type memoSet struct {
	version int64
	set     FeatureSet
	types   map[string]ValueType // feature name -> type; read-only once stored
}

func newMemoSet(version int64, fs FeatureSet) memoSet {
	types := make(map[string]ValueType, len(fs.Features))
	for _, f := range fs.Features {
		types[f.Name] = f.Type
	}
	return memoSet{version: version, set: fs, types: types}
}

// New returns a Service over store. erasures may be nil when GDPR deletion is not wired
// (rows are then never refused for an erased subject).
func New(store *writethrough.Store, registry Registry, erasures Erasures, clock Clock, cfg Config, logger *slog.Logger) *Service {
	return &Service{store: store, registry: registry, erasures: erasures, clock: clock, cfg: cfg.withDefaults(), logger: logger, plans: newRefPlans()}
}

// Config returns the effective configuration.
func (s *Service) Config() Config { return s.cfg }

// storeError maps the write-through store's errors to domain errors; the domain's own
// errors (returned by mutations) pass through.
func storeError(err error) error {
	var fe *Error
	switch {
	case err == nil:
		return nil
	case refusal(err) != nil:
		return refusal(err)
	case errors.Is(err, writethrough.ErrContention):
		return &Error{Kind: KindAborted, Message: "too many concurrent writes to one entity; retrying is safe", Err: err}
	case errors.Is(err, writethrough.ErrNotWritten):
		return &Error{Kind: KindUnavailable, Reason: ReasonStoreUnavailable, Message: "the cache or the database is unavailable; nothing was written, retrying is safe", Err: err}
	case errors.Is(err, writethrough.ErrOutcomeUnknown):
		return &Error{Kind: KindUnavailable, Reason: ReasonOutcomeUnknown, Message: "the database did not confirm the write; it may have been applied, retrying is safe", Err: err}
	case errors.Is(err, writethrough.ErrUnpublished):
		return &Error{Kind: KindUnavailable, Reason: ReasonOutcomeUnknown, Message: "written to the database but the cache could not be updated; the write is durable, retrying is safe", Err: err}
	case errors.Is(err, writethrough.ErrUnavailable):
		return &Error{Kind: KindUnavailable, Reason: ReasonStoreUnavailable, Message: "database unavailable", Err: err}
	case errors.As(err, &fe):
		return err
	}
	return err
}
