package server

import (
	"context"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// GetFeatureColumns serves feature values as one typed column per requested feature.
func (s *Server) GetFeatureColumns(ctx context.Context, req *pb.GetFeatureColumnsRequest) (*pb.GetFeatureColumnsResponse, error) {
	res, err := s.features.GetFeatureColumns(ctx, req.GetFeatures(), req.GetEntityIds())
	if err != nil {
		return nil, toStatus(ctx, s.logger, "GetFeatureColumns", err)
	}
	return columnsToProto(req.GetFeatures(), res), nil
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
