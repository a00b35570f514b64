package featurestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// FreshnessTable holds one item per feature set saying how fresh its data is (see
// Freshness). Its items hold no feature values and no data subjects.
const FreshnessTable writethrough.Table = "s"

// FreshnessKey is the key of a feature set's freshness item.
func FreshnessKey(set string) writethrough.Key {
	return writethrough.Key{Table: FreshnessTable, PK: set}
}

// FreshnessWindow is how far back Freshness counts rows, in minutes.
const FreshnessWindow = 60

// DefaultFreshnessInterval is how often a replica flushes the freshness it aggregated.
const DefaultFreshnessInterval = 10 * time.Second

// Freshness says how fresh a feature set's data is. It is what the store holds, where
// every replica adds what it wrote, so every replica reports the same (up to each
// replica's last flush, at most one flush interval behind).
type Freshness struct {
	// NewestEventTime is the newest event time of a row written to the set; zero when
	// none was written.
	NewestEventTime time.Time
	// LastWrite is when a row was last written, by the clock of the replica that wrote
	// it; zero when none was.
	LastWrite time.Time
	// PerMinute counts the rows written in each of the last FreshnessWindow minutes,
	// oldest first; the last entry is the current minute so far.
	PerMinute []int64
}

// RowsLastHour is the number of rows written over the last FreshnessWindow minutes.
func (f Freshness) RowsLastHour() int64 {
	var n int64
	for _, c := range f.PerMinute {
		n += c
	}
	return n
}

// RowsPerMinute is the mean number of rows written per minute over the last hour.
func (f Freshness) RowsPerMinute() float64 {
	return float64(f.RowsLastHour()) / FreshnessWindow
}

// freshnessRecord is the stored form of a set's freshness, and also what a replica
// aggregates in memory between flushes: merging one into another is how both grow.
type freshnessRecord struct {
	// NewestEvent and LastWrite are Unix microseconds.
	NewestEvent int64 `json:"newest_event_us,omitempty"`
	LastWrite   int64 `json:"last_write_us,omitempty"`
	// Minutes counts rows per Unix minute, sorted by minute, at most the window's.
	Minutes []minuteCount `json:"minutes,omitempty"`
}

type minuteCount struct {
	Minute int64 `json:"m"`
	Rows   int64 `json:"n"`
}

// merge adds o into r and drops minutes that left the window ending at nowMinute.
func (r *freshnessRecord) merge(o *freshnessRecord, nowMinute int64) {
	r.NewestEvent = max(r.NewestEvent, o.NewestEvent)
	r.LastWrite = max(r.LastWrite, o.LastWrite)
	for _, m := range o.Minutes {
		i, found := slices.BinarySearchFunc(r.Minutes, m.Minute, func(c minuteCount, t int64) int { return cmpInt(c.Minute, t) })
		if found {
			r.Minutes[i].Rows += m.Rows
		} else {
			r.Minutes = slices.Insert(r.Minutes, i, m)
		}
	}
	r.prune(nowMinute)
}

// prune drops the minutes before the window ending at nowMinute.
func (r *freshnessRecord) prune(nowMinute int64) {
	first := nowMinute - FreshnessWindow + 1
	i := 0
	for i < len(r.Minutes) && r.Minutes[i].Minute < first {
		i++
	}
	r.Minutes = slices.Delete(r.Minutes, 0, i)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// freshness is the record as seen at now.
func (r *freshnessRecord) freshness(now time.Time) Freshness {
	var f Freshness
	if r.NewestEvent > 0 {
		f.NewestEventTime = time.UnixMicro(r.NewestEvent).UTC()
	}
	if r.LastWrite > 0 {
		f.LastWrite = time.UnixMicro(r.LastWrite).UTC()
	}
	f.PerMinute = make([]int64, FreshnessWindow)
	nowMinute := unixMinute(now)
	for _, m := range r.Minutes {
		if age := nowMinute - m.Minute; age >= 0 && age < FreshnessWindow {
			f.PerMinute[FreshnessWindow-1-age] += m.Rows
		}
	}
	return f
}

func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

func decodeFreshness(b []byte) (freshnessRecord, error) {
	var r freshnessRecord
	if len(b) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return freshnessRecord{}, fmt.Errorf("decode freshness: %w", err)
	}
	return r, nil
}

// freshnessBuffer aggregates, per set, the rows this replica wrote since its last flush.
// Its size is bounded by the number of sets times the window's minutes.
type freshnessBuffer struct {
	mu      sync.Mutex
	pending map[string]*freshnessRecord
}

// add records rows written to set: how many, the newest event time among them
// (microseconds) and when.
func (b *freshnessBuffer) add(set string, rows int64, newestEvent int64, at time.Time) {
	m := unixMinute(at)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = map[string]*freshnessRecord{}
	}
	r, ok := b.pending[set]
	if !ok {
		r = &freshnessRecord{}
		b.pending[set] = r
	}
	r.merge(&freshnessRecord{NewestEvent: newestEvent, LastWrite: at.UnixMicro(), Minutes: []minuteCount{{Minute: m, Rows: rows}}}, m)
}

// take empties the buffer and returns what it held.
func (b *freshnessBuffer) take() map[string]*freshnessRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending
	b.pending = nil
	return p
}

// putBack merges records that could not be flushed back into the buffer.
func (b *freshnessBuffer) putBack(recs map[string]*freshnessRecord, nowMinute int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = map[string]*freshnessRecord{}
	}
	for set, r := range recs {
		if cur, ok := b.pending[set]; ok {
			cur.merge(r, nowMinute)
		} else {
			r.prune(nowMinute)
			b.pending[set] = r
		}
	}
}

// recordWritten adds the rows of a successful writeRows call whose result is WRITTEN to
// the set's freshness. Only rows the caller is told were written count: rows that were
// STALE or REJECTED, and calls that failed (the caller retries them), do not.
func (s *Service) recordWritten(set string, rows []WriteRow, results []RowResult) {
	var n, newest int64
	for i := range rows {
		if results[i].Status == Written {
			n++
			newest = max(newest, rows[i].EventTime.UnixMicro())
		}
	}
	if n > 0 {
		s.fresh.add(set, n, newest, s.clock.Now())
	}
}

// FlushFreshness adds what this replica wrote since its last flush to the stored
// freshness of each set: one conditional write per set written to (several sets share
// transactions), through the write-through store, so reads of it are linearizable. It
// is called every Config.FreshnessInterval by RunFreshness, which bounds the writes it
// costs to one per set and interval per replica, however busy the set.
//
// Counts that certainly were not stored (the cache or database refused before the
// commit, or the commit kept losing races) are kept for the next flush; counts whose
// write has an unknown outcome are dropped, so a row is counted at most once.
// Errors: those of the write-through store, after the kept counts were put back.
func (s *Service) FlushFreshness(ctx context.Context) error {
	recs := s.fresh.take()
	if len(recs) == 0 {
		return nil
	}
	sets := make([]string, 0, len(recs))
	for set := range recs {
		sets = append(sets, set)
	}
	slices.Sort(sets)
	keys := make([]writethrough.Key, len(sets))
	for i, set := range sets {
		keys[i] = FreshnessKey(set)
	}
	nowMinute := unixMinute(s.clock.Now())
	outs, err := writethrough.Update(ctx, s.store, keys, func(i int, cur writethrough.Current) (writethrough.Change, struct{}, error) {
		stored, err := decodeFreshness(cur.Item.Data)
		if err != nil {
			// A record that cannot be read is replaced: it holds only statistics.
			stored = freshnessRecord{}
		}
		stored.merge(recs[sets[i]], nowMinute)
		data, err := json.Marshal(stored)
		if err != nil {
			return writethrough.Change{}, struct{}{}, fmt.Errorf("encode freshness: %w", err)
		}
		return writethrough.Change{Put: true, Data: data}, struct{}{}, nil
	})
	retry := map[string]*freshnessRecord{}
	for i, set := range sets {
		if i >= len(outs) {
			// MARK failed before any key was tried: nothing was written.
			retry[set] = recs[set]
			continue
		}
		if e := outs[i].Err; e != nil && (errors.Is(e, writethrough.ErrNotWritten) || errors.Is(e, writethrough.ErrContention)) {
			retry[set] = recs[set]
		}
	}
	if len(retry) > 0 {
		s.fresh.putBack(retry, nowMinute)
	}
	if err != nil {
		return fmt.Errorf("flush freshness of %d sets: %w", len(sets), storeError(err))
	}
	return nil
}

// RunFreshness flushes the aggregated freshness every Config.FreshnessInterval until ctx
// ends, then once more (bounded by the interval) so that a replica shutting down loses
// no counts. It returns nil; failed flushes are logged and retried at the next tick.
func (s *Service) RunFreshness(ctx context.Context) error {
	t := time.NewTicker(s.cfg.FreshnessInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.FreshnessInterval)
			err := s.FlushFreshness(fctx)
			cancel()
			if err != nil {
				s.logger.WarnContext(ctx, "final freshness flush failed; counts since the last flush are lost", "reason", ErrorReason(err))
			}
			return nil
		case <-t.C:
			if err := s.FlushFreshness(ctx); err != nil && ctx.Err() == nil {
				s.logger.WarnContext(ctx, "freshness flush failed; retrying at the next interval", "reason", ErrorReason(err))
			}
		}
	}
}

// Freshness returns the stored freshness of each named set (the zero Freshness, with an
// empty window, for a set never written), read through the write-through store in one
// round trip: what every replica has flushed, not what this replica holds in memory, so
// that all replicas answer alike. Names are not checked against the registry.
// Errors: KindUnavailable.
func (s *Service) Freshness(ctx context.Context, names []string) (map[string]Freshness, error) {
	out := make(map[string]Freshness, len(names))
	if len(names) == 0 {
		return out, nil
	}
	keys := make([]writethrough.Key, len(names))
	for i, n := range names {
		keys[i] = FreshnessKey(n)
	}
	items, err := s.store.Read(ctx, keys)
	if err != nil {
		return nil, storeError(err)
	}
	now := s.clock.Now()
	for i, it := range items {
		r, err := decodeFreshness(it.Data)
		if err != nil {
			// Statistics that cannot be read are shown as unknown rather than failing a page.
			s.logger.WarnContext(ctx, "stored freshness unreadable", "set", names[i])
			r = freshnessRecord{}
		}
		out[names[i]] = r.freshness(now)
	}
	return out, nil
}
