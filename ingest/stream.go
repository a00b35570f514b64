package ingest

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/dsfeatures/featurestore/featurestore"
)

// StreamRequest is one request of the streaming lane.
type StreamRequest struct {
	Sequence int64
	Set      string
	Rows     []featurestore.WriteRow
}

// StreamAck acknowledges one request: every row of it is durable (or stale or rejected).
type StreamAck struct {
	Sequence int64
	Results  []featurestore.RowResult
}

// StreamOptions tune the streaming lane.
type StreamOptions struct {
	// MaxInFlight bounds the requests being written at once (default 8).
	MaxInFlight int
}

// Stream runs the streaming lane until recv returns io.EOF (then it waits for the requests
// in flight and returns nil) or an error. Each request is acknowledged through send once
// its rows are written through, possibly out of order with other requests; requests that
// touch the same entity are written in arrival order. If a write fails (the cache or the
// database is unavailable), Stream stops receiving, lets the requests in flight finish,
// and returns that error: everything acknowledged is durable, and the unacknowledged
// requests are safe to resend.
func Stream(ctx context.Context, w Writer, recv func() (StreamRequest, error), send func(StreamAck) error, o StreamOptions) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	q := newSequencer(o.MaxInFlight)
	var sendMu sync.Mutex
	reqs, recvErrs := receive(ctx, recv)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop // a write failed: stop reading, finish what is in flight
		case err := <-recvErrs:
			if !errors.Is(err, io.EOF) {
				cancel(err)
			}
			break loop
		case req := <-reqs:
			keys := rowKeys(req.Set, req.Rows)
			err := q.submit(ctx, keys, func() {
				if ctx.Err() != nil {
					return // a failure ended the stream: this request stays unacknowledged
				}
				results, err := w.WriteRowsLenient(ctx, req.Set, "rows", 0, req.Rows)
				if err != nil {
					cancel(err)
					return
				}
				sendMu.Lock()
				defer sendMu.Unlock()
				if err := send(StreamAck{Sequence: req.Sequence, Results: results}); err != nil {
					cancel(err)
				}
			})
			if err != nil {
				break loop
			}
		}
	}
	q.wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
