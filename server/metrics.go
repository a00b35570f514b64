package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dsfeatures/featurestore/featurestore"
)

// Metrics receives what the handlers observe.
type Metrics interface {
	// RPC records one finished call.
	RPC(ctx context.Context, method string, code codes.Code, d time.Duration)
	// Rows counts row outcomes per lane ("ondemand", "stream", "batch").
	Rows(ctx context.Context, lane string, written, stale, rejected int)
}

type nopMetrics struct{}

func (nopMetrics) RPC(context.Context, string, codes.Code, time.Duration) {}
func (nopMetrics) Rows(context.Context, string, int, int, int)            {}

func countRows(ctx context.Context, m Metrics, lane string, results []featurestore.RowResult) {
	var w, st, r int
	for _, res := range results {
		switch res.Status {
		case featurestore.Written:
			w++
		case featurestore.Stale:
			st++
		default:
			r++
		}
	}
	m.Rows(ctx, lane, w, st, r)
}

func metricsUnary(m Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		m.RPC(ctx, info.FullMethod, status.Code(err), time.Since(start))
		return resp, err
	}
}

func metricsStream(m Metrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		m.RPC(ss.Context(), info.FullMethod, status.Code(err), time.Since(start))
		return err
	}
}
