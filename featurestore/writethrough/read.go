package writethrough

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
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
	ckeys := CacheKeys(keys)
	out := make([]Item, len(keys))
	entries, cerr := s.cache.Get(ctx, ckeys)
	if cerr != nil {
		s.logger.DebugContext(ctx, "cache get failed; reading the database", "err", cerr)
		all := make([]int, len(keys))
		for i := range all {
			all[i] = i
		}
		return out, s.fill(ctx, keys, ckeys, all, out, false)
	}
	miss := s.serve(ctx, keys, ckeys, entries, nil, out)
	// Keys another read of this replica is healing: wait for it, then look in the cache
	// again, rather than send the database one more read of the same key. Any VALUE the
	// cache holds may be served, whenever it was stored, so this shares no database read
	// (one that started before this read began could miss a write acknowledged since).
	for round := 0; len(miss) > 0; round++ {
		if round == maxWaitRounds {
			return out, s.fill(ctx, keys, ckeys, miss, out, true)
		}
		own, waits := s.claim(ckeys, miss)
		if len(own) > 0 {
			err := s.fill(ctx, keys, ckeys, own, out, true)
			s.release(ckeys, own)
			if err != nil {
				return nil, err
			}
		}
		if len(waits) == 0 {
			return out, nil
		}
		for _, f := range waits {
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
			}
		}
		miss = make([]int, 0, len(waits))
		for i := range waits {
			miss = append(miss, i)
		}
		sub := make([]string, len(miss))
		for j, i := range miss {
			sub[j] = ckeys[i]
		}
		again, err := s.cache.Get(ctx, sub)
		if err != nil {
			return out, s.fill(ctx, keys, ckeys, miss, out, false)
		}
		before := len(miss)
		miss = s.serve(ctx, keys, ckeys, again, miss, out)
		s.cfg.Metrics.Coalesced(ctx, before-len(miss))
	}
	return out, nil
}

// maxWaitRounds bounds how many times one read waits for others before it reads the
// database itself.
const maxWaitRounds = 3

// flight is a read of some keys by one reader of this replica: from PREPARE to
// POPULATE. Readers of the same keys wait for done and then look in the cache again.
type flight struct{ done chan struct{} }

// serve copies the servable entries to out and returns the positions that are not; idx
// maps entries to positions in keys (nil: the identity). It counts the lookups and
// remembers the keys it served.
func (s *Store) serve(ctx context.Context, keys []Key, ckeys []string, entries []CacheEntry, idx []int, out []Item) []int {
	var miss []int
	dirty := 0
	now := s.clock.Now()
	for j, e := range entries {
		i := j
		if idx != nil {
			i = idx[j]
		}
		if e.State == CacheValue {
			out[i] = Item{Key: keys[i], Version: e.Version, Data: e.Data}
			// An absent item (version 0) cannot be fenced, so its key gains nothing
			// from being hot: its fence would be a conditional write that always fails.
			if e.Version > 0 {
				s.recent.served(ckeys[i], now)
			}
			continue
		}
		miss = append(miss, i)
		if e.State == CacheDirty {
			dirty++
		}
	}
	s.cfg.Metrics.CacheLookups(ctx, len(entries)-len(miss), dirty, len(miss)-dirty)
	return miss
}

// claim registers a flight for each key at positions idx that has none, and returns
// those positions, and the flights of the others by position.
func (s *Store) claim(ckeys []string, idx []int) (own []int, waits map[int]*flight) {
	s.flightsMu.Lock()
	defer s.flightsMu.Unlock()
	for _, i := range idx {
		if f, ok := s.flights[ckeys[i]]; ok {
			if waits == nil {
				waits = map[int]*flight{}
			}
			waits[i] = f
			continue
		}
		s.flights[ckeys[i]] = &flight{done: make(chan struct{})}
		own = append(own, i)
	}
	return own, waits
}

// release ends the flights claim registered for positions own.
func (s *Store) release(ckeys []string, own []int) {
	s.flightsMu.Lock()
	defer s.flightsMu.Unlock()
	for _, i := range own {
		close(s.flights[ckeys[i]].done)
		delete(s.flights, ckeys[i])
	}
}

// fill reads the keys at positions idx from the database into out: PREPARE (when
// useCache), then, after it, a fenced read of the keys with a fence ticket and a plain
// consistent read of the rest, in parallel, then POPULATE where the tickets allow.
func (s *Store) fill(ctx context.Context, keys []Key, ckeys []string, idx []int, out []Item, useCache bool) error {
	var tickets []Ticket
	if useCache {
		mckeys := make([]string, len(idx))
		hot := make([]bool, len(idx))
		now := s.clock.Now()
		for j, i := range idx {
			mckeys[j] = ckeys[i]
			hot[j] = s.recent.hot(ckeys[i], now)
		}
		var err error
		if tickets, err = s.cache.Prepare(ctx, mckeys, hot); err != nil {
			tickets = nil
		}
	}
	var plain, fenced []int // positions in idx
	for j := range idx {
		if tickets != nil && tickets[j].Fence {
			fenced = append(fenced, j)
		} else {
			plain = append(plain, j)
		}
	}
	var plainItems, fencedItems map[Key]Item
	var fenceErr error
	g, gctx := errgroup.WithContext(ctx)
	if len(fenced) > 0 {
		g.Go(func() error {
			fkeys := make([]Key, len(fenced))
			for n, j := range fenced {
				fkeys[n] = keys[idx[j]]
			}
			// A failed fence is no failed read: read those keys plainly, not populating.
			fencedItems, fenceErr = s.db.FencedRead(gctx, fkeys)
			if fenceErr == nil {
				s.cfg.Metrics.FencedReads(ctx, len(fkeys))
				return nil
			}
			s.logger.DebugContext(ctx, "fenced read failed; reading plainly", "err", fenceErr)
			var err error
			fencedItems, err = s.db.GetItems(gctx, fkeys)
			return err
		})
	}
	if len(plain) > 0 {
		g.Go(func() error {
			pkeys := make([]Key, len(plain))
			for n, j := range plain {
				pkeys[n] = keys[idx[j]]
			}
			var err error
			plainItems, err = s.db.GetItems(gctx, pkeys)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var pops []Publication
	refused := 0
	for j, i := range idx {
		items := plainItems
		fence := tickets != nil && tickets[j].Fence
		if fence {
			items = fencedItems
		}
		it, ok := items[keys[i]]
		if !ok {
			it = Item{Key: keys[i]}
		}
		out[i] = it
		switch {
		case tickets == nil:
		case tickets[j].ID == "":
			refused++
		case fence && (!ok || fenceErr != nil):
			// Nothing fenced an absent key (nothing was created), so a writer that lost
			// its token may still create it: no populate.
			refused++
		default:
			// An absent item is cached too (version 0, no data), so unknown keys stay cheap.
			pops = append(pops, Publication{Key: ckeys[i], Token: tickets[j].ID, Version: it.Version, Data: it.Data})
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
	return nil
}
