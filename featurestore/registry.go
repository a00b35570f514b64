package featurestore

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// ApplyFeatureSet creates or evolves a feature set and returns it as stored, with its
// version. Applying an identical set is a no-op that returns the stored version.
// Errors: KindInvalid (bad field), KindFailedPrecondition (a change Evolve refuses),
// KindUnavailable, KindAborted (concurrent applies outlasted the retries).
func (s *Service) ApplyFeatureSet(ctx context.Context, fs FeatureSet) (FeatureSet, error) {
	if err := fs.Validate(); err != nil {
		return FeatureSet{}, err
	}
	key := SetKey(fs.Name)
	var out FeatureSet
	err := s.writeThrough(ctx, []ItemKey{key}, s.perKey([]int{0}, func(ctx context.Context, _ int) (Item, bool, error) {
		for attempt := 0; attempt < s.cfg.MaxCommitAttempts; attempt++ {
			cur, found, err := s.db.GetItem(ctx, key)
			if err != nil {
				return Item{}, false, Unavailable("database unavailable", err)
			}
			next := fs
			next.Version = 1
			if found {
				prev, err := DecodeFeatureSet(cur.Data)
				if err != nil {
					return Item{}, false, fmt.Errorf("stored feature set %q: %w", fs.Name, err)
				}
				var changed bool
				if next, changed, err = Evolve(prev, fs); err != nil {
					return cur, true, err
				}
				if !changed {
					out = prev
					return cur, true, nil
				}
			}
			data, err := EncodeFeatureSet(next)
			if err != nil {
				return Item{}, false, err
			}
			item := Item{Key: key, Version: next.Version, Data: data}
			err = s.db.PutItem(ctx, item, cur.Version)
			if errors.Is(err, ErrConflict) {
				continue
			}
			if err != nil {
				return Item{}, false, Unavailable("database unavailable; the feature set may have been applied", err)
			}
			out = next
			s.sets.Store(next.Name, next)
			return item, true, nil
		}
		return Item{}, false, &Error{Kind: KindAborted, Field: "feature_set.name", Message: "too many concurrent changes to this feature set; retry"}
	}))
	if err != nil {
		return FeatureSet{}, err
	}
	return out, nil
}

// GetFeatureSet returns the newest applied version of the named set.
// Errors: KindNotFound, KindInvalid (bad name), KindUnavailable.
func (s *Service) GetFeatureSet(ctx context.Context, name string) (FeatureSet, error) {
	if err := validateName("name", name); err != nil {
		return FeatureSet{}, err
	}
	res, err := s.readThrough(ctx, []ItemKey{SetKey(name)})
	if err != nil {
		return FeatureSet{}, err
	}
	fs, ok, err := s.decodeSet(name, res[0])
	if err != nil {
		return FeatureSet{}, err
	}
	if !ok {
		return FeatureSet{}, NotFound("name", "feature set %q not found", name)
	}
	return fs, nil
}

// decodeSet decodes a registry entry, reusing the memoized set of the same version.
func (s *Service) decodeSet(name string, r resolved) (FeatureSet, bool, error) {
	if !r.found {
		return FeatureSet{}, false, nil
	}
	if v, ok := s.sets.Load(name); ok && v.(FeatureSet).Version == r.version {
		return v.(FeatureSet), true, nil
	}
	fs, err := DecodeFeatureSet(r.data)
	if err != nil {
		return FeatureSet{}, false, fmt.Errorf("stored feature set %q: %w", name, err)
	}
	if v, ok := s.sets.Load(name); !ok || v.(FeatureSet).Version < fs.Version {
		s.sets.Store(name, fs)
	}
	return fs, true, nil
}

// ListFeatureSets returns every feature set sorted by name, read from the database.
// Errors: KindUnavailable.
func (s *Service) ListFeatureSets(ctx context.Context) ([]FeatureSet, error) {
	items, err := s.db.ListItems(ctx, SetsTable)
	if err != nil {
		return nil, Unavailable("database unavailable", err)
	}
	out := make([]FeatureSet, 0, len(items))
	for _, it := range items {
		fs, err := DecodeFeatureSet(it.Data)
		if err != nil {
			return nil, fmt.Errorf("stored feature set %q: %w", it.Key.PK, err)
		}
		out = append(out, fs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
