package writethrough

import (
	"hash/maphash"
	"sync/atomic"
	"time"
)

// recentHits remembers which cache keys this replica served from the cache lately, so
// that when such a key comes back missing (a flush, a restart, an eviction), its first
// reader asks for a fence at once: the key is known to be read again, and a fenced read
// lets the very first reader repopulate it, where a plain one would leave every read
// until the next reader's fence to the database. Keys never served from the cache (a
// cold key read once) keep the cheaper plain read.
//
// It is a fixed table of slots, each holding a key's fingerprint and the tick it was
// last served in; keys that share a slot overwrite each other. That can only make a
// key look cold (it then takes two database reads to heal, as before) or, for a
// fingerprint collision of one in 2^40, make a cold key pay a fence: never a wrong answer,
// since a fence is always allowed.
type recentHits struct {
	seed   maphash.Seed
	window uint64 // ticks
	slots  [recentSlots]atomic.Uint64
}

const (
	recentSlots = 1 << 15 // 256 KiB per replica
	recentTick  = 100 * time.Millisecond
	tickBits    = 24 // ticks wrap after about 19 days, far beyond any window
	tickMask    = 1<<tickBits - 1
)

func newRecentHits(window time.Duration) *recentHits {
	return &recentHits{seed: maphash.MakeSeed(), window: uint64(max(window/recentTick, 1))}
}

func (r *recentHits) slot(key string) (*atomic.Uint64, uint64) {
	h := maphash.String(r.seed, key)
	return &r.slots[h%recentSlots], h >> tickBits // 40 bits of fingerprint, independent of the slot's
}

func ticks(now time.Time) uint64 { return uint64(now.UnixNano()/int64(recentTick)) & tickMask }

// served records that key was served from the cache at now.
func (r *recentHits) served(key string, now time.Time) {
	s, fp := r.slot(key)
	v := fp<<tickBits | ticks(now)
	if s.Load() != v { // most hits repeat the last one: spare the cache line a write
		s.Store(v)
	}
}

// hot reports whether key was served from the cache within the window before now.
func (r *recentHits) hot(key string, now time.Time) bool {
	s, fp := r.slot(key)
	v := s.Load()
	return v>>tickBits == fp && (ticks(now)-v)&tickMask <= r.window
}
