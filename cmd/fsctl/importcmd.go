package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/dsfeatures/featurestore/featurestore/client"
	"github.com/dsfeatures/featurestore/ingest"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// progress prints how an import is going: a redrawn bar on a terminal, a plain line
// every interval otherwise (logs, CI).
type progress struct {
	w        io.Writer
	tty      bool
	interval time.Duration
	start    time.Time
	last     time.Time
	unit     string
}

func newProgress(w io.Writer, unit string) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	iv := 5 * time.Second
	if tty {
		iv = 200 * time.Millisecond
	}
	now := time.Now()
	return &progress{w: w, tty: tty, interval: iv, start: now, last: now, unit: unit}
}

func (p *progress) update(rows, done, total int64, final bool) {
	now := time.Now()
	if !final && now.Sub(p.last) < p.interval {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(rows) / max(elapsed, 1e-9)
	pct, eta := "", ""
	if total > 0 && done > 0 {
		frac := min(float64(done)/float64(total), 1)
		pct = fmt.Sprintf(" %3.0f%%", 100*frac)
		if frac < 1 {
			eta = fmt.Sprintf(" ETA %s", time.Duration(elapsed*(1-frac)/frac*float64(time.Second)).Round(time.Second))
		}
		if p.tty {
			const width = 30
			n := int(frac * width)
			pct = " [" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]" + pct
		}
	}
	line := fmt.Sprintf("%s %d rows, %.0f rows/s%s", pct, rows, rate, eta)
	if p.tty {
		fmt.Fprintf(p.w, "\r%-80s", strings.TrimSpace(line))
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintf(p.w, "imported%s\n", line)
}

func cmdImport(ctx context.Context, g globals, args []string) error {
	fset := flag.NewFlagSet("import", flag.ContinueOnError)
	fset.SetOutput(g.stderr)
	set := fset.String("set", "", "feature set (required)")
	format := fset.String("format", "", "csv, jsonl or parquet (default: from the file extension)")
	chunk := fset.Int("chunk", 500, "rows per batch chunk")
	quiet := fset.Bool("q", false, "no progress output")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *set == "" || fset.NArg() != 1 {
		return errors.New("usage: fsctl import -set NAME [-format csv|jsonl|parquet] FILE")
	}
	c, fs, err := dialForSet(ctx, g, *set)
	if err != nil {
		return err
	}
	defer c.Close()
	src, err := ingest.Open(fset.Arg(0), *format, fs, time.Now())
	if err != nil {
		return err
	}
	defer src.Close()
	prog := newProgress(g.stderr, src.Unit())
	var rows atomic.Int64
	sum, err := c.BatchWrite(ctx, *set, *chunk, func() (*pb.FeatureRow, error) {
		row, err := src.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		n := rows.Add(1)
		if !*quiet {
			done, total := src.Progress()
			prog.update(n, done, total, false)
		}
		return row, nil
	})
	if err != nil {
		return rpcError(err)
	}
	if !*quiet {
		done, total := src.Progress()
		prog.update(rows.Load(), done, total, true)
	}
	if g.output == "json" {
		return printJSON(g, sum)
	}
	fmt.Fprintf(g.stdout, "%d rows: %d written, %d stale, %d rejected in %s\n", rows.Load(), sum.GetRowsWritten(), sum.GetRowsStale(), sum.GetRowsRejected(), time.Since(prog.start).Round(time.Millisecond))
	if n := sum.GetRowsRetried(); n > 0 {
		fmt.Fprintf(g.stdout, "  %d rows were retried by the server after a failure with an unknown outcome\n", n)
	}
	for _, e := range sum.GetErrors() {
		fmt.Fprintf(g.stdout, "  row %d (entity %q): %s\n", e.GetRow(), e.GetEntityId(), e.GetError())
	}
	return nil
}

// cmdStream reads JSON Lines from stdin and writes them on the streaming lane, in
// requests of up to -batch rows, resending unacknowledged requests after a reconnect.
func cmdStream(ctx context.Context, g globals, args []string) error {
	fset := flag.NewFlagSet("stream", flag.ContinueOnError)
	fset.SetOutput(g.stderr)
	set := fset.String("set", "", "feature set (required)")
	batch := fset.Int("batch", 100, "rows per request")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *set == "" {
		return errors.New("usage: fsctl stream -set NAME < rows.jsonl")
	}
	c, fs, err := dialForSet(ctx, g, *set)
	if err != nil {
		return err
	}
	defer c.Close()
	src := ingest.NewJSONL(g.stdin, 0, ingest.FeatureTypes(fs), time.Now())
	var written, stale, rejected atomic.Int64
	var firstErrs []string
	w, err := c.NewStreamWriter(ctx, client.StreamOptions{OnAck: func(r *pb.StreamWriteFeaturesResponse) {
		for _, res := range r.GetResults() {
			switch res.GetStatus() {
			case pb.WriteStatus_WRITE_STATUS_WRITTEN:
				written.Add(1)
			case pb.WriteStatus_WRITE_STATUS_STALE:
				stale.Add(1)
			default:
				if rejected.Add(1) <= 10 {
					firstErrs = append(firstErrs, fmt.Sprintf("request %d: %s", r.GetSequence(), res.GetError()))
				}
			}
		}
	}})
	if err != nil {
		return rpcError(err)
	}
	var buf []*pb.FeatureRow
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := w.Send(*set, buf...)
		buf = nil
		return err
	}
	for {
		row, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		buf = append(buf, row)
		if len(buf) == *batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return rpcError(err)
	}
	fmt.Fprintf(g.stdout, "%d written, %d stale, %d rejected\n", written.Load(), stale.Load(), rejected.Load())
	for _, e := range firstErrs {
		fmt.Fprintf(g.stdout, "  %s\n", e)
	}
	return nil
}

// dialForSet connects and fetches the feature set that rows will be parsed against.
func dialForSet(ctx context.Context, g globals, set string) (*client.Client, *pb.FeatureSet, error) {
	c, err := client.Dial(g.addr, client.Options{})
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.API().GetFeatureSet(ctx, &pb.GetFeatureSetRequest{Name: set})
	if err != nil {
		c.Close()
		return nil, nil, rpcError(err)
	}
	return c, resp.GetFeatureSet(), nil
}
