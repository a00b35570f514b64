package writethrough

import (
	"context"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// After a flush, a restart or a node replacement, every hot key misses at once, but each
// key's first reader arrives at its own time: with a hundred hot keys read 50 times a
// second each, the last ones first miss 50-100 ms after the loss. Healing each at its
// first miss takes a dozen small database reads, in waves, and every key's readers wait
// for its own wave. A replica that notices many keys it served recently missing at once
// instead heals all of them together, in batched reads of healChunk keys: readers of the
// others find them healing (and wait for that read) or healed.
//
// lossWatch keeps a sample of the keys this replica served from the cache recently, and
// notices when many of them miss within a short span. It costs a read that hits one
// random draw, and one read in recentSample a lock.
type lossWatch struct {
	threshold int // lossMisses, or Config.HealTogether

	mu       sync.Mutex
	recent   map[Key]time.Time // served from the cache, sampled, with when
	missed   map[Key]struct{}  // recent keys found missing since span
	span     time.Time
	pruned   time.Time
	lastHeal time.Time
}

const (
	// recentSample: one read in this many records the keys it was served from the cache.
	// A key read 50 times a second is then recorded about every 160 ms.
	recentSample = 8
	// recentWindow: keys served within it count as recent.
	recentWindow = 2 * time.Second
	// recentCap bounds the keys remembered, and so what one heal reads.
	recentCap = 4096
	// healChunk: a heal reads this many keys at a time.
	healChunk = 256
	// lossMisses (the default of Config.HealTogether) recent keys found missing within
	// lossSpan mean the cache lost many keys at once; fewer are evictions, which their
	// readers heal one by one.
	lossMisses = 8
	lossSpan   = 100 * time.Millisecond
)

// newLossWatch watches for threshold recent keys missing at once; below 1, it never
// heals.
func newLossWatch(threshold int) *lossWatch {
	return &lossWatch{threshold: threshold, recent: map[Key]time.Time{}, missed: map[Key]struct{}{}}
}

// sample reports whether this read should record the keys it was served from the cache:
// at random, since a counter would alias with clients that read keys in a fixed cycle.
// A watch that never heals samples nothing.
func (w *lossWatch) sample() bool { return w.threshold > 0 && rand.N(recentSample) == 0 }

// served records keys served from the cache at now. A full sample is pruned of keys
// older than recentWindow at most every recentWindow/8; until then new keys wait.
func (w *lossWatch) served(keys []Key, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.recent)+len(keys) > recentCap && now.Sub(w.pruned) >= recentWindow/8 {
		w.pruned = now
		for k, at := range w.recent {
			if now.Sub(at) > recentWindow {
				delete(w.recent, k)
			}
		}
	}
	for _, k := range keys {
		if _, ok := w.recent[k]; ok || len(w.recent) < recentCap {
			w.recent[k] = now
		}
	}
}

// missing notes keys found missing from the cache at now. When threshold recent keys
// have gone missing within lossSpan, and no heal started within every (the horizon), it
// returns the keys to heal: every recent key, most recently served first. Otherwise nil.
func (w *lossWatch) missing(keys []Key, now time.Time, every time.Duration) []Key {
	if w.threshold < 1 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.span) > lossSpan {
		clear(w.missed)
		w.span = now
	}
	for _, k := range keys {
		if at, ok := w.recent[k]; ok && now.Sub(at) <= recentWindow {
			w.missed[k] = struct{}{}
		}
	}
	if len(w.missed) < w.threshold || now.Sub(w.lastHeal) < every {
		return nil
	}
	w.lastHeal = now
	clear(w.missed)
	heal := make([]Key, 0, len(w.recent))
	for k, at := range w.recent {
		if now.Sub(at) <= recentWindow {
			heal = append(heal, k)
		}
	}
	sort.Slice(heal, func(i, j int) bool { return w.recent[heal[i]].After(w.recent[heal[j]]) })
	return heal
}

// heal hands keys to Run, which heals those still missing (healLost); if Run is busy
// with another heal, readers heal them one by one as before.
func (s *Store) heal(keys []Key) {
	select {
	case s.heals <- keys:
	default:
	}
}

// healLost reads, through PREPARE and RECORD as a reader would, every key that is still
// missing from the cache and that no read of this replica is healing, in one batched
// database read; readers of them meanwhile wait for it. It changes nothing a reader
// could not: a read whose answer only the cache keeps. The keys are claimed before they
// are looked up, so a reader that healed one just before is seen in the cache, and one
// that comes after waits.
// Keys go in chunks of healChunk, most recently served first, each claimed only when its
// turn comes: readers of the first keys wait for one read of a few hundred, not for
// thousands, and keys further down are meanwhile healed by their own readers if they come.
func (s *Store) healLost(ctx context.Context, keys []Key) {
	for len(keys) > 0 && ctx.Err() == nil {
		n := min(len(keys), healChunk)
		s.healChunk(ctx, keys[:n])
		keys = keys[n:]
	}
}

// healChunk is one chunk of healLost.
func (s *Store) healChunk(ctx context.Context, keys []Key) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Horizon/2)
	defer cancel()
	ckeys, own := s.claimAll(keys)
	if len(own) == 0 {
		return
	}
	out := make([]Item, len(keys))
	sub := make([]string, len(own))
	for j, i := range own {
		sub[j] = ckeys[i]
	}
	entries, err := s.cache.Get(ctx, sub)
	if err != nil {
		s.release(ckeys, own, out, filled{}, false)
		return
	}
	var lost, present []int
	for j, e := range entries {
		if e.State == CacheMissing {
			lost = append(lost, own[j])
		} else {
			present = append(present, own[j])
		}
	}
	s.release(ckeys, present, out, filled{}, false)
	if len(lost) == 0 {
		return
	}
	// Its own database read, not queued behind the reads of the first readers to miss:
	// every reader of these keys waits for it.
	fl, err := s.fillWith(ctx, keys, ckeys, lost, out, true, s.db.GetItems)
	s.release(ckeys, lost, out, fl, err == nil)
	if err != nil {
		s.logger.DebugContext(ctx, "healing keys lost together failed; readers heal them", "err", err)
		return
	}
	s.cfg.Metrics.Healed(ctx, len(lost))
}

// claimAll is claim for a background read of keys: it returns their cache keys and the
// positions of those no read of this replica is healing, which it now owns.
func (s *Store) claimAll(keys []Key) ([]string, []int) {
	ckeys := CacheKeys(keys)
	all := make([]int, len(keys))
	for i := range all {
		all[i] = i
	}
	own, _ := s.claim(ckeys, all)
	return ckeys, own
}
