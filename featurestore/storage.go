package featurestore

import (
	"context"
	"time"
)

// Table names one of the DynamoDB tables the service uses.
type Table uint8

const (
	// RowsTable holds one item per (feature set, entity).
	RowsTable Table = iota
	// SetsTable holds the registry: one item per feature set.
	SetsTable
)

// ItemKey identifies one item, and through CacheKey its cache entry.
type ItemKey struct {
	Table Table
	// PK is "<set>#<entity_id>" in RowsTable and the set name in SetsTable.
	PK string
}

// RowKey is the key of one entity's row in a feature set.
func RowKey(set, entityID string) ItemKey { return ItemKey{Table: RowsTable, PK: set + "#" + entityID} }

// SetKey is the key of a feature set in the registry.
func SetKey(name string) ItemKey { return ItemKey{Table: SetsTable, PK: name} }

// CacheKey is the key's name in the cache. The prefixes keep the two tables apart.
func (k ItemKey) CacheKey() string {
	if k.Table == SetsTable {
		return "r:" + k.PK
	}
	return "f:" + k.PK
}

// Item is one stored item.
type Item struct {
	Key ItemKey
	// Version increases with every successful write to the item and never goes backwards,
	// also across deletion (row versions are at least the commit time in microseconds).
	Version int64
	// Data is an encoded Row (RowsTable) or FeatureSet (SetsTable).
	Data []byte
	// Subject is the data subject of a row; empty when none was given.
	Subject string
	// ExpiresAt is the item's DynamoDB TTL in Unix seconds; 0 means never.
	ExpiresAt int64
}

// Database is the source of truth (DynamoDB). Every read is strongly consistent.
type Database interface {
	// GetItem reads one item. found is false if it does not exist.
	GetItem(ctx context.Context, key ItemKey) (item Item, found bool, err error)
	// GetItems reads many items in one wave of batched reads; absent keys are absent from
	// the map.
	GetItems(ctx context.Context, keys []ItemKey) (map[ItemKey]Item, error)
	// PutItem stores item if the stored version equals prevVersion (0: the item must not
	// exist), and otherwise returns ErrConflict. Any other error leaves the outcome unknown.
	PutItem(ctx context.Context, item Item, prevVersion int64) error
	// PutItems stores up to MaxGroupPut items atomically, each if its stored version equals
	// its prevVersion; if any differs (or another transaction holds an item) nothing is
	// stored and ErrConflict is returned. Retries by the client are idempotent.
	PutItems(ctx context.Context, items []Item, prevVersions []int64) error
	// ListItems returns every item of a table. It is meant for the small registry table.
	ListItems(ctx context.Context, table Table) ([]Item, error)
	// KeysBySubject lists the rows the by_subject index holds for subject. The index is
	// eventually consistent: it may miss rows written a moment ago and list rows erased a
	// moment ago, so callers re-query until it is empty.
	KeysBySubject(ctx context.Context, subject string) ([]ItemKey, error)
}

// Erasures tells which data subjects have been erased (GDPR) and when. A row of such a
// subject with an event time at or before that time is refused in every lane.
type Erasures interface {
	// ErasedAt returns, for each subject that has been erased, the deletion time in Unix
	// microseconds. Reads are strongly consistent.
	ErasedAt(ctx context.Context, subjects []string) (map[string]int64, error)
}

// MaxGroupPut is the most items one PutItems call takes (DynamoDB's transaction limit).
const MaxGroupPut = 100

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
}

// Publication carries a committed version to the cache. Token is the writer's token
// for Publish and the reader's ticket for Populate.
type Publication struct {
	Key     string
	Token   string
	Version int64
	Data    []byte
}

// Cache is the write-through cache (ValKey). Each method works on many keys in one
// pipelined round trip; each key is updated atomically on its own. Implementations must
// keep these guarantees, on which linearizability rests:
//
//   - Mark adds the writer's token with a lease. From then until the token is published
//     or healed, Get reports the key as not servable (CacheDirty).
//   - Publish removes the writer's token and records the version as the newest
//     committed one. The entry becomes a servable value only when the writer's own token
//     was still there, no other token (live or expired) remains, and the entry is not
//     within the horizon of a lost entry (see Prepare). Otherwise it stays dirty.
//   - Prepare, for keys Get did not serve, returns a ticket only when no live token
//     remains and the entry is past its horizon. An entry that is missing could have lost
//     the tokens of writers still in flight, so Prepare recreates it dirty with a horizon
//     one maximum lease away, and no ticket.
//   - Populate stores a value read from the database after Prepare only if the ticket is
//     still there (no Mark since) or the entry holds an older value.
type Cache interface {
	Get(ctx context.Context, keys []string) ([]CacheEntry, error)
	Mark(ctx context.Context, keys []string, token string, lease time.Duration) error
	Publish(ctx context.Context, pubs []Publication) error
	Prepare(ctx context.Context, keys []string) (tickets []string, err error)
	// Populate returns how many of pops were stored; the rest were refused.
	Populate(ctx context.Context, pops []Publication) (stored int, err error)
}

// Clock tells the time; tests inject their own.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Metrics receives what the service observes; see NopMetrics.
type Metrics interface {
	// CacheLookups counts keys a read found servable (hits), dirty, or missing.
	CacheLookups(ctx context.Context, hits, dirty, missing int)
	// Populates counts keys a read put back into the cache, and those the cache refused
	// (a writer marked them, or their horizon had not passed).
	Populates(ctx context.Context, stored, refused int)
	// PublishRepairs counts background repairs of failed publishes, by outcome.
	PublishRepairs(ctx context.Context, ok bool)
}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) CacheLookups(context.Context, int, int, int) {}
func (NopMetrics) Populates(context.Context, int, int)         {}
func (NopMetrics) PublishRepairs(context.Context, bool)        {}
