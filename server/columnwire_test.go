package server

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dsfeatures/featurestore/internal/pbtest"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// sameAsProto checks that marshalColumns writes exactly what proto.Marshal writes, or
// fails where it fails.
func sameAsProto(t *testing.T, resp *pb.GetFeatureColumnsResponse) {
	t.Helper()
	want, werr := proto.Marshal(resp)
	got, gerr := marshalColumns(resp)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("proto.Marshal: %v; marshalColumns: %v", werr, gerr)
	}
	if werr != nil {
		return
	}
	defer got.Free()
	if g := got.Materialize(); !bytes.Equal(g, want) {
		t.Fatalf("marshalColumns wrote %d bytes that differ from proto.Marshal's %d:\n got %x\nwant %x", len(g), len(want), g, want)
	}
}

func TestMarshalColumnsIsProtoMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, size := range []struct{ n, nf int }{{0, 0}, {1, 1}, {0, 3}, {1, 10}, {10, 100}, {100, 10}, {100, 100}, {7, 40}} {
		for range 10 {
			sameAsProto(t, pbtest.RandomColumns(rng, size.n, size.nf))
		}
	}
}

func TestMarshalColumnsEdges(t *testing.T) {
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7)
	withUnknown := &pb.FeatureColumn{Feature: "s:f", Int64Values: []int64{-1}}
	withUnknown.ProtoReflect().SetUnknown(unknown)
	top := &pb.GetFeatureColumnsResponse{Columns: []*pb.FeatureColumn{{}}}
	top.ProtoReflect().SetUnknown(unknown)
	for _, tc := range []struct {
		name string
		resp *pb.GetFeatureColumnsResponse
	}{
		{"nil columns", &pb.GetFeatureColumnsResponse{}},
		{"an empty column", &pb.GetFeatureColumnsResponse{Columns: []*pb.FeatureColumn{{}}}},
		{"negative and unknown enums", &pb.GetFeatureColumnsResponse{Columns: []*pb.FeatureColumn{{Type: -3, Statuses: []pb.FeatureStatus{-1, 99}}}}},
		{"empty strings and bytes are still sent", &pb.GetFeatureColumnsResponse{Columns: []*pb.FeatureColumn{{StringValues: []string{"", ""}, BytesValues: [][]byte{nil, {}}, StringListValues: []string{""}}}}},
		{"unknown fields in a column", &pb.GetFeatureColumnsResponse{Columns: []*pb.FeatureColumn{withUnknown}}},
		{"unknown fields at the top", top},
		{"extreme values", &pb.GetFeatureColumnsResponse{Columns: []*pb.FeatureColumn{{EventTimes: []int64{-1 << 63, 1<<63 - 1, 0}, ListOffsets: []uint32{0, 1<<32 - 1}, BoolValues: []bool{true, false}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) { sameAsProto(t, tc.resp) })
	}
	for _, bad := range []*pb.FeatureColumn{{Feature: "\xff"}, {StringValues: []string{"ok", "\xc3"}}, {StringListValues: []string{"\x80"}}} {
		if _, err := marshalColumns(&pb.GetFeatureColumnsResponse{Columns: []*pb.FeatureColumn{bad}}); !errors.Is(err, errInvalidUTF8) {
			t.Errorf("invalid UTF-8 in %v: got %v, want errInvalidUTF8", bad, err)
		}
	}
}

func FuzzMarshalColumns(f *testing.F) {
	f.Add(uint64(1), uint8(3), uint8(8))
	f.Add(uint64(2), uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, n, nf uint8) {
		sameAsProto(t, pbtest.RandomColumns(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), int(n%50), int(nf%50)))
	})
}

func BenchmarkMarshalColumns(b *testing.B) {
	rng := rand.New(rand.NewPCG(13, 14))
	// fsbench's shape: 10 entities x 100 double features, all present.
	dbl := &pb.GetFeatureColumnsResponse{}
	for f := range 100 {
		col := &pb.FeatureColumn{Feature: fmt.Sprintf("b100:f%d", f), Type: pb.ValueType_VALUE_TYPE_DOUBLE}
		for e := range 10 {
			col.Statuses = append(col.Statuses, pb.FeatureStatus_FEATURE_STATUS_PRESENT)
			col.EventTimes = append(col.EventTimes, 1_790_000_000_000_000+int64(e))
			col.DoubleValues = append(col.DoubleValues, rng.Float64())
		}
		dbl.Columns = append(dbl.Columns, col)
	}
	for _, in := range []struct {
		name string
		resp *pb.GetFeatureColumnsResponse
	}{{"mixed", pbtest.RandomColumns(rng, 10, 100)}, {"doubles", dbl}} {
		b.Run(in.name+"/marshalColumns", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := marshalColumns(in.resp)
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
		b.Run(in.name+"/proto.Marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(in.resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
