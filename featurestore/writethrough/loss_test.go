package writethrough

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestLossWatch(t *testing.T) {
	t0 := time.Unix(1000, 0)
	keys := func(prefix string, n int) []Key {
		out := make([]Key, n)
		for i := range out {
			out[i] = Key{Table: "t", PK: fmt.Sprintf("%s%02d", prefix, i)}
		}
		return out
	}
	hot := keys("h", 20)
	type miss struct {
		at   time.Duration
		keys []Key
	}
	cases := []struct {
		name   string
		served time.Duration // when the hot keys were served, from t0
		misses []miss
		want   int // keys returned by the last miss; 0: no heal
	}{
		{"one recent key evicted at a time", 0, []miss{{10 * time.Millisecond, hot[:1]}, {20 * time.Millisecond, hot[1:2]}}, 0},
		{"seven recent keys missing is not yet a loss", 0, []miss{{10 * time.Millisecond, hot[:7]}}, 0},
		{"eight recent keys missing at once", 0, []miss{{10 * time.Millisecond, hot[:8]}}, 20},
		{"eight recent keys one by one within the span", 0, []miss{
			{10 * time.Millisecond, hot[:2]}, {40 * time.Millisecond, hot[2:5]}, {70 * time.Millisecond, hot[5:8]}}, 20},
		{"the same key missing eight times", 0, []miss{{10 * time.Millisecond, []Key{hot[0], hot[0], hot[0], hot[0], hot[0], hot[0], hot[0], hot[0]}}}, 0},
		{"misses spread beyond the span", 0, []miss{{10 * time.Millisecond, hot[:5]}, {10*time.Millisecond + lossSpan + time.Millisecond, hot[5:8]}}, 0},
		{"keys nobody read recently", 0, []miss{{10 * time.Millisecond, keys("c", 20)}}, 0},
		{"keys served too long ago", -recentWindow - time.Second, []miss{{10 * time.Millisecond, hot}}, 0},
	}
	t.Run("disabled", func(t *testing.T) {
		w := newLossWatch(-1)
		w.served(hot, t0)
		if got := w.missing(hot, t0, time.Second); got != nil {
			t.Fatalf("a watch with threshold -1 healed %d keys", len(got))
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newLossWatch(lossMisses)
			w.served(hot, t0.Add(c.served))
			var got []Key
			for _, m := range c.misses {
				got = w.missing(m.keys, t0.Add(m.at), time.Second)
			}
			if len(got) != c.want {
				t.Fatalf("heal of %d keys, want %d", len(got), c.want)
			}
		})
	}
}

func TestLossWatchHealsOncePerHorizonMostRecentFirst(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := newLossWatch(lossMisses)
	var hot []Key
	for i := range 10 {
		k := Key{Table: "t", PK: fmt.Sprintf("k%d", i)}
		hot = append(hot, k)
		w.served([]Key{k}, t0.Add(time.Duration(i)*time.Millisecond))
	}
	got := w.missing(hot, t0.Add(20*time.Millisecond), time.Second)
	want := slices.Clone(hot)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("heal %v, want the most recently served first: %v", got, want)
	}
	if again := w.missing(hot, t0.Add(500*time.Millisecond), time.Second); again != nil {
		t.Fatalf("a second heal within the horizon: %v", again)
	}
	w.served(hot, t0.Add(1100*time.Millisecond))
	if again := w.missing(hot, t0.Add(1200*time.Millisecond), time.Second); len(again) != len(hot) {
		t.Fatalf("after the horizon: heal of %d keys, want %d", len(again), len(hot))
	}
}

func TestLossWatchIsBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := newLossWatch(lossMisses)
	for i := range recentCap + 500 {
		w.served([]Key{{Table: "t", PK: fmt.Sprint(i)}}, t0)
	}
	if n := len(w.recent); n != recentCap {
		t.Fatalf("%d recent keys remembered, want the cap %d", n, recentCap)
	}
	// Once they are old, new keys replace them.
	later := t0.Add(recentWindow + time.Second)
	w.served([]Key{{Table: "t", PK: "new"}}, later)
	if _, ok := w.recent[Key{Table: "t", PK: "new"}]; !ok || len(w.recent) != 1 {
		t.Fatalf("after the window: %d keys remembered, new one present %v", len(w.recent), ok)
	}
}
