package featurestore

import (
	"context"
	"fmt"
	"time"
)

// SubjectKeys lists the rows the by_subject index holds for subject. The index is
// eventually consistent; see Database.KeysBySubject.
func (s *Service) SubjectKeys(ctx context.Context, subject string) ([]ItemKey, error) {
	keys, err := s.db.KeysBySubject(ctx, subject)
	if err != nil {
		return nil, Unavailable("database unavailable", err)
	}
	return keys, nil
}

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
func (s *Service) Erase(ctx context.Context, key ItemKey, subject string, before int64) (EraseOutcome, error) {
	var out EraseOutcome
	err := s.writeThrough(ctx, []ItemKey{key}, s.perKey([]int{0}, func(ctx context.Context, _ int) (Item, bool, error) {
		for attempt := 0; attempt < s.cfg.MaxCommitAttempts; attempt++ {
			cur, found, err := s.db.GetItem(ctx, key)
			if err != nil {
				return Item{}, false, Unavailable("database unavailable", err)
			}
			if !found || cur.Subject != subject {
				out = EraseOutcome{}
				return cur, found, nil // gone already, or the entity now belongs to another subject
			}
			var row Row
			if len(cur.Data) > 0 {
				if row, err = DecodeRow(cur.Data); err != nil {
					return Item{}, false, fmt.Errorf("stored row %q: %w", key.PK, err)
				}
			}
			var keep []Cell
			for _, c := range row.Cells {
				if c.EventTime > before {
					keep = append(keep, c)
				}
			}
			next := Item{Key: key, Version: max(cur.Version+1, s.clock.Now().UnixMicro())}
			if len(keep) > 0 {
				next.Data, next.Subject, next.ExpiresAt = AppendRow(nil, Row{Cells: keep}), subject, cur.ExpiresAt
			} else {
				next.ExpiresAt = s.clock.Now().Add(fenceTTL).Unix()
			}
			err = s.db.PutItem(ctx, next, cur.Version)
			if err == ErrConflict {
				continue
			}
			if err != nil {
				return Item{}, false, Unavailable("database unavailable; the row may have been erased, retrying is safe", err)
			}
			out = EraseOutcome{Erased: len(keep) < len(row.Cells) || len(row.Cells) == 0, Kept: len(keep) > 0}
			return next, true, nil
		}
		return Item{}, false, &Error{Kind: KindAborted, Message: "too many concurrent writes to one entity; retrying is safe"}
	}))
	return out, err
}
