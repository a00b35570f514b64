package server

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/internal/pbtest"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// domainColumns is the domain's form of a random response: what GetFeatureColumns
// returns (statuses in the domain's numbering, only the values of each column's type).
func domainColumns(resp *pb.GetFeatureColumnsResponse) ([]string, featurestore.Columns) {
	var refs []string
	var res featurestore.Columns
	for _, c := range resp.GetColumns() {
		refs = append(refs, c.GetFeature())
		col := &featurestore.Column{Type: featurestore.ValueType(c.GetType()), EventTimes: c.GetEventTimes(), Offsets: c.GetListOffsets()}
		for _, st := range c.GetStatuses() {
			col.Statuses = append(col.Statuses, featurestore.FeatureStatus(st))
		}
		switch c.GetType() {
		case pb.ValueType_VALUE_TYPE_INT64:
			col.Int64s = c.GetInt64Values()
		case pb.ValueType_VALUE_TYPE_DOUBLE:
			col.Float64s = c.GetDoubleValues()
		case pb.ValueType_VALUE_TYPE_STRING:
			col.Strings = c.GetStringValues()
		case pb.ValueType_VALUE_TYPE_BYTES:
			col.Bytes = c.GetBytesValues()
		case pb.ValueType_VALUE_TYPE_BOOL:
			col.Bools = c.GetBoolValues()
		case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
			col.Float32s = c.GetFloatListValues()
		case pb.ValueType_VALUE_TYPE_INT64_LIST:
			col.Int64s = c.GetInt64ListValues()
		case pb.ValueType_VALUE_TYPE_STRING_LIST:
			col.Strings = c.GetStringListValues()
		}
		res.Columns = append(res.Columns, col)
	}
	return refs, res
}

// sameAsProto checks that the reply's encoding is exactly proto.Marshal of the message
// columnsToProto builds from it, or fails where that fails.
func sameAsProto(t *testing.T, refs []string, res featurestore.Columns) {
	t.Helper()
	want, werr := proto.Marshal(columnsToProto(refs, res))
	got, gerr := (&columnsReply{refs: refs, res: res}).marshal()
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("proto.Marshal: %v; marshal: %v", werr, gerr)
	}
	if werr != nil {
		return
	}
	defer got.Free()
	if g := got.Materialize(); !bytes.Equal(g, want) {
		t.Fatalf("marshal wrote %d bytes that differ from proto.Marshal's %d:\n got %x\nwant %x", len(g), len(want), g, want)
	}
}

func TestColumnsReplyIsProtoMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, size := range []struct{ n, nf int }{{0, 0}, {1, 1}, {0, 3}, {1, 10}, {10, 100}, {100, 10}, {100, 100}, {7, 40}} {
		for range 10 {
			refs, res := domainColumns(pbtest.RandomColumns(rng, size.n, size.nf))
			sameAsProto(t, refs, res)
		}
	}
}

func TestColumnsReplyEdges(t *testing.T) {
	col := func(c featurestore.Column) featurestore.Columns {
		return featurestore.Columns{Columns: []*featurestore.Column{&c}}
	}
	for _, tc := range []struct {
		name string
		ref  string
		res  featurestore.Columns
	}{
		{"no columns", "", featurestore.Columns{}},
		{"an empty column with no name", "", col(featurestore.Column{})},
		{"a status the API has no number for", "s:f", col(featurestore.Column{Type: featurestore.TypeDouble, Statuses: []featurestore.FeatureStatus{200, featurestore.Expired}, EventTimes: []int64{1, 2}, Float64s: []float64{0, 0}})},
		{"empty strings and bytes are still sent", "s:s", col(featurestore.Column{Type: featurestore.TypeBytes, Bytes: [][]byte{nil, {}}})},
		{"values of other types are not sent", "s:d", col(featurestore.Column{Type: featurestore.TypeDouble, Float64s: []float64{1}, Int64s: []int64{5}, Strings: []string{"x"}, Offsets: []uint32{0, 1}})},
		{"extreme values", "s:il", col(featurestore.Column{Type: featurestore.TypeInt64List, EventTimes: []int64{-1 << 63, 1<<63 - 1, 0}, Int64s: []int64{-1}, Offsets: []uint32{0, 1<<32 - 1}})},
		{"an empty string list", "s:sl", col(featurestore.Column{Type: featurestore.TypeStringList, Strings: []string{""}, Offsets: []uint32{0, 1}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refs := make([]string, len(tc.res.Columns))
			for i := range refs {
				refs[i] = tc.ref
			}
			sameAsProto(t, refs, tc.res)
		})
	}
	for _, bad := range []struct {
		ref string
		col featurestore.Column
	}{{"\xff", featurestore.Column{}}, {"s:s", featurestore.Column{Type: featurestore.TypeString, Strings: []string{"ok", "\xc3"}}},
		{"s:sl", featurestore.Column{Type: featurestore.TypeStringList, Strings: []string{"\x80"}, Offsets: []uint32{0, 1}}}} {
		r := &columnsReply{refs: []string{bad.ref}, res: featurestore.Columns{Columns: []*featurestore.Column{&bad.col}}}
		if _, err := r.marshal(); !errors.Is(err, errInvalidUTF8) {
			t.Errorf("invalid UTF-8 in %q %+v: got %v, want errInvalidUTF8", bad.ref, bad.col, err)
		}
	}
}

func FuzzColumnsReply(f *testing.F) {
	f.Add(uint64(1), uint8(3), uint8(8))
	f.Add(uint64(2), uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, n, nf uint8) {
		refs, res := domainColumns(pbtest.RandomColumns(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), int(n%50), int(nf%50)))
		sameAsProto(t, refs, res)
	})
}

func BenchmarkColumnsReply(b *testing.B) {
	rng := rand.New(rand.NewPCG(13, 14))
	dbl := pbtest.DoubleColumns(rng, 10, 100) // fsbench's shape
	for _, in := range []struct {
		name string
		resp *pb.GetFeatureColumnsResponse
	}{{"mixed", pbtest.RandomColumns(rng, 10, 100)}, {"doubles", dbl}} {
		refs, res := domainColumns(in.resp)
		b.Run(in.name+"/columnsReply", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := (&columnsReply{refs: refs, res: res}).marshal()
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
		b.Run(in.name+"/columnsToProto+proto.Marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(columnsToProto(refs, res)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
