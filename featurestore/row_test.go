package featurestore

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRowRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		row  Row
	}{
		{"empty", Row{Cells: []Cell{}}},
		{"every type", Row{Cells: []Cell{
			{Name: "a", EventTime: 1, Value: Value{Type: TypeInt64, Int: -42}},
			{Name: "b", EventTime: 2, Value: Value{Type: TypeDouble, Float: math.Pi}},
			{Name: "c", EventTime: 3, Value: Value{Type: TypeString, Str: "héllo|:,"}},
			{Name: "d", EventTime: 4, Value: Value{Type: TypeBytes, Bytes: []byte{0, 1, 255}}},
			{Name: "e", EventTime: 5, Value: Value{Type: TypeBool, Bool: true}},
			{Name: "f", EventTime: 6, Value: Value{Type: TypeFloatList, Floats: []float32{1.5, -2}}},
			{Name: "g", EventTime: 7, Value: Value{Type: TypeInt64List, Ints: []int64{math.MinInt64, math.MaxInt64}}},
			{Name: "h", EventTime: 8, Value: Value{Type: TypeStringList, Strs: []string{"", "x"}}},
		}}},
		{"a deleted entity's floor", Row{Cells: []Cell{}, Floor: 1_795_000_000_000_000}},
		{"floor and cells", Row{Floor: 5, Cells: []Cell{{Name: "a", EventTime: 9, Value: Value{Type: TypeInt64, Int: 1}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendRow(nil, tc.row)
			got, err := DecodeRow(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.row, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRowRejectsCorruption(t *testing.T) {
	good := AppendRow(nil, Row{Cells: []Cell{{Name: "a", EventTime: 1, Value: Value{Type: TypeString, Str: "xyz"}}}})
	tests := map[string][]byte{
		"empty":          nil,
		"wrong format":   append([]byte{9}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"huge count":     {rowFormat, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"unknown type":   {rowFormat, 1, 1, 'a', 2, 99},
		"zero floor":     {rowFormatFloor, 0, 0},
		"unsorted": AppendRow(nil, Row{Cells: []Cell{
			{Name: "b", EventTime: 1, Value: Value{Type: TypeBool}},
			{Name: "a", EventTime: 1, Value: Value{Type: TypeBool}},
		}}),
	}
	for name, b := range tests {
		if _, err := DecodeRow(b); err == nil {
			t.Errorf("%s: DecodeRow accepted % x", name, b)
		}
	}
}

func FuzzDecodeRow(f *testing.F) {
	f.Add(AppendRow(nil, Row{Cells: []Cell{{Name: "a", EventTime: 1, Value: Value{Type: TypeFloatList, Floats: []float32{1}}}}}))
	f.Add([]byte{rowFormat, 0})
	f.Add(AppendRow(nil, Row{Floor: 77, Cells: []Cell{{Name: "b", EventTime: 80, Value: Value{Type: TypeBool, Bool: true}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRow(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes: the encoding is canonical.
		if again := AppendRow(nil, r); string(again) != string(b) {
			t.Fatalf("re-encoding differs:\n% x\n% x", b, again)
		}
	})
}

// TestMergeBelowFloor: after an entity delete, values at or before the deleted ones'
// newest event time are stale (a retried write cannot resurrect them); newer ones apply.
func TestMergeBelowFloor(t *testing.T) {
	r := Row{Floor: 100}
	out := r.Merge([]Cell{
		{Name: "a", EventTime: 100, Value: Value{Type: TypeInt64, Int: 1}},
		{Name: "b", EventTime: 101, Value: Value{Type: TypeInt64, Int: 2}},
	})
	if out.Applied != 1 || len(out.Stale) != 1 || out.Stale[0] != "a" || len(r.Cells) != 1 || r.Cells[0].Name != "b" {
		t.Fatalf("merge below the floor: %+v, row %+v", out, r)
	}
}

func TestMerge(t *testing.T) {
	iv := func(n int64) Value { return Value{Type: TypeInt64, Int: n} }
	stored := func() Row {
		return Row{Cells: []Cell{{Name: "a", EventTime: 10, Value: iv(1)}, {Name: "c", EventTime: 10, Value: iv(3)}}}
	}
	tests := []struct {
		name     string
		incoming []Cell
		want     MergeOutcome
		wantRow  Row
	}{
		{"newer wins", []Cell{{Name: "a", EventTime: 11, Value: iv(9)}}, MergeOutcome{Applied: 1},
			Row{Cells: []Cell{{Name: "a", EventTime: 11, Value: iv(9)}, {Name: "c", EventTime: 10, Value: iv(3)}}}},
		{"older is stale", []Cell{{Name: "a", EventTime: 9, Value: iv(9)}}, MergeOutcome{Stale: []string{"a"}}, stored()},
		{"same time same value is a no-op", []Cell{{Name: "a", EventTime: 10, Value: iv(1)}}, MergeOutcome{Same: 1}, stored()},
		{"same time other value is stale", []Cell{{Name: "a", EventTime: 10, Value: iv(2)}}, MergeOutcome{Stale: []string{"a"}}, stored()},
		{"new feature is added in order", []Cell{{Name: "b", EventTime: 1, Value: iv(2)}}, MergeOutcome{Applied: 1},
			Row{Cells: []Cell{{Name: "a", EventTime: 10, Value: iv(1)}, {Name: "b", EventTime: 1, Value: iv(2)}, {Name: "c", EventTime: 10, Value: iv(3)}}}},
		{"per feature", []Cell{{Name: "a", EventTime: 5, Value: iv(5)}, {Name: "c", EventTime: 15, Value: iv(5)}}, MergeOutcome{Applied: 1, Stale: []string{"a"}},
			Row{Cells: []Cell{{Name: "a", EventTime: 10, Value: iv(1)}, {Name: "c", EventTime: 15, Value: iv(5)}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := stored()
			got := r.Merge(tc.incoming)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRow, r); diff != "" {
				t.Errorf("row (-want +got):\n%s", diff)
			}
		})
	}
}

// A retry of exactly the same values is a no-op, also for NaN (found by FuzzLookupCells:
// slices.Equal said NaN differs from itself, so a retried embedding was STALE).
func TestMergeRetryWithNaN(t *testing.T) {
	for _, v := range []Value{
		{Type: TypeFloatList, Floats: []float32{1, float32(math.NaN())}},
		{Type: TypeDouble, Float: math.NaN()},
	} {
		r := Row{}
		r.Merge([]Cell{{Name: "e", EventTime: 5, Value: v}})
		if got := r.Merge([]Cell{{Name: "e", EventTime: 5, Value: v}}); got.Same != 1 || len(got.Stale) != 0 {
			t.Errorf("%s retry: %+v, want a no-op", v.Type, got)
		}
	}
}

func TestEvolve(t *testing.T) {
	base := FeatureSet{Name: "s", EntityType: "user", Version: 3, Features: []FeatureSpec{{Name: "a", Type: TypeInt64}}}
	with := func(mod func(*FeatureSet)) FeatureSet {
		fs := base
		fs.Features = append([]FeatureSpec(nil), base.Features...)
		mod(&fs)
		return fs
	}
	tests := []struct {
		name        string
		next        FeatureSet
		wantChanged bool
		wantVersion int64
		wantKind    Kind
		wantErr     bool
	}{
		{"identical", with(func(*FeatureSet) {}), false, 3, 0, false},
		{"add feature", with(func(fs *FeatureSet) { fs.Features = append(fs.Features, FeatureSpec{Name: "b", Type: TypeBool}) }), true, 4, 0, false},
		{"change ttl", with(func(fs *FeatureSet) { fs.TTL = 1 }), true, 4, 0, false},
		{"change type", with(func(fs *FeatureSet) { fs.Features[0].Type = TypeString }), false, 0, KindFailedPrecondition, true},
		{"remove feature", with(func(fs *FeatureSet) { fs.Features = []FeatureSpec{{Name: "b", Type: TypeBool}} }), false, 0, KindFailedPrecondition, true},
		{"change entity type", with(func(fs *FeatureSet) { fs.EntityType = "rider" }), false, 0, KindFailedPrecondition, true},
		{"change personal data", with(func(fs *FeatureSet) { fs.PersonalData = true }), false, 0, KindFailedPrecondition, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := Evolve(base, tc.next)
			if tc.wantErr {
				if ErrorKind(err) != tc.wantKind || err == nil {
					t.Fatalf("err %v, want kind %v", err, tc.wantKind)
				}
				return
			}
			if err != nil || changed != tc.wantChanged || out.Version != tc.wantVersion {
				t.Fatalf("changed=%v version=%d err=%v, want %v %d nil", changed, out.Version, err, tc.wantChanged, tc.wantVersion)
			}
		})
	}
}

func TestFeatureSetValidate(t *testing.T) {
	ok := FeatureSet{Name: "s", EntityType: "user", Features: []FeatureSpec{{Name: "a", Type: TypeInt64}}}
	tests := []struct {
		name      string
		mod       func(*FeatureSet)
		wantField string
	}{
		{"valid", func(*FeatureSet) {}, ""},
		{"no name", func(fs *FeatureSet) { fs.Name = "" }, "feature_set.name"},
		{"colon in name", func(fs *FeatureSet) { fs.Name = "a:b" }, "feature_set.name"},
		{"hash in name", func(fs *FeatureSet) { fs.Name = "a#b" }, "feature_set.name"},
		{"no entity type", func(fs *FeatureSet) { fs.EntityType = "" }, "feature_set.entity_type"},
		{"no features", func(fs *FeatureSet) { fs.Features = nil }, "feature_set.features"},
		{"duplicate feature", func(fs *FeatureSet) { fs.Features = append(fs.Features, fs.Features[0]) }, "feature_set.features[1].name"},
		{"no type", func(fs *FeatureSet) { fs.Features = []FeatureSpec{{Name: "a"}} }, "feature_set.features[0].type"},
		{"negative ttl", func(fs *FeatureSet) { fs.TTL = -1 }, "feature_set.ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := ok
			fs.Features = append([]FeatureSpec(nil), ok.Features...)
			tc.mod(&fs)
			err := fs.Validate()
			var fe *Error
			switch {
			case tc.wantField == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.wantField != "" && (!asError(err, &fe) || fe.Field != tc.wantField || fe.Kind != KindInvalid):
				t.Fatalf("err %v, want KindInvalid on %s", err, tc.wantField)
			}
		})
	}
}

func asError(err error, fe **Error) bool {
	e, ok := err.(*Error)
	*fe = e
	return ok
}

func FuzzParseFeatureRef(f *testing.F) {
	for _, s := range []string{"set:feature", "a:b:c", ":", "", "s:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseFeatureRef("f", s)
		if err != nil {
			if ErrorKind(err) != KindInvalid {
				t.Fatalf("error of kind %v, want KindInvalid", ErrorKind(err))
			}
			return
		}
		if r.String() != s {
			t.Fatalf("parsed %q as %q", s, r.String())
		}
	})
}

// FuzzLookupCells checks the selective decoder against the full one: on any input it must
// not panic, and on a valid row it must find exactly the cells DecodeRow finds.
func FuzzLookupCells(f *testing.F) {
	f.Add(AppendRow(nil, Row{Cells: []Cell{
		{Name: "a", EventTime: 1, Value: Value{Type: TypeStringList, Strs: []string{"x"}}},
		{Name: "b", EventTime: 2, Value: Value{Type: TypeFloatList, Floats: []float32{1}}},
		{Name: "c", EventTime: 3, Value: Value{Type: TypeInt64List, Ints: []int64{1, 2}}},
	}}), "b")
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		names := []string{name, "a", "c", name}
		sort.Strings(names)
		out := make([]Cell, len(names))
		found := make([]bool, len(names))
		err := LookupCells(b, names, out, found)
		row, derr := DecodeRow(b)
		if derr != nil {
			return
		}
		if err != nil {
			t.Fatalf("LookupCells failed on a valid row: %v", err)
		}
		for i, n := range names {
			want, ok := row.Cell(n)
			if ok != found[i] || (ok && !want.Value.Equal(out[i].Value)) || (ok && want.EventTime != out[i].EventTime) {
				t.Fatalf("%q: found %v %+v, DecodeRow says %v %+v", n, found[i], out[i], ok, want)
			}
		}
	})
}

// FuzzValidateRow feeds arbitrary rows to the validator: it must not panic, must answer
// only KindInvalid naming a field, and must never echo the subject id (privacy in errors).
func FuzzValidateRow(f *testing.F) {
	f.Add("e1", "subject-secret", int64(1700000000000000), "n", uint8(TypeInt64), true)
	f.Add("", "", int64(0), "", uint8(0), false)
	set := FeatureSet{Name: "s", EntityType: "u", PersonalData: true, Features: []FeatureSpec{{Name: "n", Type: TypeInt64}, {Name: "tags", Type: TypeStringList}}}
	f.Fuzz(func(t *testing.T, entity, subject string, micros int64, feature string, typ uint8, personal bool) {
		set.PersonalData = personal
		r := WriteRow{EntityID: entity, SubjectID: subject, Values: map[string]Value{feature: {Type: ValueType(typ)}}}
		if micros != 0 {
			r.EventTime = time.UnixMicro(micros)
		}
		err := ValidateRow(&set, "rows[0]", &r, RowLimits{Now: time.Unix(1_800_000_000, 0), MaxFutureSkew: time.Hour})
		if err == nil {
			return
		}
		var fe *Error
		if !asError(err, &fe) || fe.Kind != KindInvalid || !strings.HasPrefix(fe.Field, "rows[0].") {
			t.Fatalf("error %v: want KindInvalid naming a field of rows[0]", err)
		}
		// Short subjects occur in any message ("rows"); the request's own names may contain it.
		if len(subject) >= 12 && !strings.Contains(feature, subject) && !strings.Contains(entity, subject) && strings.Contains(err.Error(), subject) {
			t.Fatalf("error echoes the subject id: %v", err)
		}
	})
}

// BenchmarkMerge merges rows the way a first write of a wide feature set does (every
// feature new to the row) and the way later writes do (every feature already there).
// A new feature is inserted where the binary search found its place, so filling a row
// of n features costs n searches and n small moves, not a sort per insert.
func BenchmarkMerge(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		cells := make([]Cell, n)
		for i := range cells {
			// Arrival order is not name order: the request's map iteration decides it.
			cells[i] = Cell{Name: fmt.Sprintf("f%05d", (i*7919)%n), EventTime: 10, Value: Value{Type: TypeDouble, Float: float64(i)}}
		}
		b.Run(fmt.Sprintf("new/%d", n), func(b *testing.B) {
			for b.Loop() {
				var r Row
				r.Merge(cells)
			}
		})
		var full Row
		full.Merge(cells)
		newer := slices.Clone(cells)
		for i := range newer {
			newer[i].EventTime = 11
		}
		b.Run(fmt.Sprintf("update/%d", n), func(b *testing.B) {
			for b.Loop() {
				r := Row{Cells: slices.Clone(full.Cells)}
				r.Merge(newer)
			}
		})
	}
}
