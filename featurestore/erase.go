package featurestore

import (
	"context"
	"fmt"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// EraseOutcome says what Erase did to one row.
type EraseOutcome struct {
	// Erased is true when the row held values of the subject at or before the deletion
	// time and they are gone.
	Erased bool
	// Kept is true when newer values of the subject remain (written after the deletion
	// time); the row then stays in the by_subject index.
	Kept bool
}

// fenceTTL is how long a deleted row's tombstone item lives in DynamoDB. Its version is a
// fence against a reader that read the row before the delete; row versions are at least
// the commit time in microseconds, so they never go backwards once it is gone either.
const fenceTTL = 7 * 24 * time.Hour

// Erase removes, through the write-through protocol, every value of key with an event
// time at or before before (Unix microseconds) that belongs to subject. If nothing is left
// the item becomes a tombstone with no values and no subject (so the index drops it), and
// the cache keeps only an empty version fence. Erase is idempotent.
// Errors: KindUnavailable, KindAborted.
func (s *Service) Erase(ctx context.Context, key writethrough.Key, subject string, before int64) (EraseOutcome, error) {
	outs, err := writethrough.Update(ctx, s.store, []writethrough.Key{key}, func(_ int, cur writethrough.Current) (writethrough.Change, EraseOutcome, error) {
		return s.eraseRow(cur, subject, before)
	})
	if err != nil {
		return EraseOutcome{}, storeError(err)
	}
	return outs[0].Result, nil
}

// eraseRow is Erase's mutation of one stored row.
func (s *Service) eraseRow(cur writethrough.Current, subject string, before int64) (writethrough.Change, EraseOutcome, error) {
	if !cur.Exists || cur.Item.Subject != subject {
		return writethrough.Change{}, EraseOutcome{}, nil // gone already, or the entity now belongs to another subject
	}
	var row Row
	if len(cur.Item.Data) > 0 {
		var err error
		if row, err = DecodeRow(cur.Item.Data); err != nil {
			return writethrough.Change{}, EraseOutcome{}, fmt.Errorf("stored row %q: %w", cur.Item.Key.PK, err)
		}
	}
	var keep []Cell
	for _, c := range row.Cells {
		if c.EventTime > before {
			keep = append(keep, c)
		}
	}
	out := EraseOutcome{Erased: len(keep) < len(row.Cells) || len(row.Cells) == 0, Kept: len(keep) > 0}
	if len(keep) > 0 {
		return writethrough.Change{Put: true, Data: AppendRow(nil, Row{Cells: keep}), Subject: subject, ExpiresAt: cur.Item.ExpiresAt}, out, nil
	}
	return writethrough.Change{Put: true, ExpiresAt: s.clock.Now().Add(fenceTTL).Unix()}, out, nil
}
