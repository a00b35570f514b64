package featurestore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
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
		return FeatureRef{}, Invalid(field, "want \"set:feature\", got %q", Truncate(s))
	}
	if err := validateName(field, set); err != nil {
		return FeatureRef{}, err
	}
	if err := validateName(field, feature); err != nil {
		return FeatureRef{}, err
	}
	return FeatureRef{Set: set, Feature: feature}, nil
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

// Values is what GetFeatures read. It is entity-major: Cells[e*len(Refs)+f] is feature f
// of entity e; Types[f] is feature f's declared type.
type Values struct {
	Refs  []FeatureRef
	Types []ValueType
	Cells []FeatureValue
}

// GetFeatures reads refs for every entity. Sets and rows are read from the cache in one pipelined round
// trip; what the cache cannot serve is read from the database in one consistent wave.
// Errors: KindInvalid (bad ref or entity id, sets of different entity types, limits),
// KindNotFound (unknown set or feature), KindUnavailable (the database is unreachable
// and the cache could not serve everything).
func (s *Service) GetFeatures(ctx context.Context, refStrs []string, entityIDs []string) (Values, error) {
	if len(refStrs) == 0 {
		return Values{}, Invalid("features", "at least one feature is required")
	}
	if len(entityIDs) == 0 {
		return Values{}, Invalid("entity_ids", "at least one entity id is required")
	}
	if len(refStrs) > s.cfg.MaxFeatureRefs {
		return Values{}, Invalid("features", "at most %d features per request, got %d", s.cfg.MaxFeatureRefs, len(refStrs))
	}
	if len(entityIDs) > s.cfg.MaxEntities {
		return Values{}, Invalid("entity_ids", "at most %d entities per request, got %d", s.cfg.MaxEntities, len(entityIDs))
	}
	if n := len(refStrs) * len(entityIDs); n > s.cfg.MaxValues {
		return Values{}, Invalid("entity_ids", "at most %d values (entities x features) per request, got %d", s.cfg.MaxValues, n)
	}
	refs := make([]FeatureRef, len(refStrs))
	var setNames []string
	setIndex := make(map[string]int, 2)
	refSet := make([]int, len(refs))
	for i, rs := range refStrs {
		r, err := ParseFeatureRef(fmt.Sprintf("features[%d]", i), rs)
		if err != nil {
			return Values{}, err
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
			return Values{}, Invalid(fmt.Sprintf("entity_ids[%d]", i), "must not be empty")
		}
		if len(id) > MaxEntityIDLen || !utf8.ValidString(id) {
			return Values{}, Invalid(fmt.Sprintf("entity_ids[%d]", i), "must be valid UTF-8 of at most %d bytes", MaxEntityIDLen)
		}
	}

	// One read for the sets and every (set, entity) row.
	nsets := len(setNames)
	keys := make([]writethrough.Key, 0, nsets+nsets*len(entityIDs))
	for _, name := range setNames {
		keys = append(keys, SetKey(name))
	}
	for _, name := range setNames {
		for _, id := range entityIDs {
			keys = append(keys, RowKey(name, id))
		}
	}
	res, err := s.store.Read(ctx, keys)
	if err != nil {
		return Values{}, storeError(err)
	}

	sets := make([]FeatureSet, nsets)
	for si, name := range setNames {
		fs, ok, err := s.decodeSet(name, res[si])
		if err != nil {
			return Values{}, err
		}
		if !ok {
			return Values{}, notFoundSet(fmt.Sprintf("features[%d]", firstRefOf(refSet, si)), name, res[si])
		}
		if si > 0 && fs.EntityType != sets[0].EntityType {
			return Values{}, Invalid(fmt.Sprintf("features[%d]", firstRefOf(refSet, si)), "feature set %q is keyed by %q, but %q by %q; one request reads one entity type", name, fs.EntityType, sets[0].Name, sets[0].EntityType)
		}
		sets[si] = fs
	}
	types := make([]ValueType, len(refs))
	for i, r := range refs {
		spec, ok := sets[refSet[i]].Feature(r.Feature)
		if !ok {
			return Values{}, WithReason(ReasonUnknownFeature, NotFound(fmt.Sprintf("features[%d]", i), "feature set %q has no feature %q", r.Set, r.Feature))
		}
		types[i] = spec.Type
	}

	// Per set, the feature names requested from it, and where each lands in a result row.
	wanted := make([][]string, nsets)
	wantedPos := make([][]int, nsets)
	for f, r := range refs {
		si := refSet[f]
		wanted[si] = append(wanted[si], r.Feature)
		wantedPos[si] = append(wantedPos[si], f)
	}
	maxPer := 0
	for si := range wanted {
		maxPer = max(maxPer, len(wanted[si]))
		// LookupCells walks names in the rows' (sorted) order.
		sort.Sort(byName{wanted[si], wantedPos[si]})
	}
	// The response's size is bounded: per entity its id and framing, per cell its value and
	// the status and timestamp around it (repeated ids and refs count each time).
	respBytes := 0
	for _, id := range entityIDs {
		respBytes += len(id) + 16
	}
	respBytes += len(entityIDs) * len(refs) * 16
	cellBuf := make([]Cell, maxPer)
	foundBuf := make([]bool, maxPer)
	now := s.clock.Now()
	values := make([]FeatureValue, len(entityIDs)*len(refs))
	for e := range entityIDs {
		for f := range refs {
			values[e*len(refs)+f].Status = NotFoundStatus
		}
	}
	for si, names := range wanted {
		ttl := sets[si].TTL
		rows := res[nsets+si*len(entityIDs) : nsets+(si+1)*len(entityIDs)]
		for e, row := range rows {
			if len(row.Data) == 0 {
				continue
			}
			cells, found := cellBuf[:len(names)], foundBuf[:len(names)]
			clear(found)
			if err := LookupCells(row.Data, names, cells, found); err != nil {
				return Values{}, fmt.Errorf("stored row %q: %w", row.Key.PK, err)
			}
			for j, ok := range found {
				if !ok {
					continue
				}
				v := &values[e*len(refs)+wantedPos[si][j]]
				v.EventTime, v.Value, v.Status = cells[j].EventTime, cells[j].Value, Present
				if respBytes += cellSize("", cells[j].Value); respBytes > s.cfg.MaxResponseBytes {
					return Values{}, WithReason(ReasonResponseTooLarge, ResourceExhausted("", "the response would exceed %d bytes (-max-response-bytes): it holds %d entities x %d features; ask for fewer, or fewer repeated ones",
						s.cfg.MaxResponseBytes, len(entityIDs), len(refs)))
				}
				if ttl > 0 && now.Sub(time.UnixMicro(cells[j].EventTime)) > ttl {
					v.Status, v.Value = Expired, Value{}
				}
			}
		}
	}
	return Values{Refs: refs, Types: types, Cells: values}, nil
}

// byName sorts feature names together with their positions in the request.
type byName struct {
	names []string
	pos   []int
}

func (b byName) Len() int           { return len(b.names) }
func (b byName) Less(i, j int) bool { return b.names[i] < b.names[j] }
func (b byName) Swap(i, j int) {
	b.names[i], b.names[j] = b.names[j], b.names[i]
	b.pos[i], b.pos[j] = b.pos[j], b.pos[i]
}

func firstRefOf(refSet []int, si int) int {
	for i, s := range refSet {
		if s == si {
			return i
		}
	}
	return 0
}
