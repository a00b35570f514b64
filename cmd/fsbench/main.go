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
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("fsbench", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var o options
	fset.Int64Var(&o.seed, "seed", 1, "seed for data and key choices")
	fset.DurationVar(&o.duration, "duration", 3*time.Second, "length of each measurement")
	fset.StringVar(&o.only, "only", "", "run only scenarios whose name contains this")
	fset.StringVar(&o.out, "out", "", "also write the Markdown table to this file")
	if err := fset.Parse(args); err != nil {
		return err
	}
	env, err := setup(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	var rows []result
	for _, sc := range scenarios(env) {
		if o.only != "" && !strings.Contains(sc.name, o.only) {
			continue
		}
		fmt.Fprintf(stderr, "fsbench: %s...\n", sc.name)
		r, err := measure(ctx, o, sc)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		rows = append(rows, r)
		fmt.Fprintln(stderr, "  "+r.line())
	}
	table := ""
	if len(rows) > 0 {
		table = markdown(rows, o)
	}
	if o.only == "" || strings.Contains("cache loss", o.only) {
		fmt.Fprintln(stderr, "fsbench: cache loss...")
		t, err := cacheLoss(ctx, o, env, stderr)
		if err != nil {
			return err
		}
		table += "\n" + t
	}
	fmt.Fprint(stdout, table)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(table), 0o644)
	}
	return nil
}
