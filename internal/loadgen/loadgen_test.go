package loadgen

import (
	"context"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"
)

// Open-loop runs are reproducible: the same seed gives every operation the same draws,
// and different operations different ones.
func TestOpenSamplesSeedsEachOperation(t *testing.T) {
	draws := func(seed int64) map[int][]int64 {
		var mu sync.Mutex
		got := map[int][]int64{}
		OpenSamples(context.Background(), seed, 2000, 64, 50*time.Millisecond, func(_ context.Context, i int, rng *rand.Rand) error {
			d := []int64{rng.Int63(), int64(rng.Intn(1000)), int64(rng.Uint64() >> 40)}
			mu.Lock()
			got[i] = d
			mu.Unlock()
			return nil
		})
		return got
	}
	a, b, c := draws(7), draws(7), draws(8)
	if len(a) < 10 {
		t.Fatalf("only %d operations ran", len(a))
	}
	distinct := map[int64]bool{}
	for i, d := range a {
		if e, ok := b[i]; ok && !slices.Equal(d, e) {
			t.Fatalf("operation %d drew %v, then %v with the same seed", i, d, e)
		}
		if e, ok := c[i]; ok && slices.Equal(d, e) {
			t.Fatalf("operation %d drew %v with seeds 7 and 8", i, d)
		}
		distinct[d[0]] = true
	}
	if len(distinct) != len(a) {
		t.Fatalf("%d operations drew only %d distinct first values", len(a), len(distinct))
	}
}

func BenchmarkOpSource(b *testing.B) {
	for i := range b.N {
		_ = opSource(uint64(i)).Intn(100)
	}
}

func BenchmarkDefaultSource(b *testing.B) {
	for i := range b.N {
		_ = rand.New(rand.NewSource(int64(i))).Intn(100)
	}
}
