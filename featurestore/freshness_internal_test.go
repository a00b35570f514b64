package featurestore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// merge is how both a replica's buffer and the stored record grow, so its arithmetic is
// checked case by case: maxima, sums per minute, order, and the window's edge.
func TestFreshnessRecordMerge(t *testing.T) {
	mc := func(pairs ...int64) []minuteCount {
		var out []minuteCount
		for i := 0; i+1 < len(pairs); i += 2 {
			out = append(out, minuteCount{Minute: pairs[i], Rows: pairs[i+1]})
		}
		return out
	}
	tests := []struct {
		name      string
		into, add freshnessRecord
		now       int64
		want      freshnessRecord
	}{
		{"into empty", freshnessRecord{}, freshnessRecord{NewestEvent: 5, LastWrite: 7, Minutes: mc(100, 3)}, 100,
			freshnessRecord{NewestEvent: 5, LastWrite: 7, Minutes: mc(100, 3)}},
		{"maxima, not sums", freshnessRecord{NewestEvent: 9, LastWrite: 2}, freshnessRecord{NewestEvent: 5, LastWrite: 7}, 100,
			freshnessRecord{NewestEvent: 9, LastWrite: 7}},
		{"same minute adds", freshnessRecord{Minutes: mc(99, 1, 100, 2)}, freshnessRecord{Minutes: mc(100, 5)}, 100,
			freshnessRecord{Minutes: mc(99, 1, 100, 7)}},
		{"minutes stay sorted", freshnessRecord{Minutes: mc(90, 1, 100, 2)}, freshnessRecord{Minutes: mc(95, 4, 80, 1)}, 100,
			freshnessRecord{Minutes: mc(80, 1, 90, 1, 95, 4, 100, 2)}},
		{"window edge", freshnessRecord{Minutes: mc(40, 1, 41, 2)}, freshnessRecord{Minutes: mc(100, 1)}, 100,
			freshnessRecord{Minutes: mc(41, 2, 100, 1)}},
		{"everything old goes", freshnessRecord{NewestEvent: 3, Minutes: mc(1, 1)}, freshnessRecord{}, 1000,
			freshnessRecord{NewestEvent: 3, Minutes: []minuteCount{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.into
			got.merge(&tc.add, tc.now)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(freshnessRecord{}, minuteCount{}), cmpEmptyAsNil); diff != "" {
				t.Errorf("merge (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpEmptyAsNil = cmp.Transformer("emptyAsNil", func(m []minuteCount) []minuteCount {
	if len(m) == 0 {
		return nil
	}
	return m
})

// freshness places each minute's count by its age at the reader's time.
func TestFreshnessRecordView(t *testing.T) {
	now := time.Unix(6000*60+30, 0)
	r := freshnessRecord{NewestEvent: 1_000_000, LastWrite: 2_000_000, Minutes: []minuteCount{{5940, 1}, {5941, 2}, {5999, 3}, {6000, 4}, {6001, 100}}}
	f := r.freshness(now)
	if len(f.PerMinute) != FreshnessWindow {
		t.Fatalf("window of %d minutes, want %d", len(f.PerMinute), FreshnessWindow)
	}
	// 5940 is 60 minutes old: outside. 6001 is in the future (another replica's clock): ignored.
	if f.PerMinute[0] != 2 || f.PerMinute[58] != 3 || f.PerMinute[59] != 4 || f.RowsLastHour() != 9 {
		t.Errorf("per minute %v, want 2 at [0], 3 at [58], 4 at [59], 9 in all", f.PerMinute)
	}
	if !f.NewestEventTime.Equal(time.Unix(1, 0)) || !f.LastWrite.Equal(time.Unix(2, 0)) {
		t.Errorf("times %v %v", f.NewestEventTime, f.LastWrite)
	}
}
