package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/dsfeatures/featurestore/internal/loadgen"
)

// scenario pairs our operation with its baseline.
type scenario struct {
	name, baseline string
	ours, base     loadgen.Op
	// unit names what one operation moves, for the table ("req", "rows").
	unit string
	// perOp scales throughput (rows per operation for the ingestion scenarios).
	perOp float64
	// workers for the closed-loop phase (default 8).
	workers int
}

type result struct {
	sc                 scenario
	oursMax, baseMax   loadgen.Result
	oursOpen, baseOpen loadgen.Result
	rate               float64
}

func measure(ctx context.Context, o options, sc scenario) (result, error) {
	workers := sc.workers
	if workers == 0 {
		workers = 8
	}
	if sc.perOp == 0 {
		sc.perOp = 1
	}
	r := result{sc: sc}
	runtime.GC()
	r.baseMax = loadgen.Closed(ctx, o.seed, workers, o.duration, sc.base)
	runtime.GC()
	r.oursMax = loadgen.Closed(ctx, o.seed, workers, o.duration, sc.ours)
	if r.oursMax.Throughput == 0 || r.baseMax.Throughput == 0 {
		return r, fmt.Errorf("no successful operations (ours %d errors, baseline %d errors)", r.oursMax.Errors, r.baseMax.Errors)
	}
	r.rate = 0.5 * min(r.oursMax.Throughput, r.baseMax.Throughput)
	runtime.GC()
	r.baseOpen = loadgen.Open(ctx, o.seed+1, r.rate, 256, o.duration, sc.base)
	runtime.GC()
	r.oursOpen = loadgen.Open(ctx, o.seed+1, r.rate, 256, o.duration, sc.ours)
	return r, nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }

func (r result) line() string {
	return fmt.Sprintf("max %.0f vs %.0f %s/s (%.2fx); at %.0f/s p99 %sus vs %sus (%.2fx)",
		r.oursMax.Throughput*r.sc.perOp, r.baseMax.Throughput*r.sc.perOp, r.sc.unit, r.oursMax.Throughput/r.baseMax.Throughput,
		r.rate, us(r.oursOpen.P99), us(r.baseOpen.P99), float64(r.oursOpen.P99)/float64(r.baseOpen.P99))
}

func markdown(rows []result, o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Seed %d, %v per measurement, %d CPUs, %s. Throughput: 8 closed-loop workers. Latency: open loop at half the lower max throughput, measured from the intended start (no coordinated omission). Ratios are ours / baseline.\n\n",
		o.seed, o.duration, runtime.NumCPU(), runtime.Version())
	b.WriteString("| scenario | baseline | ours max | base max | throughput ratio | offered /s | ours p50/p99/p999 us | base p50/p99/p999 us | p99 ratio |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %.0f %s/s | %.0f %s/s | %.2f | %.0f | %s / %s / %s | %s / %s / %s | %.2f |\n",
			r.sc.name, r.sc.baseline,
			r.oursMax.Throughput*r.sc.perOp, r.sc.unit, r.baseMax.Throughput*r.sc.perOp, r.sc.unit,
			r.oursMax.Throughput/r.baseMax.Throughput, r.rate,
			us(r.oursOpen.P50), us(r.oursOpen.P99), us(r.oursOpen.P999),
			us(r.baseOpen.P50), us(r.baseOpen.P99), us(r.baseOpen.P999),
			float64(r.oursOpen.P99)/float64(r.baseOpen.P99))
	}
	return b.String()
}

// medians summarizes several runs of the same scenarios: each run's throughput and p99
// ratios, and their medians, which is what BENCHMARKS.md reports (one run on a shared
// machine says little).
func medians(runs [][]result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Medians of %d runs (ours / baseline; each run measures both sides).\n\n", len(runs))
	b.WriteString("| scenario | baseline | throughput ratio per run | median | p99 ratio per run | median |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for i, r := range runs[0] {
		var tput, p99 []float64
		for _, rows := range runs {
			tput = append(tput, rows[i].oursMax.Throughput/rows[i].baseMax.Throughput)
			p99 = append(p99, float64(rows[i].oursOpen.P99)/float64(rows[i].baseOpen.P99))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %s | %.2f |\n", r.sc.name, r.sc.baseline, ratios(tput), median(tput), ratios(p99), median(p99))
	}
	return b.String()
}

func ratios(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
