// Package client is the Go client of the feature store, for ML serving code and feature
// pipelines: typed value helpers, GetFeatures and the three write lanes, retries with
// backoff on UNAVAILABLE (safe for writes, because the store merges by event time and a
// repeated row is a no-op), and a streaming writer that resends unacknowledged requests
// after a reconnect.
package client

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// Options configure a Client.
type Options struct {
	// DialOptions are passed to grpc.NewClient. Without transport credentials among them
	// the connection is plaintext (fine on loopback and inside a mesh).
	DialOptions []grpc.DialOption
	// MaxAttempts bounds tries of a call answered UNAVAILABLE (default 5).
	MaxAttempts int
	// BaseBackoff is the first retry delay, doubled each time with jitter (default 50ms).
	BaseBackoff time.Duration
}

// Client talks to one feature store address. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	fs   pb.FeatureStoreServiceClient
	opts Options
}

// Dial returns a Client for target ("host:port"). It does not wait for the connection.
func Dial(target string, opts Options) (*Client, error) {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.BaseBackoff <= 0 {
		opts.BaseBackoff = 50 * time.Millisecond
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts.DialOptions...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, fs: pb.NewFeatureStoreServiceClient(conn), opts: opts}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// API returns the generated client for calls this package does not wrap.
func (c *Client) API() pb.FeatureStoreServiceClient { return c.fs }

// retry runs call until it succeeds, fails with a code other than UNAVAILABLE, runs out of
// attempts, or ctx ends.
func (c *Client) retry(ctx context.Context, call func() error) error {
	backoff := c.opts.BaseBackoff
	var err error
	for attempt := 1; ; attempt++ {
		if err = call(); status.Code(err) != codes.Unavailable || attempt >= c.opts.MaxAttempts {
			return err
		}
		sleep := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(sleep):
		}
		backoff *= 2
	}
}

// GetFeatures reads refs ("set:feature") for entityIDs, retrying on UNAVAILABLE.
func (c *Client) GetFeatures(ctx context.Context, refs, entityIDs []string) (*pb.GetFeaturesResponse, error) {
	var resp *pb.GetFeaturesResponse
	err := c.retry(ctx, func() error {
		var err error
		resp, err = c.fs.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: refs, EntityIds: entityIDs})
		return err
	})
	return resp, err
}

// Write writes rows on the on-demand lane, retrying on UNAVAILABLE (outcome unknown, and
// a retry of an applied row is reported WRITTEN).
func (c *Client) Write(ctx context.Context, set string, rows ...*pb.FeatureRow) ([]*pb.RowResult, error) {
	var resp *pb.WriteFeaturesResponse
	err := c.retry(ctx, func() error {
		var err error
		resp, err = c.fs.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: set, Rows: rows})
		return err
	})
	return resp.GetResults(), err
}

// BatchWrite sends the rows next yields (until it returns nil, nil) on the batch lane in
// chunks of chunkSize, and returns the server's summary. It holds one chunk in memory.
// It does not retry: a failed batch may be resent whole, safely.
func (c *Client) BatchWrite(ctx context.Context, set string, chunkSize int, next func() (*pb.FeatureRow, error)) (*pb.BatchWriteFeaturesResponse, error) {
	if chunkSize <= 0 {
		chunkSize = 500
	}
	stream, err := c.fs.BatchWriteFeatures(ctx)
	if err != nil {
		return nil, err
	}
	chunk := make([]*pb.FeatureRow, 0, chunkSize)
	flush := func() error {
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
			stream.CloseSend()
			return nil, err
		}
		if row == nil {
			break
		}
		chunk = append(chunk, row)
		if len(chunk) == chunkSize {
			if err := flush(); err != nil {
				break // the server ended the stream; CloseAndRecv reports why
			}
		}
	}
	if err := flush(); err != nil && !errors.Is(err, io.EOF) {
		_ = err // reported by CloseAndRecv
	}
	return stream.CloseAndRecv()
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

// Row builds a row.
func Row(entityID string, eventTime time.Time, values map[string]*pb.Value) *pb.FeatureRow {
	return &pb.FeatureRow{EntityId: entityID, EventTime: timestamppb.New(eventTime), Values: values}
}

// Typed value helpers.
func Int64(v int64) *pb.Value    { return &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: v}} }
func Double(v float64) *pb.Value { return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: v}} }
func String(v string) *pb.Value  { return &pb.Value{Kind: &pb.Value_StringValue{StringValue: v}} }
func Bytes(v []byte) *pb.Value   { return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: v}} }
func Bool(v bool) *pb.Value      { return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: v}} }
func Floats(v ...float32) *pb.Value {
	return &pb.Value{Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: v}}}
}
func Int64s(v ...int64) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Int64ListValue{Int64ListValue: &pb.Int64List{Values: v}}}
}
func Strings(v ...string) *pb.Value {
	return &pb.Value{Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: v}}}
}
