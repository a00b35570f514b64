package featurestore

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// of entity e; Types[f] is feature f's declared type. Refs is shared with every request
// of the same refs (see refPlan): callers must not modify it.
type Values struct {
	Refs  []FeatureRef
	Types []ValueType
	Cells []FeatureValue
}

// GetFeatures reads refs for every entity. Sets and rows are read from the cache in one pipelined round
// trip; what the cache cannot serve is read from the database in one consistent wave.
// Errors: KindInvalid (bad ref or entity id, sets of different entity types, limits),
// KindNotFound (unknown set or feature), KindResourceExhausted (the response would
// exceed MaxResponseBytes), KindUnavailable (the database is unreachable and the cache
// could not serve everything).
func (s *Service) GetFeatures(ctx context.Context, refStrs []string, entityIDs []string) (Values, error) {
	p, err := s.planRead(refStrs, entityIDs)
	if err != nil {
		return Values{}, err
	}
	res, err := s.store.Read(ctx, p.keys)
	if err != nil {
		return Values{}, storeError(err)
	}
	sets, types, err := s.resolveRead(p, res)
	if err != nil {
		return Values{}, err
	}
	return s.valuesFrom(p, sets, types, res, s.clock.Now())
}

// valuesFrom builds GetFeatures' answer from the items p's keys read.
func (s *Service) valuesFrom(p *readPlan, sets []FeatureSet, types []ValueType, res []writethrough.Item, now time.Time) (Values, error) {
	refs, entityIDs := p.refs, p.ids
	nsets := len(p.setNames)

	// Per set, the feature names requested from it in the rows' (sorted) order, which
	// LookupCells walks, and where each lands in a result row.
	wanted := make([][]string, nsets)
	maxPer := 0
	for si, pos := range p.byName {
		names := make([]string, len(pos))
		for j, f := range pos {
			names[j] = refs[f].Feature
		}
		wanted[si] = names
		maxPer = max(maxPer, len(names))
	}
	respBytes := p.baseResponseBytes()
	cellBuf := make([]Cell, maxPer)
	foundBuf := make([]bool, maxPer)
	values := make([]FeatureValue, len(entityIDs)*len(refs))
	for e := range entityIDs {
		for f := range refs {
			values[e*len(refs)+f].Status = NotFoundStatus
		}
	}
	for si, names := range wanted {
		ttl := sets[si].TTL
		for e := range entityIDs {
			row := p.row(res, si, e)
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
				v := &values[e*len(refs)+p.byName[si][j]]
				v.EventTime, v.Value, v.Status = cells[j].EventTime, cells[j].Value, Present
				if respBytes += cellSize("", cells[j].Value); respBytes > s.cfg.MaxResponseBytes {
					return Values{}, s.responseTooLarge(p)
				}
				if ttl > 0 && now.Sub(time.UnixMicro(cells[j].EventTime)) > ttl {
					v.Status, v.Value = Expired, Value{}
				}
			}
		}
	}
	return Values{Refs: refs, Types: types, Cells: values}, nil
}

// readPlan is a read request resolved once, before anything is read, and shared by both
// response forms: the refs' plan (shared by every request of the same refs), the entity
// ids validated and deduplicated, and the keys to read (every set, then one row per set
// and distinct id).
type readPlan struct {
	*refPlan
	ids []string
	// dist[e] is the index of ids[e] among the distinct ids, numbered in order of first
	// occurrence, so that dist[e] == e for every e when no id repeats.
	dist  []int32
	ndist int
	// mult[d] is how many times the d-th distinct id was requested.
	mult []int32
	keys []writethrough.Key
}

// planRead validates a read request and plans its keys. Errors are KindInvalid, naming
// the field; nothing is allocated per ref or id beyond the plan's own arrays.
func (s *Service) planRead(refStrs []string, entityIDs []string) (*readPlan, error) {
	if len(refStrs) == 0 {
		return nil, Invalid("features", "at least one feature is required")
	}
	if len(entityIDs) == 0 {
		return nil, Invalid("entity_ids", "at least one entity id is required")
	}
	if len(refStrs) > s.cfg.MaxFeatureRefs {
		return nil, Invalid("features", "at most %d features per request, got %d", s.cfg.MaxFeatureRefs, len(refStrs))
	}
	if len(entityIDs) > s.cfg.MaxEntities {
		return nil, Invalid("entity_ids", "at most %d entities per request, got %d", s.cfg.MaxEntities, len(entityIDs))
	}
	if n := len(refStrs) * len(entityIDs); n > s.cfg.MaxValues {
		return nil, Invalid("entity_ids", "at most %d values (entities x features) per request, got %d", s.cfg.MaxValues, n)
	}
	rp, err := s.plans.get(refStrs)
	if err != nil {
		return nil, err
	}
	p := &readPlan{refPlan: rp, ids: entityIDs}
	for i, id := range entityIDs {
		if id == "" {
			return nil, Invalid(fmt.Sprintf("entity_ids[%d]", i), "must not be empty")
		}
		if len(id) > MaxEntityIDLen || !utf8.ValidString(id) {
			return nil, Invalid(fmt.Sprintf("entity_ids[%d]", i), "must be valid UTF-8 of at most %d bytes", MaxEntityIDLen)
		}
	}
	p.dedupeIDs()

	// The row keys' PKs ("<set>#<id>") are cut from one string, one allocation for all.
	nsets := len(p.setNames)
	var distinct []int // distinct[d]: the position of the d-th distinct id's first occurrence
	if p.ndist < len(entityIDs) {
		distinct = make([]int, 0, p.ndist)
		for e, d := range p.dist {
			if int(d) == len(distinct) {
				distinct = append(distinct, e)
			}
		}
	}
	idAt := func(d int) string {
		if distinct == nil {
			return entityIDs[d]
		}
		return entityIDs[distinct[d]]
	}
	size := 0
	for _, name := range p.setNames {
		for d := 0; d < p.ndist; d++ {
			size += len(name) + 1 + len(idAt(d))
		}
	}
	var b strings.Builder
	b.Grow(size)
	for _, name := range p.setNames {
		for d := 0; d < p.ndist; d++ {
			b.WriteString(name)
			b.WriteByte('#')
			b.WriteString(idAt(d))
		}
	}
	pks := b.String()
	p.keys = make([]writethrough.Key, 0, nsets+nsets*p.ndist)
	for _, name := range p.setNames {
		p.keys = append(p.keys, SetKey(name))
	}
	at := 0
	for _, name := range p.setNames {
		for d := 0; d < p.ndist; d++ {
			n := len(name) + 1 + len(idAt(d))
			p.keys = append(p.keys, writethrough.Key{Table: RowsTable, PK: pks[at : at+n]})
			at += n
		}
	}
	return p, nil
}

// dedupeIDs fills dist, ndist and mult. Sorting positions by id finds repeats without a
// map; most requests have none, and then dist is the identity.
func (p *readPlan) dedupeIDs() {
	n := len(p.ids)
	if n == 1 {
		p.dist, p.ndist, p.mult = []int32{0}, 1, []int32{1}
		return
	}
	buf := make([]int32, 2*n)
	order, dist := buf[:n:n], buf[n:]
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return strings.Compare(p.ids[a], p.ids[b]) })
	// first[...] of each run of equal ids is its earliest position (the sort is stable).
	for i := 0; i < n; {
		j := i + 1
		for j < n && p.ids[order[j]] == p.ids[order[i]] {
			j++
		}
		for k := i; k < j; k++ {
			dist[order[k]] = order[i] // the first occurrence, renumbered below
		}
		i = j
	}
	// Number distinct ids in order of first occurrence.
	p.mult = make([]int32, 0, n)
	for e := range dist {
		if int(dist[e]) == e {
			dist[e] = int32(len(p.mult))
			p.mult = append(p.mult, 1)
		} else {
			dist[e] = dist[dist[e]]
			p.mult[dist[e]]++
		}
	}
	p.dist, p.ndist = dist, len(p.mult)
}

// row returns the item of set si's row for the request's e-th entity.
func (p *readPlan) row(res []writethrough.Item, si, e int) writethrough.Item {
	return res[len(p.setNames)+si*p.ndist+int(p.dist[e])]
}

// baseResponseBytes is what a response costs before its values: per entity its id and
// framing, per cell the status and timestamp around it (repeated ids and refs count each
// time). With cellSize per value it bounds the response of either form.
func (p *readPlan) baseResponseBytes() int {
	n := 0
	for _, id := range p.ids {
		n += len(id) + 16
	}
	return n + len(p.ids)*len(p.refs)*16
}

func (s *Service) responseTooLarge(p *readPlan) error {
	return WithReason(ReasonResponseTooLarge, ResourceExhausted("", "the response would exceed %d bytes (-max-response-bytes): it holds %d entities x %d features; ask for fewer, or fewer repeated ones",
		s.cfg.MaxResponseBytes, len(p.ids), len(p.refs)))
}

// resolveRead checks the sets the plan read and returns them and each ref's type.
func (s *Service) resolveRead(p *readPlan, res []writethrough.Item) ([]FeatureSet, []ValueType, error) {
	sets := make([]FeatureSet, len(p.setNames))
	idx := make([]map[string]ValueType, len(p.setNames))
	for si, name := range p.setNames {
		fs, types, ok, err := s.decodeSetIndexed(name, res[si])
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, notFoundSet(fmt.Sprintf("features[%d]", firstRefOf(p.refSet, si)), name, res[si])
		}
		if si > 0 && fs.EntityType != sets[0].EntityType {
			return nil, nil, Invalid(fmt.Sprintf("features[%d]", firstRefOf(p.refSet, si)), "feature set %q is keyed by %q, but %q by %q; one request reads one entity type", name, fs.EntityType, sets[0].Name, sets[0].EntityType)
		}
		sets[si], idx[si] = fs, types
	}
	types := make([]ValueType, len(p.refs))
	for i, r := range p.refs {
		t, ok := idx[p.refSet[i]][r.Feature]
		if !ok {
			return nil, nil, WithReason(ReasonUnknownFeature, NotFound(fmt.Sprintf("features[%d]", i), "feature set %q has no feature %q", r.Set, r.Feature))
		}
		types[i] = t
	}
	return sets, types, nil
}

// renameField sets the field of err's first *Error.
func renameField(err error, field string) error {
	var e *Error
	if errors.As(err, &e) {
		e.Field = field
	}
	return err
}

func firstRefOf(refSet []int, si int) int {
	for i, s := range refSet {
		if s == si {
			return i
		}
	}
	return 0
}
