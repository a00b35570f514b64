// Package loadgen drives a function at a fixed rate (open loop) or as fast as a fixed
// number of workers can (closed loop), and summarizes throughput and latency. In open-loop
// mode each operation's latency is measured from the moment it was scheduled to start, not
// from when it actually started, so a slow server cannot hide its queueing delay
// (no coordinated omission). It also holds BareGets, the bare baseline handler that cached
// GetFeatures is measured against.
package loadgen

import (
	"context"
	"math/rand"
	randv2 "math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Op is one operation; i numbers operations from 0, rng is the caller's worker's own
// source (seeded, so runs are reproducible).
type Op func(ctx context.Context, i int, rng *rand.Rand) error

// opSource returns an open-loop operation's own seeded source. It is a PCG (16 bytes of
// state) rather than math/rand's default source, whose 4.9 KB table costs about 10 us to
// seed: at thousands of operations a second that alone took about 5% of the CPU of the
// process it shares with the service it measures, and the latency it adds is noise.
func opSource(seed uint64) *rand.Rand {
	return rand.New(&pcgSource{p: *randv2.NewPCG(seed, seed^0x9e3779b97f4a7c15)})
}

// pcgSource adapts math/rand/v2's PCG to math/rand.Source64, which Op's *rand.Rand needs.
type pcgSource struct{ p randv2.PCG }

func (s *pcgSource) Int63() int64    { return int64(s.p.Uint64() >> 1) }
func (s *pcgSource) Uint64() uint64  { return s.p.Uint64() }
func (s *pcgSource) Seed(seed int64) { s.p.Seed(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15) }

// Result summarizes a run.
type Result struct {
	Ops        int
	Errors     int
	Dropped    int // open loop: operations not started because MaxInFlight were running
	Elapsed    time.Duration
	Throughput float64 // successful operations per second
	P50        time.Duration
	P99        time.Duration
	P999       time.Duration
}

func summarize(lat []time.Duration, errs, dropped int, elapsed time.Duration) Result {
	r := Result{Ops: len(lat) + errs, Errors: errs, Dropped: dropped, Elapsed: elapsed}
	if elapsed > 0 {
		r.Throughput = float64(len(lat)) / elapsed.Seconds()
	}
	if len(lat) == 0 {
		return r
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	r.P50, r.P99, r.P999 = q(0.50), q(0.99), q(0.999)
	return r
}

// Closed runs op on workers goroutines back to back for d.
func Closed(ctx context.Context, seed int64, workers int, d time.Duration, op Op) Result {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	var next int
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed + int64(w)))
			for time.Now().Before(end) && ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				t0 := time.Now()
				err := op(ctx, i, rng)
				el := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, el)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return summarize(lat, errs, 0, time.Since(start))
}

// Open starts op rate times per second for d, each in its own goroutine, with at most
// maxInFlight running; an operation that would exceed it is dropped and counted.
func Open(ctx context.Context, seed int64, rate float64, maxInFlight int, d time.Duration, op Op) Result {
	samples, dropped, elapsed := OpenSamples(ctx, seed, rate, maxInFlight, d, op)
	lat := make([]time.Duration, 0, len(samples))
	errs := 0
	for _, s := range samples {
		if s.Err {
			errs++
		} else {
			lat = append(lat, s.Latency)
		}
	}
	return summarize(lat, errs, dropped, elapsed)
}

// Sample is one operation of an open-loop run: when it was scheduled to start (from the
// run's start) and how long it took from then.
type Sample struct {
	Start, Latency time.Duration
	Err            bool
}

// OpenSamples is Open returning every operation, for runs that look at windows of time
// (such as before and after a fault), with the count dropped and the elapsed time.
func OpenSamples(ctx context.Context, seed int64, rate float64, maxInFlight int, d time.Duration, op Op) ([]Sample, int, time.Duration) {
	interval := time.Duration(float64(time.Second) / rate)
	n := int(d.Seconds() * rate)
	samples := make([]Sample, 0, n)
	var mu sync.Mutex
	dropped := 0
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	rng := rand.New(rand.NewSource(seed))
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if wait := time.Until(intended); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case slots <- struct{}{}:
		default:
			dropped++
			continue
		}
		opRng := opSource(rng.Uint64())
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := op(ctx, i, opRng)
			el := time.Since(intended)
			<-slots
			mu.Lock()
			samples = append(samples, Sample{Start: intended.Sub(start), Latency: el, Err: err != nil})
			mu.Unlock()
		}()
	}
	wg.Wait()
	return samples, dropped, time.Since(start)
}

// Quantiles returns the p50, p99 and p999 latencies of the successful samples.
func Quantiles(samples []Sample) (p50, p99, p999 time.Duration) {
	lat := make([]time.Duration, 0, len(samples))
	for _, s := range samples {
		if !s.Err {
			lat = append(lat, s.Latency)
		}
	}
	r := summarize(lat, 0, 0, 0)
	return r.P50, r.P99, r.P999
}

// Keys picks entity indexes in [0, n): uniformly, or Zipf-distributed (s=1.1) so a few
// hot keys take most of the traffic.
type Keys struct {
	N    int
	Zipf bool
}

// Pick returns one index.
func (k Keys) Pick(rng *rand.Rand) int {
	if !k.Zipf {
		return rng.Intn(k.N)
	}
	// rand.Zipf keeps state per rng; building one per call is cheap next to an RPC.
	return int(rand.NewZipf(rng, 1.1, 1, uint64(k.N-1)).Uint64())
}
