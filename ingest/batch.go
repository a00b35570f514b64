package ingest

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"

	"github.com/dsfeatures/featurestore/featurestore"
)

// BatchChunk is one chunk of a batch.
type BatchChunk struct {
	Set  string
	Rows []featurestore.WriteRow
}

// BatchError locates a rejected row.
type BatchError struct {
	Row      int64 // position in the whole batch, from 0
	EntityID string
	Error    string
	Reason   string
}

// BatchSummary is the batch lane's answer.
type BatchSummary struct {
	Written, Stale, Rejected int64
	// Retried counts rows written again after a failure with an unknown outcome. Such a
	// row answered stale may have applied on the earlier attempt and been overwritten
	// since; either way, newer values are stored now.
	Retried int64
	// Errors holds the first rejected rows, in no particular order beyond the first
	// MaxErrors encountered.
	Errors []BatchError
}

// BatchOptions tune the batch lane.
type BatchOptions struct {
	// MaxInFlight bounds the sub-chunks being written at once (default 4).
	MaxInFlight int
	// SubChunk is the most rows written through at once (default 100, one transaction). Each sub-chunk must
	// commit within the write timeout, so it stays small.
	SubChunk int
	// MaxErrors bounds Summary.Errors (default 100), and MaxErrorBytes their text in all
	// (default 64 KiB): a batch of rows with megabyte names must not answer with
	// megabytes of errors, nor hold them in memory.
	MaxErrors     int
	MaxErrorBytes int
	// Retries of a sub-chunk whose write failed with an unknown outcome (default 3);
	// merge by event time makes them safe.
	Retries int
	// Progress, if set, is called after each sub-chunk with the running totals.
	Progress func(BatchSummary)
}

// Batch runs the batch lane until recv returns io.EOF, and returns the summary. Rows are
// written in sub-chunks with bounded parallelism (rows of one entity in arrival order);
// at most MaxInFlight sub-chunks are held, so memory does not grow with the batch. An
// invalid row is counted as rejected with its position and reason. A write that still
// fails after retries fails the batch: rows already written stay written, and resending
// the whole batch is safe.
func Batch(ctx context.Context, w Writer, recv func() (BatchChunk, error), o BatchOptions) (BatchSummary, error) {
	if o.SubChunk <= 0 {
		o.SubChunk = 100
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 4
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 100
	}
	if o.MaxErrorBytes <= 0 {
		o.MaxErrorBytes = 64 << 10
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	q := newSequencer(o.MaxInFlight)
	var (
		mu         sync.Mutex
		sum        BatchSummary
		pos        int64
		errorBytes int
	)
	write := func(set string, rows []featurestore.WriteRow, base int64) {
		// Retries double from 50 ms, jittered so that sub-chunks failing together do not
		// retry together. Only failures with an unknown outcome are retried: merge by
		// event time makes rewriting the rows safe; anything else would fail again.
		b := backoff.NewExponentialBackOff()
		b.InitialInterval, b.Multiplier = 50*time.Millisecond, 2
		tries := 0
		results, err := backoff.Retry(ctx, func() ([]featurestore.RowResult, error) {
			if tries++; tries > 1 {
				mu.Lock()
				sum.Retried += int64(len(rows))
				mu.Unlock()
			}
			results, err := w.WriteRowsLenient(ctx, set, "rows", base, rows)
			if k := featurestore.ErrorKind(err); err != nil && k != featurestore.KindUnavailable && k != featurestore.KindAborted {
				return nil, backoff.Permanent(err)
			}
			return results, err
		}, backoff.WithBackOff(b), backoff.WithMaxTries(uint(o.Retries)+1), backoff.WithMaxElapsedTime(0))
		if err != nil {
			cancel(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for i, r := range results {
			switch r.Status {
			case featurestore.Written:
				sum.Written++
			case featurestore.Stale:
				sum.Stale++
			default:
				sum.Rejected++
				e := BatchError{Row: base + int64(i), EntityID: featurestore.Truncate(rows[i].EntityID), Error: cut(r.Error, maxErrorText), Reason: r.Reason}
				if n := len(e.EntityID) + len(e.Error); len(sum.Errors) < o.MaxErrors && errorBytes+n <= o.MaxErrorBytes {
					sum.Errors = append(sum.Errors, e)
					errorBytes += n
				}
			}
		}
		if o.Progress != nil {
			o.Progress(sum)
		}
	}
	chunks, recvErrs := receive(ctx, recv)
loop:
	for {
		var chunk BatchChunk
		select {
		case <-ctx.Done():
			break loop // a sub-chunk failed for good: stop reading, finish what is in flight
		case err := <-recvErrs:
			if !errors.Is(err, io.EOF) {
				cancel(err)
			}
			break loop
		case chunk = <-chunks:
		}
		for start := 0; start < len(chunk.Rows); start += o.SubChunk {
			rows := chunk.Rows[start:min(start+o.SubChunk, len(chunk.Rows))]
			base := pos + int64(start)
			set := chunk.Set
			if err := q.submit(ctx, rowKeys(set, rows), func() { write(set, rows, base) }); err != nil {
				break loop
			}
		}
		pos += int64(len(chunk.Rows))
	}
	q.wait()
	if err := context.Cause(ctx); err != nil {
		return sum, err
	}
	return sum, nil
}

// maxErrorText bounds one row's error in a batch summary.
const maxErrorText = 512

// cut shortens s to at most n bytes, at a UTF-8 boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
