package client

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dsfeatures/featurestore/internal/pbtest"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// view is what a Columns says, column by column, through its own arrays.
type view struct {
	Feature  string
	Type     pb.ValueType
	Statuses []pb.FeatureStatus
	Times    []int64
	Values   any
	Offsets  []uint32
}

func viewOf(c *Columns) []view {
	var out []view
	for i := range c.cols {
		cc := &c.cols[i]
		n := len(c.entityIDs)
		v := view{Feature: cc.feature, Type: cc.typ, Statuses: c.statusesOf(i), Times: c.times[i*n : (i+1)*n]}
		switch cc.typ {
		case pb.ValueType_VALUE_TYPE_INT64:
			v.Values = run(c.int64s, cc)
		case pb.ValueType_VALUE_TYPE_DOUBLE:
			v.Values = run(c.doubles, cc)
		case pb.ValueType_VALUE_TYPE_STRING:
			v.Values = run(c.strs, cc)
		case pb.ValueType_VALUE_TYPE_BYTES:
			v.Values = run(c.bytess, cc)
		case pb.ValueType_VALUE_TYPE_BOOL:
			v.Values = run(c.bools, cc)
		case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
			v.Values, v.Offsets = run(c.floats, cc), c.listOffsets(cc)
		case pb.ValueType_VALUE_TYPE_INT64_LIST:
			v.Values, v.Offsets = run(c.int64Lists, cc), c.listOffsets(cc)
		case pb.ValueType_VALUE_TYPE_STRING_LIST:
			v.Values, v.Offsets = run(c.strLists, cc), c.listOffsets(cc)
		}
		out = append(out, v)
	}
	return out
}

// agree checks that decoding b for n entities from the wire gives what proto.Unmarshal
// and NewColumns give, or an error where they do, and returns whether the fast path
// took b.
func agree(t *testing.T, b []byte, n int) bool {
	t.Helper()
	ids := make([]string, n)
	var want *Columns
	var resp pb.GetFeatureColumnsResponse
	werr := proto.Unmarshal(b, &resp)
	if werr == nil {
		want, werr = NewColumns(&resp, ids)
	}
	got := &Columns{entityIDs: ids}
	gerr := got.unmarshal(b)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("proto.Unmarshal and NewColumns: %v; unmarshal: %v (input %x)", werr, gerr, b)
	}
	if werr == nil {
		// NaN != NaN to cmp: compare floats by their bits.
		bits := cmp.Options{cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }),
			cmp.Comparer(func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }),
			cmpopts.EquateEmpty()}
		if diff := cmp.Diff(viewOf(want), viewOf(got), bits); diff != "" {
			t.Fatalf("the wire decoding differs from proto.Unmarshal's (-want +got):\n%s", diff)
		}
		for ref, i := range want.byRef {
			if got.byRef[ref] != i {
				t.Fatalf("ref %q: column %d, want %d", ref, got.byRef[ref], i)
			}
		}
	}
	scratch := &Columns{entityIDs: ids}
	return scratch.decodeWire(b)
}

func TestUnmarshalColumnsAgreesWithProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []struct{ n, nf int }{{0, 0}, {1, 1}, {0, 3}, {1, 10}, {10, 100}, {100, 10}, {7, 40}} {
		for range 20 {
			b, err := proto.Marshal(pbtest.RandomColumns(rng, size.n, size.nf))
			if err != nil {
				t.Fatal(err)
			}
			if !agree(t, b, size.n) {
				t.Fatalf("%dx%d: the fast path refused what the server sends", size.n, size.nf)
			}
		}
	}
}

// TestUnmarshalColumnsEdges covers encodings the server never sends, which must still
// decode exactly as protobuf and NewColumns decode them (through the fallback), and the
// corrupt or misshapen ones, which must fail as they fail there.
func TestUnmarshalColumnsEdges(t *testing.T) {
	col := func(fields ...[]byte) []byte {
		var m []byte
		for _, f := range fields {
			m = append(m, f...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), m)
	}
	packed := func(num protowire.Number, vs ...uint64) []byte {
		var p []byte
		for _, v := range vs {
			p = protowire.AppendVarint(p, v)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), p)
	}
	raw := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	str := func(num protowire.Number, s string) []byte { return raw(num, []byte(s)) }
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	// Two entities: a double column, and the fields every column needs.
	name, dbl, st, times := str(1, "s:d"), varint(2, 2), packed(3, 1, 2), packed(4, 5, 0)
	twoDoubles := raw(6, make([]byte, 16))
	for _, tc := range []struct {
		name string
		in   []byte
		fast bool // the fast path takes it
	}{
		{"no columns", nil, true},
		{"a double column", col(name, dbl, st, times, twoDoubles), true},
		{"fields out of order", col(twoDoubles, times, st, dbl, name), true},
		{"packed fields split in two", col(name, dbl, packed(3, 1), packed(3, 2), times, raw(6, make([]byte, 8)), raw(6, make([]byte, 8))), true},
		{"feature given twice: the last wins", col(str(1, "a:x"), name, dbl, st, times, twoDoubles), true},
		{"the same ref twice", cat(col(name, dbl, st, times, twoDoubles), col(name, dbl, st, times, twoDoubles)), true},
		{"values of another type as well", col(name, dbl, st, times, twoDoubles, packed(5, 1, 2, 3)), true},
		{"out-of-range statuses", col(name, dbl, packed(3, 1<<40, 7), times, twoDoubles), true},
		{"bytes and string lists", cat(col(str(1, "s:b"), varint(2, 4), st, times, str(8, ""), str(8, "\x00\x01")),
			col(str(1, "s:sl"), varint(2, 8), st, times, str(12, "x"), str(12, ""), packed(13, 0, 1, 2))), true},
		{"a negative type", col(name, varint(2, math.MaxUint64), st, times, twoDoubles), false},
		{"an unknown type", col(name, varint(2, 99), st, times, twoDoubles), false},
		{"no type", col(name, st, times, twoDoubles), false},
		{"one status short", col(name, dbl, packed(3, 1), times, twoDoubles), false},
		{"one event time short", col(name, dbl, st, packed(4, 5), twoDoubles), false},
		{"one value short", col(name, dbl, st, times, raw(6, make([]byte, 8))), false},
		{"list offsets past the values", col(str(1, "s:il"), varint(2, 7), st, times, packed(11, 1), packed(13, 0, 1, 2)), false},
		{"decreasing list offsets", col(str(1, "s:il"), varint(2, 7), st, times, packed(11, 1, 2), packed(13, 0, 2, 1)), false},
		{"unpacked repeated scalar", col(name, dbl, varint(3, 1), varint(3, 2), times, twoDoubles), false},
		{"unknown field in a column", col(name, dbl, st, times, twoDoubles, varint(14, 1)), false},
		{"unknown top-level field", varint(2, 1), false},
		{"invalid UTF-8 in a feature", col(str(1, "\xff"), dbl, st, times, twoDoubles), false},
		{"invalid UTF-8 in a string value", col(name, varint(2, 3), st, times, str(7, "ok"), str(7, "\xc3")), false},
		{"truncated column", col(name, dbl, st, times, twoDoubles)[:9], false},
		{"packed varint cut short", col(name, dbl, st, raw(4, []byte{5, 0x80}), twoDoubles), false},
		{"overlong varint", col(name, dbl, st, raw(4, []byte{5, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}), twoDoubles), false},
		{"doubles not a multiple of 8", col(name, dbl, st, times, raw(6, make([]byte, 15))), false},
		{"floats not a multiple of 4", col(str(1, "s:fl"), varint(2, 6), st, times, raw(10, make([]byte, 6)), packed(13, 0, 0, 1)), false},
		{"wrong wire type for the feature", col(varint(1, 5), dbl, st, times, twoDoubles), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if fast := agree(t, tc.in, 2); fast != tc.fast {
				t.Errorf("fast path took it: %v, want %v", fast, tc.fast)
			}
		})
	}
}

// TestDecodeWireAllocations holds the wire decoding to a bound per response, not per
// column: the point of it.
func TestDecodeWireAllocations(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	b, err := proto.Marshal(pbtest.RandomColumns(rng, 10, 100))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 10)
	allocs := testing.AllocsPerRun(50, func() {
		c := &Columns{entityIDs: ids}
		if !c.decodeWire(b) {
			t.Fatal("fast path refused a marshalled response")
		}
	})
	if allocs > 20 {
		t.Errorf("decodeWire: %.0f allocations for 100 columns, want at most 20 (one per element type, not per column)", allocs)
	}
	generic := testing.AllocsPerRun(50, func() {
		var resp pb.GetFeatureColumnsResponse
		if err := proto.Unmarshal(b, &resp); err != nil {
			t.Fatal(err)
		}
		if _, err := NewColumns(&resp, ids); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations per 10x100 response: %.0f; proto.Unmarshal and NewColumns %.0f", allocs, generic)
}

func FuzzUnmarshalColumns(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, size := range []struct{ n, nf int }{{1, 1}, {3, 8}, {2, 3}} {
		b, err := proto.Marshal(pbtest.RandomColumns(rng, size.n, size.nf))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(size.n))
	}
	f.Fuzz(func(t *testing.T, b []byte, n uint8) { agree(t, b, int(n%8)) })
}

func BenchmarkUnmarshalColumns(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	mixed, err := proto.Marshal(pbtest.RandomColumns(rng, 10, 100))
	if err != nil {
		b.Fatal(err)
	}
	dbl := pbtest.DoubleColumns(rng, 10, 100) // fsbench's shape
	doubles, err := proto.Marshal(dbl)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, 10)
	for _, in := range []struct {
		name string
		data []byte
	}{{"mixed", mixed}, {"doubles", doubles}} {
		b.Run(in.name+"/wire", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := &Columns{entityIDs: ids}
				if err := c.unmarshal(in.data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(in.name+"/proto.Unmarshal+NewColumns", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var resp pb.GetFeatureColumnsResponse
				if err := proto.Unmarshal(in.data, &resp); err != nil {
					b.Fatal(err)
				}
				if _, err := NewColumns(&resp, ids); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
