package featurestore

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// EntityDeletion is the outcome of deleting one entity's row.
type EntityDeletion struct {
	EntityID string
	// Existed tells whether the entity held values before the delete.
	Existed bool
	// Version is the row's version after the delete; versions never go backwards.
	Version int64
}

// DeleteEntities removes the rows of entityIDs in set through the write-through protocol:
// each becomes a tombstone at a higher version that holds no values and no subject, so a
// read that starts after it returns never sees the old values, also after a cache loss.
// The tombstone keeps a floor, the newest event time it removed: a later value at or
// before it is STALE, so a write retried after the delete (its first attempt's outcome
// unknown) cannot bring deleted data back, while newer values recreate the row, under any
// data subject. Results are in request order; a repeated id is deleted once.
// Errors: KindInvalid, KindNotFound (unknown or retired set), KindUnavailable, KindAborted.
func (s *Service) DeleteEntities(ctx context.Context, setName string, entityIDs []string) ([]EntityDeletion, error) {
	if len(entityIDs) == 0 {
		return nil, Invalid("entity_ids", "at least one entity id is required")
	}
	if len(entityIDs) > s.cfg.MaxRows {
		return nil, Invalid("entity_ids", "at most %d entities per request, got %d", s.cfg.MaxRows, len(entityIDs))
	}
	for i, id := range entityIDs {
		if id == "" || len(id) > MaxEntityIDLen || !utf8.ValidString(id) {
			return nil, Invalid(fmt.Sprintf("entity_ids[%d]", i), "must be valid UTF-8 of 1 to %d bytes", MaxEntityIDLen)
		}
	}
	if _, err := s.writableSet(ctx, setName); err != nil {
		return nil, err
	}
	var keys []writethrough.Key
	pos := make(map[string]int, len(entityIDs))
	for _, id := range entityIDs {
		if _, ok := pos[id]; !ok {
			pos[id] = len(keys)
			keys = append(keys, RowKey(setName, id))
		}
	}
	outs, err := writethrough.Update(ctx, s.store, keys, func(_ int, cur writethrough.Current) (writethrough.Change, bool, error) {
		return s.deleteRow(cur)
	})
	if err != nil {
		return nil, storeError(err)
	}
	out := make([]EntityDeletion, len(entityIDs))
	for i, id := range entityIDs {
		o := outs[pos[id]]
		out[i] = EntityDeletion{EntityID: id, Existed: o.Result, Version: o.Item.Version}
	}
	return out, nil
}

// deleteRow is DeleteEntities' mutation of one stored row: a tombstone with the row's
// floor raised to its newest event time, if it held values.
func (s *Service) deleteRow(cur writethrough.Current) (writethrough.Change, bool, error) {
	if len(cur.Item.Data) == 0 {
		return writethrough.Change{}, false, nil
	}
	row, err := DecodeRow(cur.Item.Data)
	if err != nil {
		return writethrough.Change{}, false, fmt.Errorf("stored row %q: %w", cur.Item.Key.PK, err)
	}
	if len(row.Cells) == 0 {
		return writethrough.Change{}, false, nil
	}
	floor := Row{Floor: max(row.Floor, row.MaxEventTime())}
	return writethrough.Change{Put: true, Data: AppendRow(nil, floor), ExpiresAt: s.clock.Now().Add(fenceTTL).Unix()}, true, nil
}

// writableSet returns the named set for a write or delete of its rows: KindNotFound for
// an unknown or retired set.
func (s *Service) writableSet(ctx context.Context, name string) (FeatureSet, error) {
	if err := validateName("feature_set", name); err != nil {
		return FeatureSet{}, err
	}
	// Bounded like the write that follows, so that a write never waits on the registry
	// longer than on its own commit (streams have no deadline of their own).
	ctx, cancel := context.WithTimeout(ctx, s.store.Config().WriteTimeout)
	defer cancel()
	set, err := s.GetFeatureSet(ctx, name)
	if k := ErrorKind(err); k == KindNotFound || k == KindInvalid {
		return FeatureSet{}, &Error{Kind: KindNotFound, Reason: ErrorReason(err), Field: "feature_set", Message: fmt.Sprintf("feature set %q not found", Truncate(name))}
	}
	return set, err
}

// DeleteFeatureSet retires a feature set and returns it as it was. Its rows stop being
// served and cannot be written; the name cannot be applied again, so no value of the
// retired set is ever served under a new definition (the rows stay in DynamoDB until
// their TTL, and a GDPR deletion still finds and erases them). Errors: KindInvalid,
// KindNotFound (unknown or already retired), KindUnavailable, KindAborted.
func (s *Service) DeleteFeatureSet(ctx context.Context, name string) (FeatureSet, error) {
	if err := validateName("name", name); err != nil {
		return FeatureSet{}, err
	}
	outs, err := writethrough.Update(ctx, s.store, []writethrough.Key{SetKey(name)}, func(_ int, cur writethrough.Current) (writethrough.Change, FeatureSet, error) {
		if len(cur.Item.Data) == 0 {
			return writethrough.Change{}, FeatureSet{}, WithReason(ReasonUnknownFeatureSet, NotFound("name", "feature set %q not found", name))
		}
		fs, err := DecodeFeatureSet(cur.Item.Data)
		if err != nil {
			return writethrough.Change{}, FeatureSet{}, fmt.Errorf("stored feature set %q: %w", name, err)
		}
		if fs.Retired {
			return writethrough.Change{}, FeatureSet{}, WithReason(ReasonFeatureSetRetired, NotFound("name", "feature set %q was retired", name))
		}
		retired := fs
		retired.Retired = true
		retired.Version++
		data, err := EncodeFeatureSet(retired)
		if err != nil {
			return writethrough.Change{}, FeatureSet{}, err
		}
		return writethrough.Change{Put: true, Data: data}, fs, nil
	})
	if err != nil {
		return FeatureSet{}, storeError(err)
	}
	s.sets.Delete(name)
	return outs[0].Result, nil
}
