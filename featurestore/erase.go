package featurestore

import (
	"context"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// fenceTTL is how long a deleted row's tombstone item lives in DynamoDB. Its version is a
// fence against a reader that read the row before the delete; row versions are at least
// the commit time in microseconds, so they never go backwards once it is gone either.
const fenceTTL = 7 * 24 * time.Hour

// Erase removes, through the write-through protocol, every value of the row at key if the
// row belongs to subject: an entity's values all belong to the subject that wrote them
// (see mergeRows), whatever their event times. The item becomes a tombstone with no
// values and no subject, so the by_subject index drops it, and the cache keeps only an
// empty version fence. erased reports whether the row held values of subject. Erase is
// idempotent. Errors: KindUnavailable, KindAborted.
func (s *Service) Erase(ctx context.Context, key writethrough.Key, subject string) (erased bool, err error) {
	outs, err := writethrough.Update(ctx, s.store, []writethrough.Key{key}, func(_ int, cur writethrough.Current) (writethrough.Change, bool, error) {
		return s.tombstone(cur, func(it writethrough.Item) bool { return it.Subject == subject })
	})
	if err != nil {
		return false, storeError(err)
	}
	return outs[0].Result, nil
}

// tombstone is the mutation that deletes a row holding values when which says so: the
// item keeps a higher version and no data, no subject, and a TTL. It reports whether it
// deleted anything.
func (s *Service) tombstone(cur writethrough.Current, which func(writethrough.Item) bool) (writethrough.Change, bool, error) {
	if len(cur.Item.Data) == 0 || !which(cur.Item) {
		return writethrough.Change{}, false, nil // gone already, or not this deletion's
	}
	return writethrough.Change{Put: true, ExpiresAt: s.clock.Now().Add(fenceTTL).Unix()}, true, nil
}
