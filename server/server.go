// Package server exposes the feature store over gRPC: the FeatureStoreService and
// GdprService handlers, the mapping of domain errors to status codes, interceptors,
// the standard health service and server reflection.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/ingest"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// Features is what the handlers need from the domain; *featurestore.Service implements it.
type Features interface {
	ApplyFeatureSet(ctx context.Context, fs featurestore.FeatureSet) (featurestore.FeatureSet, error)
	GetFeatureSet(ctx context.Context, name string) (featurestore.FeatureSet, error)
	ListFeatureSets(ctx context.Context, pageToken string, pageSize int) ([]featurestore.FeatureSet, string, error)
	GetFeatures(ctx context.Context, refs []string, entityIDs []string) (featurestore.Values, error)
	GetFeatureColumns(ctx context.Context, refs []string, entityIDs []string) (featurestore.Columns, error)
	WriteFeatures(ctx context.Context, set string, rows []featurestore.WriteRow) ([]featurestore.RowResult, error)
	DeleteEntities(ctx context.Context, set string, entityIDs []string) ([]featurestore.EntityDeletion, error)
	DeleteFeatureSet(ctx context.Context, name string) (featurestore.FeatureSet, error)
}

// Server implements FeatureStoreService.
type Server struct {
	pb.UnimplementedFeatureStoreServiceServer
	features Features
	lanes    ingest.Writer
	logger   *slog.Logger
	opts     Options
}

var _ pb.FeatureStoreServiceServer = (*Server)(nil)

// Options tune the handlers. Zero values take the lanes' defaults.
type Options struct {
	// StreamInFlight and BatchInFlight bound the requests (sub-chunks) each stream
	// writes at once; beyond them the server stops reading and flow control pushes back.
	StreamInFlight int
	BatchInFlight  int
	// Metrics receives RPC and per-lane row counts (default: discarded).
	Metrics Metrics
	// Auth, when authentication is on, filters the registry listing to the sets the
	// caller may read.
	Auth *Auth
	// RPCTimeout is the deadline of a unary RPC whose client set none (0: none).
	RPCTimeout time.Duration
}

// Domain is everything the handlers use; *featurestore.Service implements it.
type Domain interface {
	Features
	ingest.Writer
}

// New returns a Server over the domain.
func New(d Domain, logger *slog.Logger, opts Options) *Server {
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	return &Server{features: d, lanes: d, logger: logger, opts: opts}
}

// GRPC is a configured gRPC server with the feature store, health and reflection.
type GRPC struct {
	*grpc.Server
	Health *health.Server
}

// NewGRPC builds the gRPC server: handlers, interceptors, health (SERVING for "" and both
// services) and reflection, so grpcurl works without proto files. g may be nil: the GDPR
// RPCs then answer Unimplemented.
func NewGRPC(s *Server, g *Gdpr, logger *slog.Logger, opts ...grpc.ServerOption) *GRPC {
	opts = append(append([]grpc.ServerOption{
		// Recovery is innermost, so the metrics and deadline see a panic as INTERNAL.
		grpc.ChainUnaryInterceptor(deadlineUnary(s.opts.RPCTimeout), metricsUnary(s.opts.Metrics), recovery.UnaryServerInterceptor(recoverPanics(logger))),
		grpc.ChainStreamInterceptor(metricsStream(s.opts.Metrics), recovery.StreamServerInterceptor(recoverPanics(logger))),
	}, codecOptions()...), opts...)
	if g == nil {
		g = NewGdpr(nil, logger)
	}
	srv := grpc.NewServer(opts...)
	srv.RegisterService(serviceDesc(), s)
	pb.RegisterGdprServiceServer(srv, g)
	h := health.NewServer()
	healthpb.RegisterHealthServer(srv, h)
	for _, name := range []string{"", pb.FeatureStoreService_ServiceDesc.ServiceName, pb.GdprService_ServiceDesc.ServiceName} {
		h.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	reflection.Register(srv)
	return &GRPC{Server: srv, Health: h}
}

// errServerDeadline is the cause of a call cut short by the server's own deadline.
var errServerDeadline = errors.New("the server's deadline for this call passed (-rpc-timeout)")

// deadlineUnary gives a unary call without a client deadline the server's own, so that
// nothing waits forever on a store that stopped answering. When it passes, the call is
// UNAVAILABLE (see toStatus): the client did not ask for a deadline, so it should retry.
func deadlineUnary(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if _, ok := ctx.Deadline(); ok || d <= 0 {
			return handler(ctx, req)
		}
		ctx, cancel := context.WithTimeoutCause(ctx, d, errServerDeadline)
		defer cancel()
		return handler(ctx, req)
	}
}

// recoverPanics makes a panicking handler answer INTERNAL with the same ErrorInfo as any
// other internal error (newStatus), and logs the panic with its stack: one bad request
// must neither take the process down nor tell the client what went wrong.
func recoverPanics(logger *slog.Logger) recovery.Option {
	return recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		logger.ErrorContext(ctx, "panic in handler", "method", method, "panic", p, "stack", string(debug.Stack()))
		return newStatus(codes.Internal, featurestore.ReasonInternal, "", "internal error", 0)
	})
}

// ApplyFeatureSet creates or evolves a feature set.
func (s *Server) ApplyFeatureSet(ctx context.Context, req *pb.ApplyFeatureSetRequest) (*pb.ApplyFeatureSetResponse, error) {
	if req.GetFeatureSet() == nil {
		return nil, toStatus(ctx, s.logger, "ApplyFeatureSet", featurestore.Invalid("feature_set", "is required"))
	}
	for i, f := range req.GetFeatureSet().GetFeatures() {
		if !featurestore.ValueType(f.GetType()).Valid() {
			return nil, toStatus(ctx, s.logger, "ApplyFeatureSet", featurestore.Invalid(fmt.Sprintf("feature_set.features[%d].type", i), "a known value type is required"))
		}
	}
	fs, err := s.features.ApplyFeatureSet(ctx, featureSetFromProto(req.GetFeatureSet()))
	if err != nil {
		return nil, toStatus(ctx, s.logger, "ApplyFeatureSet", err)
	}
	return &pb.ApplyFeatureSetResponse{FeatureSet: featureSetToProto(fs)}, nil
}

// GetFeatureSet returns one feature set.
func (s *Server) GetFeatureSet(ctx context.Context, req *pb.GetFeatureSetRequest) (*pb.GetFeatureSetResponse, error) {
	fs, err := s.features.GetFeatureSet(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.logger, "GetFeatureSet", err)
	}
	return &pb.GetFeatureSetResponse{FeatureSet: featureSetToProto(fs)}, nil
}

// ListFeatureSets returns a page of feature sets.
func (s *Server) ListFeatureSets(ctx context.Context, req *pb.ListFeatureSetsRequest) (*pb.ListFeatureSetsResponse, error) {
	sets, next, err := s.features.ListFeatureSets(ctx, req.GetPageToken(), int(req.GetPageSize()))
	if err != nil {
		return nil, toStatus(ctx, s.logger, "ListFeatureSets", err)
	}
	sets = readable(ctx, s.opts.Auth, sets)
	out := &pb.ListFeatureSetsResponse{FeatureSets: make([]*pb.FeatureSet, len(sets)), NextPageToken: next}
	for i, fs := range sets {
		out.FeatureSets[i] = featureSetToProto(fs)
	}
	return out, nil
}

// GetFeatures serves feature values.
func (s *Server) GetFeatures(ctx context.Context, req *pb.GetFeaturesRequest) (*pb.GetFeaturesResponse, error) {
	res, err := s.features.GetFeatures(ctx, req.GetFeatures(), req.GetEntityIds())
	if err != nil {
		return nil, toStatus(ctx, s.logger, "GetFeatures", err)
	}
	nf, values := len(res.Refs), res.Cells
	ids := req.GetEntityIds()
	out := &pb.GetFeaturesResponse{Features: req.GetFeatures(), Results: make([]*pb.EntityResult, len(ids))}
	// Messages are allocated in bulk, one array per kind, rather than one by one: the
	// allocation count per response stays constant whatever its size.
	ers := make([]pb.EntityResult, len(ids))
	statuses := make([]pb.FeatureStatus, len(values))
	vals := make([]*pb.Value, len(values))
	times := make([]*timestamppb.Timestamp, len(values))
	tsArena := make([]timestamppb.Timestamp, len(values))
	arena := newValueArena(len(values))
	for e, id := range ids {
		er := &ers[e]
		er.EntityId = id
		lo, hi := e*nf, (e+1)*nf
		er.Statuses, er.Values, er.EventTimes = statuses[lo:hi:hi], vals[lo:hi:hi], times[lo:hi:hi]
		for f := 0; f < nf; f++ {
			v := &values[lo+f]
			er.Statuses[f] = featureStatusToProto(v.Status)
			if v.Status == featurestore.Present {
				er.Values[f] = arena.value(v.Value)
			} else {
				er.Values[f] = arena.empty()
			}
			if v.EventTime != 0 {
				ts := &tsArena[lo+f]
				ts.Seconds, ts.Nanos = v.EventTime/1e6, int32(v.EventTime%1e6)*1000
				er.EventTimes[f] = ts
			}
		}
		out.Results[e] = er
	}
	return out, nil
}

// WriteFeatures is the on-demand lane.
func (s *Server) WriteFeatures(ctx context.Context, req *pb.WriteFeaturesRequest) (*pb.WriteFeaturesResponse, error) {
	rows, err := rowsFromProto("rows", req.GetRows())
	if err != nil {
		return nil, toStatus(ctx, s.logger, "WriteFeatures", err)
	}
	results, err := s.features.WriteFeatures(ctx, req.GetFeatureSet(), rows)
	if err != nil {
		return nil, toStatus(ctx, s.logger, "WriteFeatures", err)
	}
	countRows(ctx, s.opts.Metrics, "ondemand", results)
	out := &pb.WriteFeaturesResponse{Results: make([]*pb.RowResult, len(results))}
	for i, r := range results {
		out.Results[i] = &pb.RowResult{Status: writeStatusToProto(r.Status), Version: r.Version, Error: r.Error, Reason: r.Reason}
	}
	return out, nil
}

// DeleteEntities removes entities' rows through the write-through protocol.
func (s *Server) DeleteEntities(ctx context.Context, req *pb.DeleteEntitiesRequest) (*pb.DeleteEntitiesResponse, error) {
	dels, err := s.features.DeleteEntities(ctx, req.GetFeatureSet(), req.GetEntityIds())
	if err != nil {
		return nil, toStatus(ctx, s.logger, "DeleteEntities", err)
	}
	out := &pb.DeleteEntitiesResponse{Results: make([]*pb.EntityDeletion, len(dels))}
	for i, d := range dels {
		out.Results[i] = &pb.EntityDeletion{EntityId: d.EntityID, Existed: d.Existed, Version: d.Version}
	}
	return out, nil
}

// DeleteFeatureSet retires a feature set.
func (s *Server) DeleteFeatureSet(ctx context.Context, req *pb.DeleteFeatureSetRequest) (*pb.DeleteFeatureSetResponse, error) {
	fs, err := s.features.DeleteFeatureSet(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.logger, "DeleteFeatureSet", err)
	}
	return &pb.DeleteFeatureSetResponse{FeatureSet: featureSetToProto(fs)}, nil
}
