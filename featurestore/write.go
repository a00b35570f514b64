package featurestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteRow is one incoming row: values of one entity observed at one event time.
type WriteRow struct {
	EntityID  string
	SubjectID string
	EventTime time.Time
	Values    map[string]Value
}

// WriteStatus is the outcome of one row.
type WriteStatus uint8

const (
	WriteUnspecified WriteStatus = iota
	// Written: applied, or already applied before (a retry).
	Written
	// Stale: every value was older than the stored one.
	Stale
	// Rejected: refused; Error says why.
	Rejected
)

// RowResult is the outcome of one row.
type RowResult struct {
	Status WriteStatus
	// Version is the entity's stored version after the write.
	Version int64
	Error   string
	// Reason is the stable reason of a rejected or stale row (a Reason constant).
	Reason string
}

// ValidateRow checks a row against its feature set. field prefixes the names in errors,
// e.g. "rows[3]". Errors are KindInvalid and never echo values or subject ids.
func ValidateRow(set *FeatureSet, field string, r *WriteRow) error {
	if r.EntityID == "" {
		return Invalid(field+".entity_id", "is required")
	}
	if len(r.EntityID) > MaxEntityIDLen {
		return Invalid(field+".entity_id", "at most %d bytes", MaxEntityIDLen)
	}
	if !utf8.ValidString(r.EntityID) {
		return Invalid(field+".entity_id", "must be valid UTF-8")
	}
	if set.PersonalData && r.SubjectID == "" {
		return Invalid(field+".subject_id", "is required: feature set %q holds personal data", set.Name)
	}
	if len(r.SubjectID) > MaxSubjectLen {
		return Invalid(field+".subject_id", "at most %d bytes", MaxSubjectLen)
	}
	if r.EventTime.IsZero() || r.EventTime.UnixMicro() <= 0 {
		return Invalid(field+".event_time", "is required and must be after 1970")
	}
	if len(r.Values) == 0 {
		return Invalid(field+".values", "at least one value is required")
	}
	for name, v := range r.Values {
		spec, ok := set.Feature(name)
		if !ok {
			return WithReason(ReasonUnknownFeature, Invalid(fmt.Sprintf("%s.values[%q]", field, name), "feature set %q has no feature %q", set.Name, name))
		}
		if err := CheckValue(fmt.Sprintf("%s.values[%q]", field, name), spec.Type, v); err != nil {
			return err
		}
	}
	return nil
}

// WriteFeatures is the on-demand lane. It validates every row first: if any is invalid,
// nothing is written and the error (KindInvalid, naming the row and field) is returned.
// Otherwise every row is merged by event time and written through; rows for one entity
// are applied in request order. Results are in request order.
// Errors: KindNotFound (unknown set), KindInvalid, KindUnavailable (cache down before the
// write: nothing written; or after: outcome unknown, retry is safe), KindAborted.
func (s *Service) WriteFeatures(ctx context.Context, setName string, rows []WriteRow) ([]RowResult, error) {
	if err := validateName("feature_set", setName); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, Invalid("rows", "at least one row is required")
	}
	if len(rows) > s.cfg.MaxRows {
		return nil, Invalid("rows", "at most %d rows per request, got %d", s.cfg.MaxRows, len(rows))
	}
	set, err := s.GetFeatureSet(ctx, setName)
	if err != nil {
		if ErrorKind(err) == KindNotFound || ErrorKind(err) == KindInvalid {
			return nil, NotFound("feature_set", "feature set %q not found", setName)
		}
		return nil, err
	}
	for i := range rows {
		if err := ValidateRow(&set, fmt.Sprintf("rows[%d]", i), &rows[i]); err != nil {
			return nil, err
		}
	}
	results := make([]RowResult, len(rows))
	if err := s.writeRows(ctx, &set, rows, results); err != nil {
		return nil, err
	}
	return results, nil
}

// writeRows writes valid rows through, grouping them by entity so that each entity is one
// conditional write, and fills results. With several entities the commit is grouped:
// after MARK, one wave of batched consistent reads, a merge per entity, and the changed
// items in transactions of up to MaxGroupPut conditional puts. A transaction that loses a
// race stores nothing, and its entities fall back to one-by-one commits with fresh reads.
func (s *Service) writeRows(ctx context.Context, set *FeatureSet, rows []WriteRow, results []RowResult) error {
	var keys []ItemKey
	var groups [][]int
	byEntity := make(map[string]int, len(rows))
	for i := range rows {
		g, ok := byEntity[rows[i].EntityID]
		if !ok {
			g = len(keys)
			byEntity[rows[i].EntityID] = g
			keys = append(keys, RowKey(set.Name, rows[i].EntityID))
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	// Erasures are looked up inside the commit, under its deadline: a write that missed a
	// deletion's tombstone commits before the deletion's worker takes its final look.
	var erased map[string]int64
	one := func(ctx context.Context, g int) (Item, bool, error) {
		return s.commitRows(ctx, set, keys[g], rows, groups[g], results, erased)
	}
	return s.writeThrough(ctx, keys, func(ctx context.Context, items []Item, oks []bool, errs []error) {
		var err error
		if erased, err = s.erasedSubjects(ctx, rows); err != nil {
			for g := range keys {
				errs[g] = err
			}
			return
		}
		if len(keys) == 1 {
			s.perKey([]int{0}, one)(ctx, items, oks, errs)
			return
		}
		current, err := s.db.GetItems(ctx, keys)
		if err != nil {
			for g := range keys {
				errs[g] = Unavailable("database unavailable; nothing is known to be written", err)
			}
			return
		}
		var pending []int // entities with a changed item to put
		prevs := make([]int64, len(keys))
		for g, key := range keys {
			cur, found := current[key]
			next, changed, err := s.mergeRows(set, key, cur, found, rows, groups[g], results, erased)
			switch {
			case err != nil:
				errs[g] = err
			case !changed:
				items[g], oks[g] = cur, found
			default:
				items[g], prevs[g] = next, cur.Version
				pending = append(pending, g)
			}
		}
		var retry []int
		for start := 0; start < len(pending); start += MaxGroupPut {
			part := pending[start:min(start+MaxGroupPut, len(pending))]
			batch := make([]Item, len(part))
			bprev := make([]int64, len(part))
			for j, g := range part {
				batch[j], bprev[j] = items[g], prevs[g]
			}
			err := s.db.PutItems(ctx, batch, bprev)
			switch {
			case errors.Is(err, ErrConflict):
				retry = append(retry, part...)
			case err != nil:
				for _, g := range part {
					errs[g] = Unavailable("database unavailable; the rows may have been written, retrying is safe", err)
				}
			default:
				for _, g := range part {
					oks[g] = true
					setVersions(results, groups[g], items[g].Version)
				}
			}
		}
		if len(retry) > 0 {
			s.perKey(retry, one)(ctx, items, oks, errs)
		}
	})
}

// commitRows merges the rows at idx (all for one key) into the stored row and writes it
// with a conditional put, retrying a bounded number of times when another writer won.
// A retried put whose first attempt had applied fails its condition; the re-read then
// finds the values already there, and the rows are reported written, not conflicting.
func (s *Service) commitRows(ctx context.Context, set *FeatureSet, key ItemKey, rows []WriteRow, idx []int, results []RowResult, erased map[string]int64) (Item, bool, error) {
	for attempt := 0; attempt < s.cfg.MaxCommitAttempts; attempt++ {
		cur, found, err := s.db.GetItem(ctx, key)
		if err != nil {
			return Item{}, false, Unavailable("database unavailable; nothing is known to be written", err)
		}
		next, changed, err := s.mergeRows(set, key, cur, found, rows, idx, results, erased)
		if err != nil {
			return Item{}, false, err
		}
		if !changed {
			return cur, found, nil
		}
		err = s.db.PutItem(ctx, next, cur.Version)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Item{}, false, Unavailable("database unavailable; the rows may have been written, retrying is safe", err)
		}
		setVersions(results, idx, next.Version)
		return next, true, nil
	}
	return Item{}, false, &Error{Kind: KindAborted, Message: "too many concurrent writes to one entity; retrying is safe"}
}

// mergeRows merges the rows at idx into cur (the stored item, if found) and fills their
// results. Rows of an erased subject at or before its deletion time are rejected.
// changed reports whether next must be written; if not, results carry cur's version.
func (s *Service) mergeRows(set *FeatureSet, key ItemKey, cur Item, found bool, rows []WriteRow, idx []int, results []RowResult, erased map[string]int64) (next Item, changed bool, err error) {
	var row Row
	if found && len(cur.Data) > 0 {
		if row, err = DecodeRow(cur.Data); err != nil {
			return Item{}, false, fmt.Errorf("stored row %q: %w", key.PK, err)
		}
	}
	subject := cur.Subject
	for _, i := range idx {
		r := &rows[i]
		if t, ok := erased[r.SubjectID]; ok && r.SubjectID != "" && r.EventTime.UnixMicro() <= t {
			results[i] = RowResult{Status: Rejected, Version: cur.Version, Error: ErasedReason, Reason: ReasonSubjectErased}
			continue
		}
		out := row.Merge(cells(r))
		results[i] = RowResult{Status: Stale}
		if out.Written() {
			results[i].Status = Written
		}
		if len(out.Stale) > 0 {
			results[i].Error = "stale: stored values are newer for " + strings.Join(out.Stale, ", ")
			if !out.Written() {
				results[i].Reason = ReasonStale
			}
		}
		if out.Applied > 0 {
			changed = true
			if r.SubjectID != "" {
				subject = r.SubjectID
			}
		}
	}
	if !changed {
		setVersions(results, idx, cur.Version)
		return Item{}, false, nil
	}
	next = Item{
		Key:     key,
		Version: max(cur.Version+1, s.clock.Now().UnixMicro()),
		Data:    AppendRow(nil, row),
		Subject: subject,
	}
	if set.TTL > 0 {
		// DynamoDB deletes lazily and serving checks ttl itself; a day of slack keeps
		// values readable as EXPIRED rather than NOT_FOUND for a while.
		next.ExpiresAt = time.UnixMicro(row.MaxEventTime()).Add(set.TTL + 24*time.Hour).Unix()
	}
	return next, true, nil
}

func setVersions(results []RowResult, idx []int, v int64) {
	for _, i := range idx {
		if results[i].Status != Rejected {
			results[i].Version = v
		}
	}
}

// ErasedReason is the error of a row refused because its subject was erased.
const ErasedReason = "subject_id: the data subject was erased (GDPR); rows with event_time at or before the deletion are refused"

// erasedSubjects looks up the erasure times of the subjects of rows.
func (s *Service) erasedSubjects(ctx context.Context, rows []WriteRow) (map[string]int64, error) {
	if s.erasures == nil {
		return nil, nil
	}
	seen := map[string]bool{}
	var subjects []string
	for i := range rows {
		if sub := rows[i].SubjectID; sub != "" && !seen[sub] {
			seen[sub] = true
			subjects = append(subjects, sub)
		}
	}
	if len(subjects) == 0 {
		return nil, nil
	}
	erased, err := s.erasures.ErasedAt(ctx, subjects)
	if err != nil {
		return nil, Unavailable("database unavailable; nothing is known to be written", err)
	}
	return erased, nil
}

// cells converts a row's values to cells at the row's event time.
func cells(r *WriteRow) []Cell {
	t := r.EventTime.UnixMicro()
	out := make([]Cell, 0, len(r.Values))
	for name, v := range r.Values {
		out = append(out, Cell{Name: name, EventTime: t, Value: v})
	}
	return out
}

// WriteRowsLenient is the write of the streaming and batch lanes: every row is validated on
// its own, and an invalid row is REJECTED with its reason while the others are written.
// field and base name rows in reasons: row i is "<field>[<base+i>]", so a batch can give
// positions in the whole batch (e.g. "rows[1234].entity_id: is required"). An
// unknown feature set rejects every row. The error is non-nil only when the write itself
// failed (KindUnavailable or KindAborted: outcome unknown for the valid rows; resending
// them is safe).
func (s *Service) WriteRowsLenient(ctx context.Context, setName, field string, base int64, rows []WriteRow) ([]RowResult, error) {
	results := make([]RowResult, len(rows))
	if len(rows) == 0 {
		return results, nil
	}
	set, err := s.GetFeatureSet(ctx, setName)
	if err != nil {
		if k := ErrorKind(err); k == KindNotFound || k == KindInvalid {
			for i := range results {
				results[i] = RowResult{Status: Rejected, Error: fmt.Sprintf("feature_set: feature set %q not found", setName), Reason: ReasonUnknownFeatureSet}
			}
			return results, nil
		}
		return nil, err
	}
	valid := make([]WriteRow, 0, len(rows))
	pos := make([]int, 0, len(rows))
	for i := range rows {
		if err := ValidateRow(&set, fmt.Sprintf("%s[%d]", field, base+int64(i)), &rows[i]); err != nil {
			results[i] = RowResult{Status: Rejected, Error: err.Error(), Reason: ErrorReason(err)}
			continue
		}
		valid = append(valid, rows[i])
		pos = append(pos, i)
	}
	if len(valid) == 0 {
		return results, nil
	}
	sub := make([]RowResult, len(valid))
	if err := s.writeRows(ctx, &set, valid, sub); err != nil {
		return nil, err
	}
	for j, i := range pos {
		results[i] = sub[j]
	}
	return results, nil
}
