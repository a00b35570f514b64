package writethrough

import (
	"context"
	"fmt"
)

// Read returns the current item of every key (duplicates allowed, read once),
// linearizably per key: never older than a write acknowledged before the read began.
// Items that do not exist, and tombstones, have no Data. The cache serves what it can in
// one pipelined round trip; the rest is read from the database in one wave of
// consistent batched reads and put back in the cache where PREPARE allowed it. A cache
// failure is not an error: reads need only the database. Errors wrap ErrUnavailable.
func (s *Store) Read(ctx context.Context, keys []Key) ([]Item, error) {
	uniq, pos := dedupe(keys)
	items, err := s.read(ctx, uniq)
	if err != nil {
		return nil, err
	}
	if pos == nil {
		return items, nil
	}
	out := make([]Item, len(keys))
	for i, p := range pos {
		out[i] = items[p]
	}
	return out, nil
}

// dedupe returns the distinct keys and, when there were duplicates, each key's position
// among them (nil when keys were already distinct).
func dedupe(keys []Key) ([]Key, []int) {
	if len(keys) < 2 {
		return keys, nil
	}
	seen := make(map[Key]int, len(keys))
	uniq := make([]Key, 0, len(keys))
	pos := make([]int, len(keys))
	for i, k := range keys {
		p, ok := seen[k]
		if !ok {
			p = len(uniq)
			seen[k] = p
			uniq = append(uniq, k)
		}
		pos[i] = p
	}
	if len(uniq) == len(keys) {
		return keys, nil
	}
	return uniq, pos
}

func (s *Store) read(ctx context.Context, keys []Key) ([]Item, error) {
	ckeys := make([]string, len(keys))
	for i, k := range keys {
		ckeys[i] = k.CacheKey()
	}
	out := make([]Item, len(keys))
	entries, cerr := s.cache.Get(ctx, ckeys)
	var miss []int
	if cerr != nil {
		s.logger.DebugContext(ctx, "cache get failed; reading the database", "err", cerr)
		miss = make([]int, len(keys))
		for i := range miss {
			miss[i] = i
		}
	} else {
		dirty := 0
		for i, e := range entries {
			if e.State == CacheValue {
				out[i] = Item{Key: keys[i], Version: e.Version, Data: e.Data}
				continue
			}
			miss = append(miss, i)
			if e.State == CacheDirty {
				dirty++
			}
		}
		s.cfg.Metrics.CacheLookups(ctx, len(keys)-len(miss), dirty, len(miss)-dirty)
	}
	if len(miss) == 0 {
		return out, nil
	}
	mkeys := make([]Key, len(miss))
	mckeys := make([]string, len(miss))
	for j, i := range miss {
		mkeys[j] = keys[i]
		mckeys[j] = ckeys[i]
	}
	var tickets []string
	if cerr == nil {
		var err error
		if tickets, err = s.cache.Prepare(ctx, mckeys); err != nil {
			tickets = nil
		}
	}
	items, err := s.db.GetItems(ctx, mkeys)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var pops []Publication
	refused := 0
	for j, i := range miss {
		it, ok := items[keys[i]]
		if !ok {
			it = Item{Key: keys[i]}
		}
		out[i] = it
		switch {
		case tickets == nil:
		case tickets[j] == "":
			refused++
		default:
			// An absent item is cached too (version 0, no data), so unknown keys stay cheap.
			pops = append(pops, Publication{Key: mckeys[j], Token: tickets[j], Version: it.Version, Data: it.Data})
		}
	}
	if len(pops) > 0 {
		stored, err := s.cache.Populate(ctx, pops)
		if err != nil {
			s.logger.DebugContext(ctx, "cache populate failed", "err", err)
		}
		refused += len(pops) - stored
		s.cfg.Metrics.Populates(ctx, stored, refused)
	} else if refused > 0 {
		s.cfg.Metrics.Populates(ctx, 0, refused)
	}
	return out, nil
}
