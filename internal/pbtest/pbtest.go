// Package pbtest makes API messages for the tests of the code that encodes and decodes
// them by hand: random, and covering every kind of cell.
package pbtest

import (
	"fmt"
	"math"
	"math/rand/v2"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// RandomColumns is a response of n entities x nf features of random types, with every
// kind of cell: present, not found (fillers), empty strings and lists.
func RandomColumns(rng *rand.Rand, n, nf int) *pb.GetFeatureColumnsResponse {
	resp := &pb.GetFeatureColumnsResponse{}
	words := []string{"", "a", "héllo", "日本", "x\x00y"}
	for f := range nf {
		typ := pb.ValueType(1 + rng.IntN(8))
		col := &pb.FeatureColumn{Feature: "set:f" + string(rune('a'+f%26)), Type: typ}
		for range n {
			col.Statuses = append(col.Statuses, pb.FeatureStatus(rng.IntN(4)))
			col.EventTimes = append(col.EventTimes, rng.Int64N(1<<52)-1<<40)
			switch typ {
			case pb.ValueType_VALUE_TYPE_INT64:
				col.Int64Values = append(col.Int64Values, rng.Int64()-math.MaxInt64/2)
			case pb.ValueType_VALUE_TYPE_DOUBLE:
				col.DoubleValues = append(col.DoubleValues, rng.NormFloat64())
			case pb.ValueType_VALUE_TYPE_STRING:
				col.StringValues = append(col.StringValues, words[rng.IntN(len(words))])
			case pb.ValueType_VALUE_TYPE_BYTES:
				col.BytesValues = append(col.BytesValues, []byte(words[rng.IntN(len(words))]))
			case pb.ValueType_VALUE_TYPE_BOOL:
				col.BoolValues = append(col.BoolValues, rng.IntN(2) == 1)
			}
		}
		if typ >= pb.ValueType_VALUE_TYPE_FLOAT_LIST {
			col.ListOffsets = append(col.ListOffsets, 0)
			for range n {
				for range rng.IntN(4) {
					switch typ {
					case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
						col.FloatListValues = append(col.FloatListValues, rng.Float32())
					case pb.ValueType_VALUE_TYPE_INT64_LIST:
						col.Int64ListValues = append(col.Int64ListValues, -rng.Int64N(1000))
					default:
						col.StringListValues = append(col.StringListValues, words[rng.IntN(len(words))])
					}
				}
				col.ListOffsets = append(col.ListOffsets, uint32(len(col.FloatListValues)+len(col.Int64ListValues)+len(col.StringListValues)))
			}
		}
		resp.Columns = append(resp.Columns, col)
	}
	return resp
}

// DoubleColumns is fsbench's cached shape: n entities x nf double features of the set
// "b100", every cell present.
func DoubleColumns(rng *rand.Rand, n, nf int) *pb.GetFeatureColumnsResponse {
	resp := &pb.GetFeatureColumnsResponse{}
	for f := range nf {
		col := &pb.FeatureColumn{Feature: fmt.Sprintf("b100:f%d", f), Type: pb.ValueType_VALUE_TYPE_DOUBLE}
		for e := range n {
			col.Statuses = append(col.Statuses, pb.FeatureStatus_FEATURE_STATUS_PRESENT)
			col.EventTimes = append(col.EventTimes, 1_790_000_000_000_000+int64(e))
			col.DoubleValues = append(col.DoubleValues, rng.Float64())
		}
		resp.Columns = append(resp.Columns, col)
	}
	return resp
}
