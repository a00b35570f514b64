package featurestore

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// FeatureRef names one feature of one set, written "set:feature".
type FeatureRef struct {
	Set     string
	Feature string
}

func (r FeatureRef) String() string { return r.Set + ":" + r.Feature }

// ParseFeatureRef parses "set:feature". field names the input in errors.
func ParseFeatureRef(field, s string) (FeatureRef, error) {
	set, feature, ok := strings.Cut(s, ":")
	if !ok {
		return FeatureRef{}, Invalid(field, "want \"set:feature\", got %q", truncate(s, 80))
	}
	if err := validateName(field, set); err != nil {
		return FeatureRef{}, err
	}
	if err := validateName(field, feature); err != nil {
		return FeatureRef{}, err
	}
	return FeatureRef{Set: set, Feature: feature}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// FeatureStatus says whether a value was served.
type FeatureStatus uint8

const (
	StatusUnspecified FeatureStatus = iota
	Present
	NotFoundStatus
	Expired
)

// FeatureValue is one served value.
type FeatureValue struct {
	Status    FeatureStatus
	Value     Value
	EventTime int64 // microseconds; 0 when not found
}

// GetFeatures reads refs for every entity. The result is entity-major: values[e*len(refs)+f]
// is feature f of entity e. Sets and rows are read from the cache in one pipelined round
// trip; what the cache cannot serve is read from the database in one consistent wave.
// Errors: KindInvalid (bad ref or entity id, sets of different entity types, limits),
// KindNotFound (unknown set or feature), KindUnavailable (the database is unreachable
// and the cache could not serve everything).
func (s *Service) GetFeatures(ctx context.Context, refStrs []string, entityIDs []string) ([]FeatureRef, []FeatureValue, error) {
	if len(refStrs) == 0 {
		return nil, nil, Invalid("features", "at least one feature is required")
	}
	if len(entityIDs) == 0 {
		return nil, nil, Invalid("entity_ids", "at least one entity id is required")
	}
	if len(refStrs) > s.cfg.MaxFeatureRefs {
		return nil, nil, Invalid("features", "at most %d features per request, got %d", s.cfg.MaxFeatureRefs, len(refStrs))
	}
	if len(entityIDs) > s.cfg.MaxEntities {
		return nil, nil, Invalid("entity_ids", "at most %d entities per request, got %d", s.cfg.MaxEntities, len(entityIDs))
	}
	if n := len(refStrs) * len(entityIDs); n > s.cfg.MaxValues {
		return nil, nil, Invalid("entity_ids", "at most %d values (entities x features) per request, got %d", s.cfg.MaxValues, n)
	}
	refs := make([]FeatureRef, len(refStrs))
	var setNames []string
	setIndex := make(map[string]int, 2)
	refSet := make([]int, len(refs))
	for i, rs := range refStrs {
		r, err := ParseFeatureRef(fmt.Sprintf("features[%d]", i), rs)
		if err != nil {
			return nil, nil, err
		}
		refs[i] = r
		si, ok := setIndex[r.Set]
		if !ok {
			si = len(setNames)
			setIndex[r.Set] = si
			setNames = append(setNames, r.Set)
		}
		refSet[i] = si
	}
	for i, id := range entityIDs {
		if id == "" {
			return nil, nil, Invalid(fmt.Sprintf("entity_ids[%d]", i), "must not be empty")
		}
		if len(id) > MaxEntityIDLen || !utf8.ValidString(id) {
			return nil, nil, Invalid(fmt.Sprintf("entity_ids[%d]", i), "must be valid UTF-8 of at most %d bytes", MaxEntityIDLen)
		}
	}

	// One read for the sets and every (set, entity) row.
	nsets := len(setNames)
	keys := make([]ItemKey, 0, nsets+nsets*len(entityIDs))
	for _, name := range setNames {
		keys = append(keys, SetKey(name))
	}
	for _, name := range setNames {
		for _, id := range entityIDs {
			keys = append(keys, RowKey(name, id))
		}
	}
	res, err := s.readThrough(ctx, keys)
	if err != nil {
		return nil, nil, err
	}

	sets := make([]FeatureSet, nsets)
	for si, name := range setNames {
		fs, ok, err := s.decodeSet(name, res[si])
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, NotFound(fmt.Sprintf("features[%d]", firstRefOf(refSet, si)), "feature set %q not found", name)
		}
		if si > 0 && fs.EntityType != sets[0].EntityType {
			return nil, nil, Invalid(fmt.Sprintf("features[%d]", firstRefOf(refSet, si)), "feature set %q is keyed by %q, but %q by %q; one request reads one entity type", name, fs.EntityType, sets[0].Name, sets[0].EntityType)
		}
		sets[si] = fs
	}
	for i, r := range refs {
		if _, ok := sets[refSet[i]].Feature(r.Feature); !ok {
			return nil, nil, NotFound(fmt.Sprintf("features[%d]", i), "feature set %q has no feature %q", r.Set, r.Feature)
		}
	}

	rows := make([]Row, nsets*len(entityIDs))
	for j := range rows {
		r := res[nsets+j]
		if !r.found {
			continue
		}
		if rows[j], err = DecodeRow(r.data); err != nil {
			return nil, nil, fmt.Errorf("stored row %q: %w", keys[nsets+j].PK, err)
		}
	}

	now := s.clock.Now()
	values := make([]FeatureValue, len(entityIDs)*len(refs))
	for e := range entityIDs {
		for f, r := range refs {
			si := refSet[f]
			row := &rows[si*len(entityIDs)+e]
			c, ok := row.Cell(r.Feature)
			v := &values[e*len(refs)+f]
			if !ok {
				v.Status = NotFoundStatus
				continue
			}
			v.EventTime = c.EventTime
			v.Value = c.Value
			v.Status = Present
			if ttl := sets[si].TTL; ttl > 0 && now.Sub(time.UnixMicro(c.EventTime)) > ttl {
				v.Status = Expired
				v.Value = Value{}
			}
		}
	}
	return refs, values, nil
}

func firstRefOf(refSet []int, si int) int {
	for i, s := range refSet {
		if s == si {
			return i
		}
	}
	return 0
}
