package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// ErrOutcomeUnknown matches (with errors.Is) every error of a write whose rows may or may
// not have been applied. The concrete error is an *OutcomeUnknownError.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// OutcomeUnknownError reports rows of a write that may have been applied although the
// caller was not told so. It happens when:
//
//   - an attempt failed in a way that leaves the outcome open (UNAVAILABLE,
//     DEADLINE_EXCEEDED, CANCELED, ABORTED, INTERNAL or UNKNOWN) and no later attempt
//     answered: every row is listed, Results is nil and Err is the last failure;
//   - an attempt failed UNAVAILABLE and a retry answered: a row the retry reports STALE
//     or REJECTED may have been applied by the earlier attempt and then overwritten by a
//     newer write (or erased), so readers may have seen it. Those rows are listed, and
//     Results holds the retry's answer for every row (WRITTEN rows are certain).
//
// Retrying the same rows is always safe: merge by event time makes an applied row a
// no-op. Err, when set, keeps the gRPC status (status.Code works on the whole error).
type OutcomeUnknownError struct {
	// Set is the feature set written.
	Set string
	// Rows are the indexes, into the rows passed to Write, whose outcome is unknown.
	Rows []int
	// Results are the last attempt's per-row results, or nil if it failed.
	Results []*pb.RowResult
	// Attempts is how many times the request was sent.
	Attempts int
	// Err is the last attempt's error, or nil if it answered.
	Err error
}

func (e *OutcomeUnknownError) Error() string {
	msg := fmt.Sprintf("write to feature set %q: outcome unknown for %d row(s) %v after %d attempt(s)", e.Set, len(e.Rows), e.Rows, e.Attempts)
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg + ": a retry found them stale or rejected, so an earlier attempt may have applied them before a newer write"
}

// Is makes errors.Is(err, ErrOutcomeUnknown) true.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// Unwrap returns the last attempt's error, so status.Code sees its code.
func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// maybeApplied reports whether a failed WriteFeatures call may have applied rows. The
// other codes are answered before anything is written (validation, authorization,
// unknown set, rate limits).
func maybeApplied(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// Write writes rows on the on-demand lane and returns one result per row (WRITTEN or
// STALE; REJECTED when a subject was erased or the set retired). A request that fails
// validation writes nothing and returns INVALID_ARGUMENT.
//
// Write retries the request when it is answered UNAVAILABLE, up to Options.MaxAttempts
// tries with backoff. When the outcome of some rows cannot be known, the error is an
// *OutcomeUnknownError (errors.Is(err, ErrOutcomeUnknown)); if a retry answered, the
// results are returned alongside it. Any other error means nothing was applied.
func (c *Client) Write(ctx context.Context, set string, rows ...*pb.FeatureRow) ([]*pb.RowResult, error) {
	req := &pb.WriteFeaturesRequest{FeatureSet: set, Rows: rows}
	attempts, unavailable := 0, false
	var lastErr error
	resp, err := backoff.Retry(ctx, func() (*pb.WriteFeaturesResponse, error) {
		attempts++
		resp, err := c.fs.WriteFeatures(ctx, req)
		lastErr = err
		switch {
		case err == nil:
			return resp, nil
		case status.Code(err) == codes.Unavailable:
			unavailable = true
			return nil, err
		default:
			return nil, backoff.Permanent(err)
		}
	}, backoff.WithBackOff(c.newBackoff()), backoff.WithMaxTries(uint(c.opts.MaxAttempts)), backoff.WithMaxElapsedTime(0))
	if err != nil {
		if lastErr != nil && !errors.Is(err, lastErr) {
			err = errors.Join(lastErr, err) // the context ended while waiting to retry
		}
		if unavailable || maybeApplied(lastErr) {
			return nil, &OutcomeUnknownError{Set: set, Rows: indexes(len(rows)), Attempts: attempts, Err: err}
		}
		return nil, err
	}
	results := resp.GetResults()
	if len(results) != len(rows) {
		return results, fmt.Errorf("write to feature set %q: the server answered %d results for %d rows", set, len(results), len(rows))
	}
	if !unavailable {
		return results, nil
	}
	var unknown []int
	for i, r := range results {
		if r.GetStatus() != pb.WriteStatus_WRITE_STATUS_WRITTEN {
			unknown = append(unknown, i)
		}
	}
	if len(unknown) > 0 {
		return results, &OutcomeUnknownError{Set: set, Rows: unknown, Results: results, Attempts: attempts}
	}
	return results, nil
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// DeleteEntities removes entities' rows from a feature set, through the same
// write-through protocol as writes: a read that starts after it returns never sees the
// old values. It returns one result per entity in request order. It is not retried:
// deleting again is harmless, but a retry's "existed" would no longer say whether the
// entity held values, so the caller decides.
func (c *Client) DeleteEntities(ctx context.Context, set string, entityIDs ...string) ([]*pb.EntityDeletion, error) {
	resp, err := c.fs.DeleteEntities(ctx, &pb.DeleteEntitiesRequest{FeatureSet: set, EntityIds: entityIDs})
	return resp.GetResults(), err
}

// BatchWrite sends the rows next yields (until it returns nil, nil) on the batch lane in
// chunks of chunkSize (default 500), and returns the server's summary. It holds one
// chunk in memory.
//
// When next fails, BatchWrite cancels the stream and returns next's error (wrapped) and
// no summary: the server sees a cancellation, not the end of the batch, so it does not
// take the rows received so far as a complete batch; rows after the failure are never
// sent, while chunks already sent may have been written. It does not retry: a failed
// batch may be resent whole, safely.
func (c *Client) BatchWrite(ctx context.Context, set string, chunkSize int, next func() (*pb.FeatureRow, error)) (*pb.BatchWriteFeaturesResponse, error) {
	if chunkSize <= 0 {
		chunkSize = 500
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.fs.BatchWriteFeatures(ctx)
	if err != nil {
		return nil, err
	}
	chunk := make([]*pb.FeatureRow, 0, chunkSize)
	// send returns a non-nil error only when the stream is over: io.EOF means the server
	// ended it and CloseAndRecv tells why; anything else failed in the client.
	send := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := stream.Send(&pb.BatchWriteFeaturesRequest{FeatureSet: set, Rows: chunk})
		chunk = make([]*pb.FeatureRow, 0, chunkSize)
		return err
	}
	for {
		row, err := next()
		if err != nil {
			// Not CloseSend: a half-close tells the server the batch is complete, and it
			// would write and summarize the partial batch as if it were whole.
			cancel()
			return nil, fmt.Errorf("batch write to feature set %q: row source: %w", set, err)
		}
		if row == nil {
			break
		}
		chunk = append(chunk, row)
		if len(chunk) == chunkSize {
			if err := send(); err != nil {
				return finishBatch(stream, err)
			}
		}
	}
	if err := send(); err != nil {
		return finishBatch(stream, err)
	}
	return stream.CloseAndRecv()
}

// finishBatch reports a stream whose Send failed with sendErr.
func finishBatch(stream pb.FeatureStoreService_BatchWriteFeaturesClient, sendErr error) (*pb.BatchWriteFeaturesResponse, error) {
	if !errors.Is(sendErr, io.EOF) {
		return nil, sendErr
	}
	sum, err := stream.CloseAndRecv()
	if err == nil {
		// A summary of a batch whose rest was never sent would read as complete.
		return nil, errors.New("batch write: the server ended the batch before every row was sent")
	}
	return sum, err
}

// RowsFrom yields rows one by one, for BatchWrite.
func RowsFrom(rows []*pb.FeatureRow) func() (*pb.FeatureRow, error) {
	i := 0
	return func() (*pb.FeatureRow, error) {
		if i == len(rows) {
			return nil, nil
		}
		i++
		return rows[i-1], nil
	}
}
