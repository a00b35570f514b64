package writethrough

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Read returns the current item of every key (duplicates allowed, read once),
// linearizably per key: never older than a write acknowledged before the read began, nor
// than an item another read returned before it began. Items that do not exist, and
// tombstones, have no Data. The cache serves what it can in one pipelined round trip; the
// rest is read from the database in one consistent batched read (shared with other
// readers of this replica that arrived before it started), recorded in the cache, and
// stored there where PREPARE allowed it. Reads need only the database: when the cache
// cannot record what was read, the read waits out Config.Horizon instead (see the
// package doc), and fails if its context ends first. Errors wrap ErrUnavailable.
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
	arrived := time.Now()
	ckeys := CacheKeys(keys)
	out := make([]Item, len(keys))
	entries, cerr := s.cache.Get(ctx, ckeys)
	if cerr != nil {
		s.logger.DebugContext(ctx, "cache get failed; reading the database", "err", cerr)
		all := make([]int, len(keys))
		for i := range all {
			all[i] = i
		}
		_, err := s.fill(ctx, keys, ckeys, all, out, false)
		return out, err
	}
	miss := s.serve(ctx, keys, ckeys, entries, nil, out)
	// Keys another read of this replica is healing: wait for it, rather than send the
	// database one more read of the same key. Its answer may be shared if its database
	// read started after this read began (one that started before could miss a write
	// acknowledged since) and was recorded, or if its RECORD, sent after this read began,
	// left the entry servable at that answer's version (this read then answers as a GET
	// at that moment would have); otherwise look in the cache again: any servable entry
	// may be served, whenever it was stored.
	for round := 0; len(miss) > 0; round++ {
		if round == maxWaitRounds {
			_, err := s.fill(ctx, keys, ckeys, miss, out, true)
			return out, err
		}
		own, waits := s.claim(ckeys, miss)
		if len(own) > 0 {
			fl, err := s.fill(ctx, keys, ckeys, own, out, true)
			s.release(ckeys, own, out, fl, err == nil)
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
		shared := 0
		for i, f := range waits {
			if f.shareable(arrived) {
				out[i] = f.item
				out[i].Key = keys[i]
				shared++
				continue
			}
			miss = append(miss, i)
		}
		s.cfg.Metrics.Coalesced(ctx, shared)
		if len(miss) == 0 {
			return out, nil
		}
		sub := make([]string, len(miss))
		for j, i := range miss {
			sub[j] = ckeys[i]
		}
		again, err := s.cache.Get(ctx, sub)
		if err != nil {
			_, err := s.fill(ctx, keys, ckeys, miss, out, false)
			return out, err
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

// flight is a read of some keys by one reader of this replica: from PREPARE to RECORD.
// Readers of the same key wait for done; then, if ok, item is the key's as recorded
// from a database read that started no earlier than start, and, unless served is zero,
// the entry was servable at item's version just after a RECORD sent at served.
type flight struct {
	done   chan struct{}
	item   Item
	start  time.Time
	served time.Time
	ok     bool
}

// shareable reports whether a reader that arrived at arrived may answer with f's item:
// if f's database read started after it arrived, or if f's RECORD, sent after it
// arrived, left the entry servable at item's version (a moment within the reader's
// read at which a GET would have served item).
func (f *flight) shareable(arrived time.Time) bool {
	return f.ok && (arrived.Before(f.start) || !f.served.IsZero() && arrived.Before(f.served))
}

// filled is what fill tells the readers waiting for the keys it read.
type filled struct {
	// start: when the database read was asked for; the read itself started no earlier.
	start time.Time
	// recordSent: when RECORD was sent; zero if it failed.
	recordSent time.Time
	// serves, by key read: RECORD left the entry servable at the version read.
	serves []bool
}

// serve copies the servable entries to out and returns the positions that are not; idx
// maps entries to positions in keys (nil: the identity). It counts the lookups.
func (s *Store) serve(ctx context.Context, keys []Key, ckeys []string, entries []CacheEntry, idx []int, out []Item) []int {
	var miss []int
	var renew, hits, missing []Key
	sample := s.loss.sample()
	dirty := 0
	for j, e := range entries {
		i := j
		if idx != nil {
			i = idx[j]
		}
		switch e.State {
		case CacheValue:
			out[i] = Item{Key: keys[i], Version: e.Version, Data: e.Data}
			if e.Renew {
				renew = append(renew, keys[i])
			}
			if sample {
				hits = append(hits, keys[i])
			}
			continue
		case CacheDirty:
			dirty++
		default:
			missing = append(missing, keys[i])
		}
		miss = append(miss, i)
	}
	s.cfg.Metrics.CacheLookups(ctx, len(entries)-len(miss), dirty, len(miss)-dirty)
	if renew != nil {
		s.renew(renew)
	}
	if hits != nil {
		s.loss.served(hits, time.Now())
	}
	if missing != nil {
		if heal := s.loss.missing(missing, time.Now(), s.cfg.Horizon); heal != nil {
			s.heal(heal)
		}
	}
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

// release ends the flights claim registered for positions own, handing their waiters
// out's items if ok (read and recorded by fill, which reported fl on positions own, in
// order).
func (s *Store) release(ckeys []string, own []int, out []Item, fl filled, ok bool) {
	s.flightsMu.Lock()
	defer s.flightsMu.Unlock()
	for j, i := range own {
		f := s.flights[ckeys[i]]
		f.item, f.start, f.ok = out[i], fl.start, ok
		if fl.serves != nil && fl.serves[j] {
			f.served = fl.recordSent
		}
		close(f.done)
		delete(s.flights, ckeys[i])
	}
}

// fill reads the keys at positions idx from the database into out: PREPARE (when
// useCache), the database read, then RECORD of every key read, storing it where the
// ticket allows. Only then may the read answer; if the cache could not record, it waits
// out the horizon first (unrecorded). It reports when the database read was asked for
// (the read itself started no earlier) and what RECORD left servable, for the keys'
// waiters.
func (s *Store) fill(ctx context.Context, keys []Key, ckeys []string, idx []int, out []Item, useCache bool) (filled, error) {
	return s.fillWith(ctx, keys, ckeys, idx, out, useCache, s.reads.get)
}

// fillWith is fill reading the database with get.
func (s *Store) fillWith(ctx context.Context, keys []Key, ckeys []string, idx []int, out []Item, useCache bool,
	get func(context.Context, []Key) (map[Key]Item, error)) (filled, error) {
	var tickets []string
	if useCache {
		mckeys := make([]string, len(idx))
		for j, i := range idx {
			mckeys[j] = ckeys[i]
		}
		var err error
		if tickets, err = s.cache.Prepare(ctx, mckeys); err != nil {
			s.logger.DebugContext(ctx, "cache prepare failed; reading without tickets", "err", err)
			tickets = nil
		}
	}
	rkeys := make([]Key, len(idx))
	for j, i := range idx {
		rkeys[j] = keys[i]
	}
	fl := filled{start: time.Now()}
	items, err := get(ctx, rkeys)
	if err != nil {
		return fl, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	readAt := time.Now()
	recs := make([]Publication, len(idx))
	ticketed := 0
	for j, i := range idx {
		it, ok := items[keys[i]]
		if !ok {
			it = Item{Key: keys[i]}
		}
		out[i] = it
		// An absent item is recorded too (version 0, no data), so unknown keys stay cheap.
		recs[j] = Publication{Key: ckeys[i], Version: it.Version, Data: it.Data}
		if tickets != nil && tickets[j] != "" {
			recs[j].Token = tickets[j]
			ticketed++
		}
	}
	sent := time.Now()
	res, err := s.cache.Record(ctx, recs)
	if err != nil {
		s.logger.DebugContext(ctx, "cache record failed; waiting out the horizon", "err", err)
		s.cfg.Metrics.Populates(ctx, 0, len(idx))
		return fl, s.unrecorded(ctx, recs, readAt)
	}
	stored := 0
	fl.recordSent, fl.serves = sent, make([]bool, len(idx))
	for j, r := range res {
		if r.Stored {
			stored++
		}
		fl.serves[j] = r.Serves
	}
	s.cfg.Metrics.Populates(ctx, stored, len(idx)-stored)
	return fl, nil
}

// unrecorded holds a read whose versions the cache could not record until one and a half
// horizons have passed since its database read returned, trying to record them
// meanwhile. A value readers stored provisionally, older than what this read returns, is
// served only until half a horizon after its own horizon, which ends before then (see the
// package doc); answering sooner could let a later read see an older value. It fails if
// ctx ends first.
func (s *Store) unrecorded(ctx context.Context, recs []Publication, readAt time.Time) error {
	s.cfg.Metrics.Unrecorded(ctx, len(recs))
	until := readAt.Add(s.cfg.Horizon + s.cfg.Horizon/2 + unrecordedSlack)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 20*time.Millisecond, 200*time.Millisecond
	for {
		wait := min(b.NextBackOff(), time.Until(until))
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: the cache could not record the read and the horizon had not passed: %w", ErrUnavailable, ctx.Err())
		case <-t.C:
		}
		if time.Until(until) <= 0 {
			return nil
		}
		if _, err := s.cache.Record(ctx, recs); err == nil {
			return nil
		}
	}
}

// unrecordedSlack is added to an unrecorded read's wait: the wait and a provisional
// entry's life are both one and a half horizons, on two clocks whose rates may differ by
// a little, and the read's start is only a database round trip after the entry's.
const unrecordedSlack = 25 * time.Millisecond

// renew hands keys served from provisional entries past their horizon to Run, which reads
// them from the database and stores them for good while the entries are still served:
// without it, every such key would miss once when its entry ends.
func (s *Store) renew(keys []Key) {
	s.renewMu.Lock()
	fresh := keys[:0:0]
	for _, k := range keys {
		if _, ok := s.renewing[k]; !ok {
			s.renewing[k] = struct{}{}
			fresh = append(fresh, k)
		}
	}
	s.renewMu.Unlock()
	if len(fresh) == 0 {
		return
	}
	select {
	case s.renewals <- fresh:
	default: // Run is behind: the entries end, and readers heal them
		s.renewDone(fresh)
	}
}

func (s *Store) renewDone(keys []Key) {
	s.renewMu.Lock()
	for _, k := range keys {
		delete(s.renewing, k)
	}
	s.renewMu.Unlock()
}

// renewAll reads keys as a reader would, through PREPARE (which clears a horizon that has
// passed) and RECORD, which then stores what it read for good.
func (s *Store) renewAll(ctx context.Context, keys []Key) {
	defer s.renewDone(keys)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Horizon/2)
	defer cancel()
	ckeys, own := s.claimAll(keys)
	if len(own) == 0 {
		return
	}
	out := make([]Item, len(keys))
	fl, err := s.fill(ctx, keys, ckeys, own, out, true)
	s.release(ckeys, own, out, fl, err == nil)
	if err != nil {
		s.logger.DebugContext(ctx, "renewing provisional entries failed; readers heal them", "err", err)
		return
	}
	s.cfg.Metrics.Renewed(ctx, len(own))
}
