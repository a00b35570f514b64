package client

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

const (
	present  = pb.FeatureStatus_FEATURE_STATUS_PRESENT
	notFound = pb.FeatureStatus_FEATURE_STATUS_NOT_FOUND
	expired  = pb.FeatureStatus_FEATURE_STATUS_EXPIRED
)

// everyType is a feature set with one feature of each value type and a one-hour ttl.
var everyType = &pb.FeatureSet{Name: "every", EntityType: "thing", Ttl: durationpb.New(time.Hour), Features: []*pb.FeatureSpec{
	{Name: "i", Type: pb.ValueType_VALUE_TYPE_INT64},
	{Name: "d", Type: pb.ValueType_VALUE_TYPE_DOUBLE},
	{Name: "s", Type: pb.ValueType_VALUE_TYPE_STRING},
	{Name: "b", Type: pb.ValueType_VALUE_TYPE_BYTES},
	{Name: "t", Type: pb.ValueType_VALUE_TYPE_BOOL},
	{Name: "fl", Type: pb.ValueType_VALUE_TYPE_FLOAT_LIST},
	{Name: "il", Type: pb.ValueType_VALUE_TYPE_INT64_LIST},
	{Name: "sl", Type: pb.ValueType_VALUE_TYPE_STRING_LIST},
}}

func refsOf(fs *pb.FeatureSet) []string {
	var refs []string
	for _, f := range fs.GetFeatures() {
		refs = append(refs, fs.GetName()+":"+f.GetName())
	}
	return refs
}

// TestReadColumns reads every type through the real server: a present entity, one whose
// values expired, one never written, and a repeated one; then the typed views' errors.
func TestReadColumns(t *testing.T) {
	c := dial(t, startServer(t), Options{})
	ctx := testCtx(t)
	if _, err := c.ApplyFeatureSet(ctx, everyType); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	old := now.Add(-2 * time.Hour)
	if _, err := c.Write(ctx, "every",
		Row("a", now, map[string]*pb.Value{"i": Int64(-7), "d": Double(2.5), "s": String("héllo"), "b": Bytes([]byte{0, 1}), "t": Bool(true),
			"fl": Floats(0.5, 1.5), "il": Int64s(1, 2, 3), "sl": Strings("x", "")}),
		Row("old", old, map[string]*pb.Value{"i": Int64(1), "d": Double(1), "s": String("gone"), "fl": Floats(9)}),
	); err != nil {
		t.Fatal(err)
	}
	ids := []string{"a", "old", "never", "a"}
	cols, err := c.ReadColumns(ctx, refsOf(everyType), ids)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ids, cols.EntityIDs()); diff != "" {
		t.Errorf("entity ids (-want +got):\n%s", diff)
	}
	got := map[string]any{}
	statuses := map[string][]pb.FeatureStatus{}
	check := func(ref string, v any, st []pb.FeatureStatus, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		got[ref], statuses[ref] = v, st
	}
	i64, st, err := cols.Int64s("every:i")
	check("every:i", i64, st, err)
	f64, st, err := cols.Float64s("every:d")
	check("every:d", f64, st, err)
	strs, st, err := cols.Strings("every:s")
	check("every:s", strs, st, err)
	bs, st, err := cols.Bytes("every:b")
	check("every:b", bs, st, err)
	bools, st, err := cols.Bools("every:t")
	check("every:t", bools, st, err)
	fl, st, err := cols.FloatLists("every:fl")
	check("every:fl", [][]float32{fl.At(0), fl.At(1), fl.At(2), fl.At(3)}, st, err)
	il, st, err := cols.Int64Lists("every:il")
	check("every:il", [][]int64{il.At(0), il.At(1), il.At(2), il.At(3)}, st, err)
	sl, st, err := cols.StringLists("every:sl")
	check("every:sl", [][]string{sl.At(0), sl.At(1), sl.At(2), sl.At(3)}, st, err)

	// Not present: the fillers; expired and never-written cells are told apart by status.
	want := map[string]any{
		"every:i":  []int64{-7, 0, 0, -7},
		"every:d":  []float64{2.5, 0, 0, 2.5},
		"every:s":  []string{"héllo", "", "", "héllo"},
		"every:b":  [][]byte{{0, 1}, {}, {}, {0, 1}},
		"every:t":  []bool{true, false, false, true},
		"every:fl": [][]float32{{0.5, 1.5}, {}, {}, {0.5, 1.5}},
		"every:il": [][]int64{{1, 2, 3}, {}, {}, {1, 2, 3}},
		"every:sl": [][]string{{"x", ""}, {}, {}, {"x", ""}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b []byte) bool { return string(a) == string(b) })); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	for _, ref := range refsOf(everyType) {
		wantSt := []pb.FeatureStatus{present, notFound, notFound, present}
		if ref == "every:i" || ref == "every:d" || ref == "every:s" || ref == "every:fl" {
			wantSt[1] = expired
		}
		if diff := cmp.Diff(wantSt, statuses[ref]); diff != "" {
			t.Errorf("%s statuses (-want +got):\n%s", ref, diff)
		}
		times, err := cols.EventTimes(ref)
		if err != nil {
			t.Fatal(err)
		}
		wantTimes := []int64{now.UnixMicro(), 0, 0, now.UnixMicro()}
		if wantSt[1] == expired {
			wantTimes[1] = old.UnixMicro() // an expired value's time is given, its value withheld
		}
		if diff := cmp.Diff(wantTimes, times); diff != "" {
			t.Errorf("%s event times (-want +got):\n%s", ref, diff)
		}
	}

	// The views do not copy: they are the response's own arrays.
	if col, _ := cols.Column("every:d"); &col.GetDoubleValues()[0] != &f64[0] {
		t.Error("Float64s copied the response's values")
	}
	// Asking for the wrong type, or a feature the request did not name, is an error.
	var te *ColumnTypeError
	if _, _, err := cols.Float64s("every:i"); !errors.As(err, &te) || te.Type != pb.ValueType_VALUE_TYPE_INT64 || te.Want != pb.ValueType_VALUE_TYPE_DOUBLE {
		t.Errorf("Float64s of an int64 feature: %v, want a *ColumnTypeError", err)
	}
	if _, _, err := cols.FloatLists("every:sl"); !errors.As(err, &te) {
		t.Errorf("FloatLists of a string_list feature: %v, want a *ColumnTypeError", err)
	}
	if _, _, err := cols.Int64s("every:nope"); !errors.Is(err, ErrNoColumn) {
		t.Errorf("a feature not requested: %v, want ErrNoColumn", err)
	}
	if _, err := cols.Statuses("other:i"); !errors.Is(err, ErrNoColumn) {
		t.Errorf("a feature not requested: %v, want ErrNoColumn", err)
	}
}

func randomValue(rng *rand.Rand, t pb.ValueType) *pb.Value {
	n := rng.IntN(4)
	str := func() string { return fmt.Sprintf("v%d", rng.IntN(100))[:1+rng.IntN(2)] }
	switch t {
	case pb.ValueType_VALUE_TYPE_INT64:
		return Int64(rng.Int64() - rng.Int64())
	case pb.ValueType_VALUE_TYPE_DOUBLE:
		return Double(rng.NormFloat64())
	case pb.ValueType_VALUE_TYPE_STRING:
		return String(str())
	case pb.ValueType_VALUE_TYPE_BYTES:
		return Bytes([]byte(str()))
	case pb.ValueType_VALUE_TYPE_BOOL:
		return Bool(rng.IntN(2) == 1)
	case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
		v := make([]float32, n)
		for i := range v {
			v[i] = rng.Float32()
		}
		return Floats(v...)
	case pb.ValueType_VALUE_TYPE_INT64_LIST:
		v := make([]int64, n)
		for i := range v {
			v[i] = rng.Int64()
		}
		return Int64s(v...)
	default:
		v := make([]string, n)
		for i := range v {
			v[i] = str()
		}
		return Strings(v...)
	}
}

// cellFromView reads entity e's cell of ref through the typed view, as a row-wise Value
// (empty unless present).
func cellFromView(t *testing.T, cols *Columns, ref string, typ pb.ValueType, e int) *pb.Value {
	t.Helper()
	var v *pb.Value
	var st []pb.FeatureStatus
	var err error
	switch typ {
	case pb.ValueType_VALUE_TYPE_INT64:
		var x []int64
		x, st, err = cols.Int64s(ref)
		v = Int64(x[e])
	case pb.ValueType_VALUE_TYPE_DOUBLE:
		var x []float64
		x, st, err = cols.Float64s(ref)
		v = Double(x[e])
	case pb.ValueType_VALUE_TYPE_STRING:
		var x []string
		x, st, err = cols.Strings(ref)
		v = String(x[e])
	case pb.ValueType_VALUE_TYPE_BYTES:
		var x [][]byte
		x, st, err = cols.Bytes(ref)
		v = Bytes(x[e])
	case pb.ValueType_VALUE_TYPE_BOOL:
		var x []bool
		x, st, err = cols.Bools(ref)
		v = Bool(x[e])
	case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
		var x Lists[float32]
		x, st, err = cols.FloatLists(ref)
		v = Floats(x.At(e)...)
	case pb.ValueType_VALUE_TYPE_INT64_LIST:
		var x Lists[int64]
		x, st, err = cols.Int64Lists(ref)
		v = Int64s(x.At(e)...)
	case pb.ValueType_VALUE_TYPE_STRING_LIST:
		var x Lists[string]
		x, st, err = cols.StringLists(ref)
		v = Strings(x.At(e)...)
	}
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	if st[e] != present {
		return &pb.Value{}
	}
	return v
}

// TestColumnsAgreeWithRows reads random mixes of every type (present, missing and
// expired, features and entities repeated) both ways through the real server and the
// client, and requires the typed views to say what the row-wise answer says.
func TestColumnsAgreeWithRows(t *testing.T) {
	c := dial(t, startServer(t), Options{})
	ctx := testCtx(t)
	if _, err := c.ApplyFeatureSet(ctx, everyType); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(13, 13))
	var rows []*pb.FeatureRow
	for e := range 60 {
		at := time.Now().Add(-time.Minute)
		if rng.IntN(5) == 0 {
			at = at.Add(-2 * time.Hour) // beyond the ttl: EXPIRED
		}
		values := map[string]*pb.Value{}
		for _, f := range everyType.GetFeatures() {
			if rng.IntN(3) > 0 {
				values[f.GetName()] = randomValue(rng, f.GetType())
			}
		}
		if len(values) > 0 {
			rows = append(rows, Row(fmt.Sprintf("e%d", e), at, values))
		}
	}
	if _, err := c.Write(ctx, "every", rows...); err != nil {
		t.Fatal(err)
	}
	types := map[string]pb.ValueType{}
	for _, f := range everyType.GetFeatures() {
		types["every:"+f.GetName()] = f.GetType()
	}
	refs := refsOf(everyType)
	for round := range 25 {
		var want, ids []string
		for range 1 + rng.IntN(12) {
			want = append(want, refs[rng.IntN(len(refs))])
		}
		for range 1 + rng.IntN(80) {
			ids = append(ids, fmt.Sprintf("e%d", rng.IntN(75))) // e60..e74 were never written
		}
		byRow, err := c.GetFeatures(ctx, want, ids)
		if err != nil {
			t.Fatal(err)
		}
		cols, err := c.ReadColumns(ctx, want, ids)
		if err != nil {
			t.Fatal(err)
		}
		for e, er := range byRow.GetResults() {
			for f, ref := range want {
				st, _ := cols.Statuses(ref)
				times, _ := cols.EventTimes(ref)
				wantTime := er.GetEventTimes()[f].AsTime().UnixMicro()
				if er.GetEventTimes()[f] == nil {
					wantTime = 0
				}
				got := cellFromView(t, cols, ref, types[ref], e)
				if st[e] != er.GetStatuses()[f] || times[e] != wantTime || !proto.Equal(got, er.GetValues()[f]) {
					t.Fatalf("round %d, %s of %s: columns say %v at %d: %v; rows say %v at %d: %v", round, ref, ids[e],
						st[e], times[e], got, er.GetStatuses()[f], wantTime, er.GetValues()[f])
				}
			}
		}
	}
}

// TestNewColumnsRefusesMalformedResponses: the views index by entity, so a response
// whose columns do not fit the request is refused up front rather than panicking later.
func TestNewColumnsRefusesMalformedResponses(t *testing.T) {
	ok := func() *pb.FeatureColumn {
		return &pb.FeatureColumn{Feature: "s:f", Type: pb.ValueType_VALUE_TYPE_DOUBLE, Statuses: []pb.FeatureStatus{present, notFound},
			EventTimes: []int64{1, 0}, DoubleValues: []float64{1, 0}}
	}
	list := func() *pb.FeatureColumn {
		return &pb.FeatureColumn{Feature: "s:l", Type: pb.ValueType_VALUE_TYPE_INT64_LIST, Statuses: []pb.FeatureStatus{present, present},
			EventTimes: []int64{1, 1}, Int64ListValues: []int64{1, 2, 3}, ListOffsets: []uint32{0, 1, 3}}
	}
	for _, tc := range []struct {
		name  string
		col   func() *pb.FeatureColumn
		valid bool
	}{
		{"well formed", ok, true},
		{"well formed list", list, true},
		{"short statuses", func() *pb.FeatureColumn { c := ok(); c.Statuses = c.Statuses[:1]; return c }, false},
		{"short event times", func() *pb.FeatureColumn { c := ok(); c.EventTimes = nil; return c }, false},
		{"short values", func() *pb.FeatureColumn { c := ok(); c.DoubleValues = c.DoubleValues[:1]; return c }, false},
		{"values of another type", func() *pb.FeatureColumn { c := ok(); c.Int64Values, c.DoubleValues = []int64{1, 2}, nil; return c }, false},
		{"unknown type", func() *pb.FeatureColumn { c := ok(); c.Type = 99; return c }, false},
		{"missing offsets", func() *pb.FeatureColumn { c := list(); c.ListOffsets = nil; return c }, false},
		{"offsets past the values", func() *pb.FeatureColumn { c := list(); c.ListOffsets = []uint32{0, 1, 4}; return c }, false},
		{"decreasing offsets", func() *pb.FeatureColumn { c := list(); c.ListOffsets = []uint32{0, 2, 1}; return c }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewColumns(&pb.GetFeatureColumnsResponse{Columns: []*pb.FeatureColumn{tc.col()}}, []string{"a", "b"})
			if (err == nil) != tc.valid {
				t.Fatalf("NewColumns: %v, want valid = %v", err, tc.valid)
			}
		})
	}
}
