package server

import (
	"context"
	"slices"

	"google.golang.org/grpc"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// GetFeatureColumns serves feature values as one typed column per requested feature, as
// generated messages. The gRPC server does not call it: its handler (getColumnsHandler)
// serves the same read as a columnsReply, which the codec encodes without building
// messages.
func (s *Server) GetFeatureColumns(ctx context.Context, req *pb.GetFeatureColumnsRequest) (*pb.GetFeatureColumnsResponse, error) {
	r, err := s.readColumns(ctx, req)
	if err != nil {
		return nil, err
	}
	return columnsToProto(r.refs, r.res), nil
}

func (s *Server) readColumns(ctx context.Context, req *pb.GetFeatureColumnsRequest) (*columnsReply, error) {
	res, err := s.features.GetFeatureColumns(ctx, req.GetFeatures(), req.GetEntityIds())
	if err != nil {
		return nil, toStatus(ctx, s.logger, "GetFeatureColumns", err)
	}
	return &columnsReply{refs: req.GetFeatures(), res: res}, nil
}

// getColumnsHandler is the generated GetFeatureColumns handler, except that the reply is
// a *columnsReply: the interceptors see it as an opaque reply, and the server's codec
// writes it as a GetFeatureColumnsResponse.
func getColumnsHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(pb.GetFeatureColumnsRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	handler := func(ctx context.Context, req any) (any, error) {
		r, err := srv.(*Server).readColumns(ctx, req.(*pb.GetFeatureColumnsRequest))
		if err != nil {
			return nil, err // an untyped nil: a typed one would be marshalled
		}
		return r, nil
	}
	if interceptor == nil {
		return handler(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.FeatureStoreService_GetFeatureColumns_FullMethodName}, handler)
}

// serviceDesc is the generated FeatureStoreService description with getColumnsHandler
// in place of GetFeatureColumns' handler.
func serviceDesc() *grpc.ServiceDesc {
	desc := pb.FeatureStoreService_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i := range desc.Methods {
		if desc.Methods[i].MethodName == "GetFeatureColumns" {
			desc.Methods[i].Handler = getColumnsHandler
		}
	}
	return &desc
}

// columnsToProto builds the response around the domain's columns without copying their
// values: the packed arrays have the proto's element types, so the messages alias them
// (the domain hands them over read-only, and marshalling only reads). Only statuses are
// converted, into one array for the whole response; with the messages' own arrays that
// makes four allocations per response, whatever its size.
func columnsToProto(refs []string, res featurestore.Columns) *pb.GetFeatureColumnsResponse {
	nf := len(res.Columns)
	if nf == 0 {
		return &pb.GetFeatureColumnsResponse{}
	}
	ne := len(res.Columns[0].Statuses)
	msgs := make([]pb.FeatureColumn, nf)
	out := &pb.GetFeatureColumnsResponse{Columns: make([]*pb.FeatureColumn, nf)}
	statuses := make([]pb.FeatureStatus, nf*ne)
	// A table, not a switch, per cell: a response converts every cell's status.
	var toProto [featurestore.Expired + 1]pb.FeatureStatus
	for s := range toProto {
		toProto[s] = featureStatusToProto(featurestore.FeatureStatus(s))
	}
	for f, col := range res.Columns {
		m := &msgs[f]
		out.Columns[f] = m
		m.Feature = refs[f]
		m.Type = pb.ValueType(col.Type)
		st := statuses[f*ne : (f+1)*ne : (f+1)*ne]
		for e, s := range col.Statuses {
			st[e] = pb.FeatureStatus_FEATURE_STATUS_UNSPECIFIED
			if int(s) < len(toProto) {
				st[e] = toProto[s]
			}
		}
		m.Statuses = st
		m.EventTimes = col.EventTimes
		switch col.Type {
		case featurestore.TypeInt64:
			m.Int64Values = col.Int64s
		case featurestore.TypeDouble:
			m.DoubleValues = col.Float64s
		case featurestore.TypeString:
			m.StringValues = col.Strings
		case featurestore.TypeBytes:
			m.BytesValues = col.Bytes
		case featurestore.TypeBool:
			m.BoolValues = col.Bools
		case featurestore.TypeFloatList:
			m.FloatListValues, m.ListOffsets = col.Float32s, col.Offsets
		case featurestore.TypeInt64List:
			m.Int64ListValues, m.ListOffsets = col.Int64s, col.Offsets
		case featurestore.TypeStringList:
			m.StringListValues, m.ListOffsets = col.Strings, col.Offsets
		}
	}
	return out
}
