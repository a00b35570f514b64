package featurestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
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

// RowLimits are the checks of a row beyond its set's schema.
type RowLimits struct {
	// Now is the server's time, and MaxFutureSkew how far past it an event time may be: a
	// row stamped far in the future would make every later write of its features STALE.
	Now           time.Time
	MaxFutureSkew time.Duration
}

// ValidateRow checks a row against its feature set and lim. field prefixes the names in
// errors, e.g. "rows[3]". Errors are KindInvalid, never echo values or subject ids, and
// quote names cut to MaxEcho bytes.
func ValidateRow(set *FeatureSet, field string, r *WriteRow, lim RowLimits) error {
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
	if len(r.SubjectID) > MaxSubjectLen || !utf8.ValidString(r.SubjectID) {
		return Invalid(field+".subject_id", "must be valid UTF-8 of at most %d bytes", MaxSubjectLen)
	}
	if r.EventTime.IsZero() || r.EventTime.UnixMicro() <= 0 {
		return Invalid(field+".event_time", "is required and must be after 1970")
	}
	if lim.MaxFutureSkew > 0 && r.EventTime.After(lim.Now.Add(lim.MaxFutureSkew)) {
		return WithReason(ReasonEventTimeInFuture, Invalid(field+".event_time", "is more than %v ahead of the server's clock (-max-future-skew)", lim.MaxFutureSkew))
	}
	if len(r.Values) == 0 {
		return Invalid(field+".values", "at least one value is required")
	}
	size, largest, largestSize := 0, "", -1
	for name, v := range r.Values {
		f := fmt.Sprintf("%s.values[%q]", field, Truncate(name))
		spec, ok := set.Feature(name)
		if !ok {
			return WithReason(ReasonUnknownFeature, Invalid(f, "feature set %q has no feature %q", set.Name, Truncate(name)))
		}
		if err := CheckValue(f, spec.Type, v); err != nil {
			return err
		}
		cs := cellSize(name, v)
		size += cs
		if cs > largestSize || cs == largestSize && name < largest {
			largest, largestSize = name, cs
		}
	}
	// The row alone must fit in a DynamoDB item; what it merges into is checked at commit.
	if n := itemSize(set.Name, r.EntityID, r.SubjectID, size); n > writethrough.MaxItemBytes {
		return WithReason(ReasonItemTooLarge, Invalid(fmt.Sprintf("%s.values[%q]", field, largest),
			"the row makes an item of %d bytes, over DynamoDB's %d-byte limit", n, writethrough.MaxItemBytes))
	}
	return nil
}

// rowLimits are the row checks at this moment.
func (s *Service) rowLimits() RowLimits {
	return RowLimits{Now: s.clock.Now(), MaxFutureSkew: s.cfg.MaxFutureSkew}
}

// itemSize is the size of the DynamoDB item of a row whose cells take cells bytes.
func itemSize(set, entity, subject string, cells int) int {
	return writethrough.Item{Key: RowKey(set, entity), Version: 1, Subject: subject, ExpiresAt: 1, Data: make([]byte, 0)}.Size() +
		len("row") + 1 + binary.MaxVarintLen64*2 + cells
}

// WriteFeatures is the on-demand lane. It validates every row first: if any is invalid,
// nothing is written and the error (KindInvalid, naming the row and field) is returned.
// Otherwise every row is merged by event time and written through; rows for one entity
// are applied in request order. Results are in request order.
// Errors: KindNotFound (unknown set), KindInvalid, KindUnavailable (cache down before the
// write: nothing written; or after: outcome unknown, retry is safe), KindAborted.
func (s *Service) WriteFeatures(ctx context.Context, setName string, rows []WriteRow) ([]RowResult, error) {
	if len(rows) == 0 {
		return nil, Invalid("rows", "at least one row is required")
	}
	if len(rows) > s.cfg.MaxRows {
		return nil, Invalid("rows", "at most %d rows per request, got %d", s.cfg.MaxRows, len(rows))
	}
	set, err := s.writableSet(ctx, setName)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		if err := ValidateRow(&set, fmt.Sprintf("rows[%d]", i), &rows[i], s.rowLimits()); err != nil {
			return nil, err
		}
	}
	results := make([]RowResult, len(rows))
	if err := s.writeRows(ctx, &set, rows, results, true); err != nil {
		return nil, err
	}
	return results, nil
}

// writeRows writes valid rows through, grouping them by entity so that each entity is one
// conditional write (several entities are committed in transactions; see writethrough),
// and fills results. Erasures are looked up after MARK, under the commit's deadline: a
// write that missed a deletion's tombstone commits before the deletion's worker takes
// its final look. strict is the on-demand lane's rule: a row that would mix data
// subjects on one entity fails the whole request (FAILED_PRECONDITION) before anything
// is written; otherwise that row alone is REJECTED.
func (s *Service) writeRows(ctx context.Context, set *FeatureSet, rows []WriteRow, results []RowResult, strict bool) error {
	var keys []writethrough.Key
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
	prepare := func(ctx context.Context) (map[string]Erasure, error) { return s.erasuresOf(ctx, rows) }
	merge := func(erased map[string]Erasure, g int, cur writethrough.Current) (writethrough.Change, []RowResult, error) {
		return s.mergeRows(set, cur, rows, groups[g], erased, strict)
	}
	var opts []writethrough.Option
	if strict {
		opts = append(opts, writethrough.AllOrNothing())
	}
	outs, err := writethrough.UpdateWith(ctx, s.store, keys, prepare, merge, opts...)
	for g, o := range outs {
		if o.Err != nil {
			continue
		}
		for j, i := range groups[g] {
			results[i] = o.Result[j]
			results[i].Version = o.Item.Version
		}
	}
	if err == nil {
		// Every lane writes through here; a failed call is retried by its caller and
		// counted then.
		s.recordWritten(set.Name, rows, results)
	}
	return storeError(err)
}

// Reasons of rows refused for their data subject. They never name the subject.
const (
	ErasedReason           = "subject_id: the data subject was erased (GDPR); rows with event_time at or before the deletion are refused"
	ErasureRunningReason   = "subject_id: a deletion of the data subject (GDPR) is in progress; rows of the subject are refused until it is done"
	SubjectMismatchMessage = "the entity's values were written under another data subject; delete the entity (DeleteEntities) before writing it under a new subject"
)

// mergeRows merges the rows at idx (all for one entity) into its stored item and returns
// the change and each row's result, in idx order. A value belongs to the subject that
// wrote it, and an entity's values all belong to one subject (or none), so that the
// by_subject index finds every value of a subject: a row of another subject than the
// one of the stored values is refused (see writeRows for how). Rows of an erased subject
// are refused while its deletion runs, and afterwards if at or before its deletion time.
// A retried row whose values are already stored is WRITTEN (merge recognises its own
// earlier write), so retries are safe.
func (s *Service) mergeRows(set *FeatureSet, cur writethrough.Current, rows []WriteRow, idx []int, erased map[string]Erasure, strict bool) (writethrough.Change, []RowResult, error) {
	results := make([]RowResult, len(idx))
	var row Row
	if len(cur.Item.Data) > 0 {
		var err error
		if row, err = DecodeRow(cur.Item.Data); err != nil {
			return writethrough.Change{}, nil, fmt.Errorf("stored row %q: %w", cur.Item.Key.PK, err)
		}
	}
	subject := cur.Item.Subject
	changed := false
	for j, i := range idx {
		r := &rows[i]
		if e, ok := erased[r.SubjectID]; ok && r.SubjectID != "" {
			if e.InProgress {
				results[j] = RowResult{Status: Rejected, Error: ErasureRunningReason, Reason: ReasonSubjectErasureInProgress}
				continue
			}
			if r.EventTime.UnixMicro() <= e.At {
				results[j] = RowResult{Status: Rejected, Error: ErasedReason, Reason: ReasonSubjectErased}
				continue
			}
		}
		if len(row.Cells) > 0 && r.SubjectID != subject {
			if strict {
				return writethrough.Change{}, nil, WithReason(ReasonSubjectMismatch, FailedPrecondition(fmt.Sprintf("rows[%d].subject_id", i), "%s", SubjectMismatchMessage))
			}
			results[j] = RowResult{Status: Rejected, Error: "subject_id: " + SubjectMismatchMessage, Reason: ReasonSubjectMismatch}
			continue
		}
		// A row that would grow the item past DynamoDB's limit is refused alone; the cells
		// are kept aside only when it might.
		var saved []Cell
		incoming := 0
		for name, v := range r.Values {
			incoming += cellSize(name, v)
		}
		size := row.size()
		if itemSize(set.Name, r.EntityID, r.SubjectID, size+incoming) > writethrough.MaxItemBytes {
			saved = slices.Clone(row.Cells)
		}
		out := row.Merge(cells(r))
		if saved != nil && out.Applied > 0 {
			if n := itemSize(set.Name, r.EntityID, r.SubjectID, row.size()); n > writethrough.MaxItemBytes {
				row.Cells = saved
				msg := fmt.Sprintf("the entity's item would be %d bytes, over DynamoDB's %d-byte limit", n, writethrough.MaxItemBytes)
				if strict {
					return writethrough.Change{}, nil, WithReason(ReasonItemTooLarge, Invalid(fmt.Sprintf("rows[%d].values", i), "%s", msg))
				}
				results[j] = RowResult{Status: Rejected, Error: "values: " + msg, Reason: ReasonItemTooLarge}
				continue
			}
		}
		results[j] = RowResult{Status: Stale}
		if out.Written() {
			results[j].Status = Written
		}
		if len(out.Stale) > 0 {
			results[j].Error = "stale: stored values are newer for " + strings.Join(out.Stale, ", ")
			if !out.Written() {
				results[j].Reason = ReasonStale
			}
		}
		if out.Applied > 0 {
			changed = true
			subject = r.SubjectID
		}
	}
	if !changed {
		return writethrough.Change{}, results, nil
	}
	ch := writethrough.Change{Put: true, Data: AppendRow(nil, row), Subject: subject}
	if set.TTL > 0 {
		// DynamoDB deletes lazily and serving checks ttl itself; a day of slack keeps
		// values readable as EXPIRED rather than NOT_FOUND for a while.
		ch.ExpiresAt = time.UnixMicro(row.MaxEventTime()).Add(set.TTL + 24*time.Hour).Unix()
	}
	return ch, results, nil
}

// erasuresOf looks up the erasures of the subjects of rows.
func (s *Service) erasuresOf(ctx context.Context, rows []WriteRow) (map[string]Erasure, error) {
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
	erased, err := s.erasures.Erasures(ctx, subjects)
	if err != nil {
		return nil, fmt.Errorf("erasure tombstones: %w", err)
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
	set, err := s.writableSet(ctx, setName)
	if err != nil {
		if k := ErrorKind(err); k == KindNotFound || k == KindInvalid {
			for i := range results {
				results[i] = RowResult{Status: Rejected, Error: err.Error(), Reason: ErrorReason(err)}
			}
			return results, nil
		}
		return nil, err
	}
	valid := make([]WriteRow, 0, len(rows))
	pos := make([]int, 0, len(rows))
	lim := s.rowLimits()
	for i := range rows {
		if err := ValidateRow(&set, fmt.Sprintf("%s[%d]", field, base+int64(i)), &rows[i], lim); err != nil {
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
	if err := s.writeRows(ctx, &set, valid, sub, false); err != nil {
		return nil, err
	}
	for j, i := range pos {
		results[i] = sub[j]
	}
	return results, nil
}
