package featurestore

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// ApplyFeatureSet creates or evolves a feature set and returns it as stored, with its
// version. Applying an identical set is a no-op that returns the stored version.
// Errors: KindInvalid (bad field), KindFailedPrecondition (a change Evolve refuses),
// KindUnavailable, KindAborted (concurrent applies outlasted the retries).
func (s *Service) ApplyFeatureSet(ctx context.Context, fs FeatureSet) (FeatureSet, error) {
	if err := fs.Validate(); err != nil {
		return FeatureSet{}, err
	}
	now := s.clock.Now()
	outs, err := writethrough.Update(ctx, s.store, []writethrough.Key{SetKey(fs.Name)}, func(_ int, cur writethrough.Current) (writethrough.Change, FeatureSet, error) {
		return applySet(cur, fs, now)
	})
	if err != nil {
		return FeatureSet{}, storeError(err)
	}
	out := outs[0]
	s.sets.Store(fs.Name, newMemoSet(out.Item.Version, out.Result))
	return out.Result, nil
}

// applySet is ApplyFeatureSet's mutation: the evolved set, or the stored one unchanged.
// A new version is recorded in the set's History as applied at now.
func applySet(cur writethrough.Current, fs FeatureSet, now time.Time) (writethrough.Change, FeatureSet, error) {
	next := fs
	next.Version = 1
	next.History = []VersionChange{{Version: 1, AppliedAt: now.UnixMicro(), Change: fmt.Sprintf("created with %d features", len(fs.Features))}}
	if len(cur.Item.Data) > 0 {
		prev, err := DecodeFeatureSet(cur.Item.Data)
		if err != nil {
			return writethrough.Change{}, FeatureSet{}, fmt.Errorf("stored feature set %q: %w", fs.Name, err)
		}
		if prev.Retired {
			return writethrough.Change{}, FeatureSet{}, WithReason(ReasonFeatureSetRetired, FailedPrecondition("feature_set.name",
				"feature set %q was retired and its name cannot be used again; choose another name", fs.Name))
		}
		var changed bool
		if next, changed, err = Evolve(prev, fs); err != nil {
			return writethrough.Change{}, FeatureSet{}, err
		}
		if !changed {
			return writethrough.Change{}, prev, nil
		}
		next.History = append(slices.Clone(prev.History), VersionChange{Version: next.Version, AppliedAt: now.UnixMicro(), Change: describeChange(prev, next)})
		if n := len(next.History); n > MaxHistory {
			next.History = next.History[n-MaxHistory:]
		}
	}
	data, err := EncodeFeatureSet(next)
	if err != nil {
		return writethrough.Change{}, FeatureSet{}, err
	}
	return writethrough.Change{Put: true, Data: data}, next, nil
}

// GetFeatureSet returns the newest applied version of the named set.
// Errors: KindNotFound, KindInvalid (bad name), KindUnavailable.
func (s *Service) GetFeatureSet(ctx context.Context, name string) (FeatureSet, error) {
	if err := validateName("name", name); err != nil {
		return FeatureSet{}, err
	}
	items, err := s.store.Read(ctx, []writethrough.Key{SetKey(name)})
	if err != nil {
		return FeatureSet{}, storeError(err)
	}
	fs, ok, err := s.decodeSet(name, items[0])
	if err != nil {
		return FeatureSet{}, err
	}
	if !ok {
		return FeatureSet{}, notFoundSet("name", name, items[0])
	}
	return fs, nil
}

// notFoundSet is the error for a set that is absent or retired.
func notFoundSet(field, name string, it writethrough.Item) error {
	if len(it.Data) > 0 {
		return WithReason(ReasonFeatureSetRetired, NotFound(field, "feature set %q was retired", name))
	}
	return WithReason(ReasonUnknownFeatureSet, NotFound(field, "feature set %q not found", name))
}

// decodeSet decodes a registry item, reusing the memoized set of the same item version.
// ok is false for an absent or retired set.
func (s *Service) decodeSet(name string, it writethrough.Item) (FeatureSet, bool, error) {
	fs, _, ok, err := s.decodeSetIndexed(name, it)
	return fs, ok, err
}

// decodeSetIndexed is decodeSet that also returns the set's feature types by name, built
// once per set version, so that a read resolves each ref in constant time.
func (s *Service) decodeSetIndexed(name string, it writethrough.Item) (FeatureSet, map[string]ValueType, bool, error) {
	if len(it.Data) == 0 {
		return FeatureSet{}, nil, false, nil
	}
	if v, ok := s.sets.Load(name); ok && v.(memoSet).version == it.Version {
		m := v.(memoSet)
		return m.set, m.types, !m.set.Retired, nil
	}
	fs, err := DecodeFeatureSet(it.Data)
	if err != nil {
		return FeatureSet{}, nil, false, fmt.Errorf("stored feature set %q: %w", name, err)
	}
	m := newMemoSet(it.Version, fs)
	if v, ok := s.sets.Load(name); !ok || v.(memoSet).version < it.Version {
		s.sets.Store(name, m)
	}
	return fs, m.types, !fs.Retired, nil
}

// Page limits of ListFeatureSets.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ListFeatureSets returns a page of feature sets, read consistently from the database, in
// a stable order that is not sorted, and the token of the next page ("" after the last).
// pageSize 0 means DefaultPageSize. Errors: KindInvalid (bad page size or token),
// KindUnavailable.
func (s *Service) ListFeatureSets(ctx context.Context, pageToken string, pageSize int) ([]FeatureSet, string, error) {
	if pageSize < 0 || pageSize > MaxPageSize {
		return nil, "", Invalid("page_size", "must be between 0 and %d, got %d", MaxPageSize, pageSize)
	}
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	start := ""
	if pageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || validateName("page_token", string(b)) != nil {
			return nil, "", Invalid("page_token", "is not a token this server returned")
		}
		start = string(b)
	}
	items, next, err := s.registry.ListItems(ctx, SetsTable, start, pageSize)
	if err != nil {
		return nil, "", Unavailable("database unavailable", err)
	}
	out := make([]FeatureSet, 0, len(items))
	for _, it := range items {
		if len(it.Data) == 0 {
			continue
		}
		fs, err := DecodeFeatureSet(it.Data)
		if err != nil {
			return nil, "", fmt.Errorf("stored feature set %q: %w", it.Key.PK, err)
		}
		if !fs.Retired {
			out = append(out, fs)
		}
	}
	token := ""
	if next != "" {
		token = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	return out, token, nil
}
