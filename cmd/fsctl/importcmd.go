package main

import (
	"context"
	"errors"
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

func cmdImport(ctx context.Context, g *globals, args []string) error {
	const synopsis = "import -set NAME [-format csv|jsonl|parquet] [-chunk N] [-q] FILE"
	fset := g.newFlagSet("import", synopsis)
	set := fset.String("set", "", "feature set (required)")
	format := fset.String("format", "", "csv, jsonl or parquet (default: from the file extension)")
	chunk := fset.Int("chunk", 500, "rows per batch chunk")
	quiet := fset.Bool("q", false, "no progress output")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if *set == "" || len(pos) != 1 {
		return usageErrorf("usage: fsctl %s", synopsis)
	}
	if *chunk <= 0 {
		return usageErrorf("-chunk: want a positive number of rows, got %d", *chunk)
	}
	c, fs, err := dialForSet(ctx, g, *set)
	if err != nil {
		return err
	}
	defer c.Close()
	src, err := ingest.Open(pos[0], *format, fs, time.Now())
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
func cmdStream(ctx context.Context, g *globals, args []string) error {
	const synopsis = "stream -set NAME [-batch N] < rows.jsonl"
	fset := g.newFlagSet("stream", synopsis)
	set := fset.String("set", "", "feature set (required)")
	batch := fset.Int("batch", 100, "rows per request")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if *set == "" || len(pos) != 0 {
		return usageErrorf("usage: fsctl %s", synopsis)
	}
	if *batch <= 0 {
		return usageErrorf("-batch: want a positive number of rows, got %d", *batch)
	}
	c, fs, err := dialForSet(ctx, g, *set)
	if err != nil {
		return err
	}
	defer c.Close()
	src := ingest.NewJSONL(g.stdin, 0, ingest.FeatureTypes(fs), time.Now())
	// OnAck calls come one at a time, and Close waits for the last, so the summary needs
	// no lock of its own.
	var sum streamSummary
	w, err := c.NewStreamWriter(ctx, client.StreamOptions{OnAck: func(r *pb.StreamWriteFeaturesResponse) {
		for _, res := range r.GetResults() {
			switch res.GetStatus() {
			case pb.WriteStatus_WRITE_STATUS_WRITTEN:
				sum.Written++
			case pb.WriteStatus_WRITE_STATUS_STALE:
				sum.Stale++
			default:
				if sum.Rejected++; sum.Rejected <= 10 {
					sum.Errors = append(sum.Errors, streamError{Request: r.GetSequence(), Error: res.GetError(), Reason: res.GetReason()})
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
	// A malformed line stops the input: requests already sent are still acknowledged
	// and summarized, rows after them are not sent, and the command fails.
	var inputErr error
	for {
		row, err := src.Next()
		if errors.Is(err, io.EOF) {
			inputErr = flush()
			break
		}
		if err != nil {
			inputErr = err
			break
		}
		buf = append(buf, row)
		if len(buf) == *batch {
			if inputErr = flush(); inputErr != nil {
				break
			}
		}
	}
	if err := w.Close(); err != nil {
		return errors.Join(inputErr, rpcError(err))
	}
	if g.output == "json" {
		if err := printPlainJSON(g, sum); err != nil {
			return err
		}
		return inputErr
	}
	fmt.Fprintf(g.stdout, "%d written, %d stale, %d rejected\n", sum.Written, sum.Stale, sum.Rejected)
	for _, e := range sum.Errors {
		fmt.Fprintf(g.stdout, "  request %d: %s\n", e.Request, e.Error)
	}
	return inputErr
}

// streamSummary is what 'fsctl stream' reports; -o json prints it as is.
type streamSummary struct {
	Written  int64         `json:"rowsWritten"`
	Stale    int64         `json:"rowsStale"`
	Rejected int64         `json:"rowsRejected"`
	Errors   []streamError `json:"errors,omitempty"`
}

// streamError is one of the first rejected rows.
type streamError struct {
	Request int64  `json:"request"`
	Error   string `json:"error"`
	Reason  string `json:"reason,omitempty"`
}

// dialForSet connects and fetches the feature set that rows will be parsed against.
func dialForSet(ctx context.Context, g *globals, set string) (*client.Client, *pb.FeatureSet, error) {
	c, err := g.dial()
	if err != nil {
		return nil, nil, err
	}
	fs, err := c.GetFeatureSet(ctx, set)
	if err != nil {
		c.Close()
		return nil, nil, rpcError(err)
	}
	return c, fs, nil
}
