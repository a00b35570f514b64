package server

import (
	"context"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// GetFeatureColumns serves feature values as one typed column per requested feature.
func (s *Server) GetFeatureColumns(ctx context.Context, req *pb.GetFeatureColumnsRequest) (*pb.GetFeatureColumnsResponse, error) {
	res, err := s.features.GetFeatures(ctx, req.GetFeatures(), req.GetEntityIds())
	if err != nil {
		return nil, toStatus(ctx, s.logger, "GetFeatureColumns", err)
	}
	return &pb.GetFeatureColumnsResponse{Columns: columnsFromValues(req.GetFeatures(), res)}, nil
}

// columnsFromValues transposes entity-major values into columns. Each column's arrays are
// sized once, and list values are appended to one flat array per column, so a response
// costs a few allocations per feature whatever the number of entities.
func columnsFromValues(refs []string, res featurestore.Values) []*pb.FeatureColumn {
	nf := len(res.Refs)
	if nf == 0 {
		return nil
	}
	ne := len(res.Cells) / nf
	cols := make([]pb.FeatureColumn, nf)
	out := make([]*pb.FeatureColumn, nf)
	statuses := make([]pb.FeatureStatus, nf*ne)
	times := make([]int64, nf*ne)
	for f := range cols {
		c := &cols[f]
		out[f] = c
		c.Feature = refs[f]
		t := res.Types[f]
		c.Type = pb.ValueType(t)
		c.Statuses = statuses[f*ne : (f+1)*ne : (f+1)*ne]
		c.EventTimes = times[f*ne : (f+1)*ne : (f+1)*ne]
		switch t {
		case featurestore.TypeInt64:
			c.Int64Values = make([]int64, ne)
		case featurestore.TypeDouble:
			c.DoubleValues = make([]float64, ne)
		case featurestore.TypeString:
			c.StringValues = make([]string, ne)
		case featurestore.TypeBytes:
			c.BytesValues = make([][]byte, ne)
		case featurestore.TypeBool:
			c.BoolValues = make([]bool, ne)
		case featurestore.TypeFloatList, featurestore.TypeInt64List, featurestore.TypeStringList:
			c.ListOffsets = make([]uint32, ne+1)
		}
		for e := 0; e < ne; e++ {
			v := &res.Cells[e*nf+f]
			c.Statuses[e] = featureStatusToProto(v.Status)
			c.EventTimes[e] = v.EventTime
			if v.Status != featurestore.Present {
				if c.ListOffsets != nil {
					c.ListOffsets[e+1] = c.ListOffsets[e]
				}
				continue
			}
			switch t {
			case featurestore.TypeInt64:
				c.Int64Values[e] = v.Value.Int
			case featurestore.TypeDouble:
				c.DoubleValues[e] = v.Value.Float
			case featurestore.TypeString:
				c.StringValues[e] = v.Value.Str
			case featurestore.TypeBytes:
				c.BytesValues[e] = v.Value.Bytes
			case featurestore.TypeBool:
				c.BoolValues[e] = v.Value.Bool
			case featurestore.TypeFloatList:
				c.FloatListValues = append(c.FloatListValues, v.Value.Floats...)
				c.ListOffsets[e+1] = uint32(len(c.FloatListValues))
			case featurestore.TypeInt64List:
				c.Int64ListValues = append(c.Int64ListValues, v.Value.Ints...)
				c.ListOffsets[e+1] = uint32(len(c.Int64ListValues))
			case featurestore.TypeStringList:
				c.StringListValues = append(c.StringListValues, v.Value.Strs...)
				c.ListOffsets[e+1] = uint32(len(c.StringListValues))
			}
		}
	}
	return out
}
