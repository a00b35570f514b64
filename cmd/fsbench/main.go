// Command fsbench runs the benchmark suite: every scenario against its baseline in one run
// on the real stack (DynamoDB Local and valkey-server started here), with seeded data and
// fixed key distributions (uniform and Zipf). For each it measures the most throughput 8
// closed-loop workers get, then latency in open loop at half the lower of the two
// throughputs (so both sides get the same offered load), and prints a Markdown table of
// throughput, p50/p99/p999 and ratios (ours / baseline). `make bench` runs it first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fsbench:", err)
		}
		os.Exit(1)
	}
}

type options struct {
	seed     int64
	duration time.Duration
	only     string
	out      string
	cpuprof  string
	runs     int
	coldDB   bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("fsbench", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var o options
	fset.Int64Var(&o.seed, "seed", 1, "seed for data and key choices")
	fset.DurationVar(&o.duration, "duration", 3*time.Second, "length of each measurement")
	fset.StringVar(&o.only, "only", "", "run only scenarios whose name contains this")
	fset.StringVar(&o.out, "out", "", "also write the Markdown table to this file")
	fset.IntVar(&o.runs, "runs", 1, "measure the scenarios this many times (run after run, each with its own seed) and add a table of the per-run ratios and their medians")
	fset.BoolVar(&o.coldDB, "cold-db", false, "cache loss: skip warming DynamoDB Local's batched read path before the measurement (a fresh JVM's reads are 2-3x slower until its JIT has compiled them)")
	fset.StringVar(&o.cpuprof, "cpuprofile", "", "write a CPU profile of the measurements (not the setup) to this file; it covers both sides and the load generator, which share the process")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if o.runs < 1 {
		return fmt.Errorf("-runs: want at least 1, got %d", o.runs)
	}
	env, err := setup(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	if o.cpuprof != "" {
		f, err := os.Create(o.cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var runs [][]result
	var table strings.Builder
	for run := range o.runs {
		ro := o
		ro.seed = o.seed + int64(run)
		var rows []result
		for _, sc := range scenarios(env) {
			if o.only != "" && !strings.Contains(sc.name, o.only) {
				continue
			}
			fmt.Fprintf(stderr, "fsbench: run %d of %d: %s...\n", run+1, o.runs, sc.name)
			r, err := measure(ctx, ro, sc)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			rows = append(rows, r)
			fmt.Fprintln(stderr, "  "+r.line())
		}
		if len(rows) == 0 {
			continue
		}
		if o.runs > 1 {
			fmt.Fprintf(&table, "Run %d of %d. ", run+1, o.runs)
		}
		table.WriteString(markdown(rows, ro))
		table.WriteString("\n")
		runs = append(runs, rows)
	}
	if o.runs > 1 && len(runs) > 0 {
		table.WriteString(medians(runs))
	}
	// The cache loss scenario has its own service and timeline: measured once, after the
	// runs, and not part of the medians.
	if o.only == "" || strings.Contains("cache loss", o.only) {
		fmt.Fprintln(stderr, "fsbench: cache loss...")
		t, err := cacheLoss(ctx, o, env, stderr)
		if err != nil {
			return err
		}
		table.WriteString("\n" + t)
	}
	fmt.Fprint(stdout, table.String())
	if o.out != "" {
		return os.WriteFile(o.out, []byte(table.String()), 0o644)
	}
	return nil
}
