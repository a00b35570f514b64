// Package memdb is an in-memory database with DynamoDB's semantics as the feature store
// uses them: versioned items, conditional puts, all-or-nothing transactions, size limits,
// a TTL attribute (items expire only when Expire is called, as DynamoDB deletes them
// lazily), a paginated listing, and a by_subject index whose lag is configurable. It
// passes the same contract tests as featurestore/dynamo (internal/dbtest), so tests of
// the domain and the linearizability checker can run thousands of histories without a
// JVM.
package memdb

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// DB is an in-memory database. It is safe for concurrent use.
type DB struct {
	clock writethrough.Clock
	// lag is how long a change takes to reach the by_subject index.
	lag time.Duration

	mu    sync.Mutex
	items map[writethrough.Key]writethrough.Item
	// subjects records, per row key, the subject it was indexed under over time, so that
	// KeysBySubject can answer as of lag ago.
	subjects map[string][]indexEntry
}

type indexEntry struct {
	at      time.Time
	subject string
}

var (
	_ writethrough.Database = (*DB)(nil)
	_ featurestore.Registry = (*DB)(nil)
)

// Options configure a DB.
type Options struct {
	// Clock tells the time for index lag (default: the system clock).
	Clock writethrough.Clock
	// IndexLag is how long a write takes to show in KeysBySubject (default 0).
	IndexLag time.Duration
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// New returns an empty DB.
func New(o Options) *DB {
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	return &DB{clock: o.Clock, lag: o.IndexLag, items: map[writethrough.Key]writethrough.Item{}, subjects: map[string][]indexEntry{}}
}

// SetIndexLag changes the index lag from now on.
func (d *DB) SetIndexLag(lag time.Duration) {
	d.mu.Lock()
	d.lag = lag
	d.mu.Unlock()
}

func clone(it writethrough.Item) writethrough.Item {
	it.Data = slices.Clone(it.Data)
	return it
}

// GetItems implements writethrough.Database.
func (d *DB) GetItems(ctx context.Context, keys []writethrough.Key) (map[writethrough.Key]writethrough.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := keyFits(k); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[writethrough.Key]writethrough.Item, len(keys))
	for _, k := range keys {
		if it, ok := d.items[k]; ok {
			out[k] = clone(it)
		}
	}
	return out, nil
}

// keyFits refuses a partition key DynamoDB would refuse (ValidationException).
func keyFits(k writethrough.Key) error {
	if len(k.PK) > writethrough.MaxKeyBytes {
		return fmt.Errorf("%w: a key of %d bytes, limit %d", writethrough.ErrRefused, len(k.PK), writethrough.MaxKeyBytes)
	}
	return nil
}

// check reports whether item may replace the stored one under prevVersion.
func (d *DB) check(item writethrough.Item, prevVersion int64) bool {
	cur, ok := d.items[item.Key]
	if prevVersion == 0 {
		return !ok
	}
	return ok && cur.Version == prevVersion
}

func (d *DB) store(item writethrough.Item) {
	d.items[item.Key] = clone(item)
	if item.Key.Table != featurestore.RowsTable {
		return
	}
	h := d.subjects[item.Key.PK]
	if len(h) == 0 || h[len(h)-1].subject != item.Subject {
		d.subjects[item.Key.PK] = append(h, indexEntry{at: d.clock.Now(), subject: item.Subject})
	}
}

// PutItem implements writethrough.Database.
func (d *DB) PutItem(ctx context.Context, item writethrough.Item, prevVersion int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := keyFits(item.Key); err != nil {
		return err
	}
	if item.Size() > writethrough.MaxItemBytes {
		return writethrough.ErrItemTooLarge
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.check(item, prevVersion) {
		return writethrough.ErrConflict
	}
	d.store(item)
	return nil
}

// PutItems implements writethrough.Database.
func (d *DB) PutItems(ctx context.Context, items []writethrough.Item, prevVersions []int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(items) > writethrough.MaxGroupItems {
		return writethrough.ErrItemTooLarge
	}
	total := 0
	for _, it := range items {
		if err := keyFits(it.Key); err != nil {
			return err
		}
		if it.Size() > writethrough.MaxItemBytes {
			return writethrough.ErrItemTooLarge
		}
		total += it.Size()
	}
	if total > writethrough.MaxGroupBytes {
		return writethrough.ErrItemTooLarge
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, it := range items {
		if !d.check(it, prevVersions[i]) {
			return writethrough.ErrConflict
		}
	}
	for _, it := range items {
		d.store(it)
	}
	return nil
}

// KeysBySubject lists the rows indexed under subject as of the index lag ago.
func (d *DB) KeysBySubject(ctx context.Context, subject string) ([]writethrough.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	asOf := d.clock.Now().Add(-d.lag)
	var out []writethrough.Key
	for pk, h := range d.subjects {
		i := sort.Search(len(h), func(i int) bool { return h[i].at.After(asOf) })
		if i > 0 && h[i-1].subject == subject && subject != "" {
			out = append(out, writethrough.Key{Table: featurestore.RowsTable, PK: pk})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PK < out[j].PK })
	return out, nil
}

// ListItems implements featurestore.Registry, in key order.
func (d *DB) ListItems(ctx context.Context, t writethrough.Table, start string, limit int) ([]writethrough.Item, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var pks []string
	for k := range d.items {
		if k.Table == t && k.PK > start {
			pks = append(pks, k.PK)
		}
	}
	sort.Strings(pks)
	next := ""
	if len(pks) > limit {
		pks = pks[:limit]
		next = pks[limit-1]
	}
	out := make([]writethrough.Item, len(pks))
	for i, pk := range pks {
		out[i] = clone(d.items[writethrough.Key{Table: t, PK: pk}])
	}
	return out, next, nil
}

// Expire deletes the items whose ExpiresAt is before now, as DynamoDB's TTL sweeper does
// at some point after expiry.
func (d *DB) Expire(now time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for k, it := range d.items {
		if it.ExpiresAt > 0 && it.ExpiresAt < now.Unix() {
			delete(d.items, k)
			if k.Table == featurestore.RowsTable {
				d.subjects[k.PK] = append(d.subjects[k.PK], indexEntry{at: d.clock.Now()})
			}
			n++
		}
	}
	return n
}

// Len returns the number of stored items, for tests.
func (d *DB) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.items)
}
