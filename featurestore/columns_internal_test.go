package featurestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// The columnar read path is checked here against the row-wise one on the same stored
// items, without a store: planRead, then valuesFrom and columnsFrom over items built in
// memory. The service tests and cmd/featurestore read both forms through the real stack.

func TestExpiryCutoffMatchesTimeSub(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nows := []time.Time{time.Unix(1_800_000_000, 123_456_789), time.Unix(0, 999), time.Unix(-5, 500), time.Unix(1_700_000_000, 0)}
	ttls := []time.Duration{time.Nanosecond, time.Microsecond, 1500 * time.Nanosecond, time.Hour, 24 * time.Hour, 100 * 365 * 24 * time.Hour}
	for _, now := range nows {
		for _, ttl := range ttls {
			cut := expiryCutoff(now, ttl)
			// Around the cutoff, and far from it on both sides.
			ts := []int64{cut - 2, cut - 1, cut, cut + 1, cut + 2, math.MinInt64 / 2, math.MaxInt64 / 2, 0}
			for range 50 {
				ts = append(ts, cut+rng.Int64N(2_000_000)-1_000_000)
			}
			for _, us := range ts {
				want := now.Sub(time.UnixMicro(us)) > ttl
				if got := us < cut; got != want {
					t.Errorf("now %v ttl %v t %dus: expired %v, time.Sub says %v", now, ttl, us, got, want)
				}
			}
		}
	}
}

// TestColumnCellSizes: the columnar path counts every value as cellSize does, so both
// forms refuse the same requests as too large.
func TestColumnCellSizes(t *testing.T) {
	values := []Value{
		{Type: TypeInt64, Int: -1}, {Type: TypeInt64, Int: math.MaxInt64},
		{Type: TypeDouble, Float: 2.5},
		{Type: TypeString}, {Type: TypeString, Str: string(make([]byte, 300))},
		{Type: TypeBytes, Bytes: []byte{1, 2, 3}},
		{Type: TypeBool, Bool: true},
		{Type: TypeFloatList}, {Type: TypeFloatList, Floats: make([]float32, 200)},
		{Type: TypeInt64List, Ints: []int64{1, math.MinInt64}},
		{Type: TypeStringList, Strs: []string{"", "abc", string(make([]byte, 130))}},
	}
	for _, v := range values {
		t.Run(v.Type.String(), func(t *testing.T) {
			s := &Service{cfg: Config{}.withDefaults()}
			p, err := s.planRead([]string{"s:x"}, []string{"e"})
			if err != nil {
				t.Fatal(err)
			}
			b := newColumnBuilder(p, []ValueType{v.Type}, math.MaxInt)
			base := b.respBytes
			row := AppendRow(nil, Row{Cells: []Cell{{Name: "x", EventTime: 7, Value: v}}})
			if err := b.decodeRow(0, 1, 0, row); err != nil {
				t.Fatal(err)
			}
			if got, want := b.respBytes-base, cellSize("", v); got != want {
				t.Errorf("counted %d bytes, cellSize says %d", got, want)
			}
		})
	}
}

var allValueTypes = []ValueType{TypeInt64, TypeDouble, TypeString, TypeBytes, TypeBool, TypeFloatList, TypeInt64List, TypeStringList}

func randomValue(rng *rand.Rand, t ValueType) Value {
	v := Value{Type: t}
	n := rng.IntN(4)
	str := func() string { return "xyzé"[:rng.IntN(4)] + strconv.Itoa(rng.IntN(100)) }
	switch t {
	case TypeInt64:
		v.Int = rng.Int64() - rng.Int64()
	case TypeDouble:
		v.Float = rng.NormFloat64()
	case TypeString:
		v.Str = str()
	case TypeBytes:
		v.Bytes = []byte(str())
	case TypeBool:
		v.Bool = rng.IntN(2) == 1
	case TypeFloatList:
		for range n {
			v.Floats = append(v.Floats, rng.Float32())
		}
	case TypeInt64List:
		for range n {
			v.Ints = append(v.Ints, rng.Int64())
		}
	case TypeStringList:
		for range n {
			v.Strs = append(v.Strs, str())
		}
	}
	return v
}

// readCase is a random read: sets of random features, stored rows (some entities
// missing, some values old enough to expire), and a request with repeated refs and ids.
type readCase struct {
	p     *readPlan
	sets  []FeatureSet
	types []ValueType
	items []writethrough.Item
	now   time.Time
}

func newReadCase(t testing.TB, s *Service, seed uint64) readCase {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	now := time.Unix(1_800_000_000, int64(rng.IntN(1e9)))
	nsets := 1 + rng.IntN(3)
	var sets []FeatureSet
	for si := range nsets {
		fs := FeatureSet{Name: fmt.Sprintf("s%d", si), EntityType: "u"}
		if rng.IntN(3) > 0 {
			fs.TTL = time.Duration(1+rng.IntN(3600)) * time.Second
		}
		for fi := range 1 + rng.IntN(12) {
			fs.Features = append(fs.Features, FeatureSpec{Name: fmt.Sprintf("f%d", fi), Type: allValueTypes[rng.IntN(len(allValueTypes))]})
		}
		sets = append(sets, fs)
	}
	var refs []string
	for range 1 + rng.IntN(15) {
		fs := sets[rng.IntN(nsets)]
		refs = append(refs, fs.Name+":"+fs.Features[rng.IntN(len(fs.Features))].Name)
	}
	var ids []string
	for range 1 + rng.IntN(30) {
		ids = append(ids, fmt.Sprintf("e%d", rng.IntN(25)))
	}
	p, err := s.planRead(refs, ids)
	if err != nil {
		t.Fatal(err)
	}
	c := readCase{p: p, now: now, items: make([]writethrough.Item, len(p.keys))}
	byName := map[string]FeatureSet{}
	for _, fs := range sets {
		byName[fs.Name] = fs
	}
	for si, name := range p.setNames {
		c.sets = append(c.sets, byName[name])
		c.items[si] = writethrough.Item{Key: p.keys[si]}
	}
	for _, r := range p.refs {
		fs := byName[r.Set]
		spec, _ := fs.Feature(r.Feature)
		c.types = append(c.types, spec.Type)
	}
	for k := len(p.setNames); k < len(p.keys); k++ {
		c.items[k] = writethrough.Item{Key: p.keys[k]}
		if rng.IntN(5) == 0 {
			continue // never written
		}
		fs := c.sets[(k-len(p.setNames))/p.ndist]
		var row Row
		for _, f := range fs.Features {
			if rng.IntN(4) == 0 {
				continue
			}
			at := Micros(now.Add(-time.Duration(rng.IntN(7200)) * time.Second))
			if rng.IntN(5) == 0 {
				at = Micros(now.Add(-fs.TTL)) + int64(rng.IntN(3)) // around the boundary
			}
			row.Merge([]Cell{{Name: f.Name, EventTime: at, Value: randomValue(rng, f.Type)}})
		}
		c.items[k].Data = AppendRow(nil, row)
	}
	return c
}

// cellOf reads entity e's cell back out of a column, in the row-wise form.
func cellOf(col *Column, e int) FeatureValue {
	v := FeatureValue{Status: col.Statuses[e], EventTime: col.EventTimes[e]}
	if v.Status != Present {
		return v
	}
	v.Value.Type = col.Type
	switch col.Type {
	case TypeInt64:
		v.Value.Int = col.Int64s[e]
	case TypeDouble:
		v.Value.Float = col.Float64s[e]
	case TypeString:
		v.Value.Str = col.Strings[e]
	case TypeBytes:
		v.Value.Bytes = col.Bytes[e]
	case TypeBool:
		v.Value.Bool = col.Bools[e]
	case TypeFloatList:
		v.Value.Floats = col.Float32s[col.Offsets[e]:col.Offsets[e+1]]
	case TypeInt64List:
		v.Value.Ints = col.Int64s[col.Offsets[e]:col.Offsets[e+1]]
	case TypeStringList:
		v.Value.Strs = col.Strings[col.Offsets[e]:col.Offsets[e+1]]
	}
	return v
}

// checkFillers: a cell that is not present holds the zero value and an empty list.
func checkFillers(t testing.TB, f int, col *Column) {
	t.Helper()
	for e, st := range col.Statuses {
		if st == Present {
			continue
		}
		var zero bool
		switch col.Type {
		case TypeInt64:
			zero = col.Int64s[e] == 0
		case TypeDouble:
			zero = col.Float64s[e] == 0
		case TypeString:
			zero = col.Strings[e] == ""
		case TypeBytes:
			zero = len(col.Bytes[e]) == 0
		case TypeBool:
			zero = !col.Bools[e]
		default:
			zero = col.Offsets[e] == col.Offsets[e+1]
		}
		if !zero {
			t.Fatalf("column %d entity %d: status %v holds a value, want the filler", f, e, st)
		}
	}
}

func compareForms(t testing.TB, s *Service, c readCase) {
	t.Helper()
	vals, verr := s.valuesFrom(c.p, c.sets, c.types, c.items, c.now)
	cols, cerr := s.columnsFrom(c.p, c.sets, c.types, c.items, c.now)
	if (verr == nil) != (cerr == nil) || verr != nil && verr.Error() != cerr.Error() {
		t.Fatalf("row-wise error %v, columnar error %v", verr, cerr)
	}
	if verr != nil {
		if ErrorReason(verr) != ReasonResponseTooLarge {
			t.Fatalf("unexpected error %v", verr)
		}
		return
	}
	nf, ne := len(c.p.refs), len(c.p.ids)
	if len(cols.Columns) != nf || !slices.Equal(cols.Refs, vals.Refs) {
		t.Fatalf("%d columns for refs %v, want %d for %v", len(cols.Columns), cols.Refs, nf, vals.Refs)
	}
	for f, col := range cols.Columns {
		if col.Type != vals.Types[f] || len(col.Statuses) != ne || len(col.EventTimes) != ne || col.Offsets != nil && len(col.Offsets) != ne+1 {
			t.Fatalf("column %d: type %v (want %v), %d statuses, %d times, %d offsets for %d entities", f, col.Type, vals.Types[f], len(col.Statuses), len(col.EventTimes), len(col.Offsets), ne)
		}
		checkFillers(t, f, col)
		for e := range ne {
			want, got := vals.Cells[e*nf+f], cellOf(col, e)
			if want.Status != got.Status || want.EventTime != got.EventTime || !want.Value.Equal(got.Value) {
				t.Fatalf("ref %d (%v) entity %d (%s): columns %+v, rows %+v", f, c.p.refs[f], e, c.p.ids[e], got, want)
			}
		}
	}
}

func TestColumnsAgreeWithValues(t *testing.T) {
	s := &Service{cfg: Config{}.withDefaults()}
	for seed := range uint64(300) {
		compareForms(t, s, newReadCase(t, s, seed))
	}
}

// TestColumnsResponseBound: with a bound near the size of each case's response, both
// forms refuse or serve the same requests.
func TestColumnsResponseBound(t *testing.T) {
	for seed := range uint64(300) {
		for _, bound := range []int{200, 600, 1500, 4000} {
			s := &Service{cfg: Config{MaxResponseBytes: bound}.withDefaults()}
			compareForms(t, s, newReadCase(t, s, seed))
		}
	}
}

// FuzzColumnsAgreeWithValues explores more random reads than the tests above.
func FuzzColumnsAgreeWithValues(f *testing.F) {
	f.Add(uint64(1), 0)
	f.Add(uint64(77), 500)
	f.Fuzz(func(t *testing.T, seed uint64, bound int) {
		s := &Service{cfg: Config{MaxResponseBytes: bound}.withDefaults()}
		compareForms(t, s, newReadCase(t, s, seed))
	})
}

// FuzzDecodeColumns feeds arbitrary bytes to the columnar decoder as a stored row: it
// must not panic, and where DecodeRow accepts the row and its cells have the declared
// types, it must find exactly DecodeRow's cells.
func FuzzDecodeColumns(f *testing.F) {
	f.Add(AppendRow(nil, Row{Cells: []Cell{
		{Name: "a", EventTime: 1, Value: Value{Type: TypeStringList, Strs: []string{"x"}}},
		{Name: "b", EventTime: 2, Value: Value{Type: TypeFloatList, Floats: []float32{1}}},
		{Name: "c", EventTime: 3, Value: Value{Type: TypeInt64List, Ints: []int64{1, 2}}},
	}}), "b", uint8(TypeFloatList))
	f.Add(AppendRow(nil, Row{Floor: 3, Cells: []Cell{{Name: "d", EventTime: 1, Value: Value{Type: TypeString, Str: "s"}}}}), "d", uint8(TypeString))
	f.Fuzz(func(t *testing.T, b []byte, name string, typ uint8) {
		if badRefName(name) {
			return
		}
		t0 := ValueType(typ%uint8(typeEnd-1)) + 1
		s := &Service{cfg: Config{}.withDefaults()}
		p, err := s.planRead([]string{"s:a", "s:" + name, "s:c"}, []string{"e"})
		if err != nil {
			t.Fatal(err)
		}
		row, derr := DecodeRow(b)
		types := []ValueType{TypeStringList, t0, TypeInt64List}
		for i, r := range p.refs {
			if c, ok := row.Cell(r.Feature); derr == nil && ok {
				types[i] = c.Value.Type
			}
		}
		set := FeatureSet{Name: "s", EntityType: "u"}
		items := []writethrough.Item{{Key: p.keys[0]}, {Key: p.keys[1], Data: b}}
		cols, err := s.columnsFrom(p, []FeatureSet{set}, types, items, time.Unix(0, 0))
		if derr != nil {
			return // corrupt: any answer but a panic will do
		}
		if err != nil {
			t.Fatalf("columns failed on a valid row: %v", err)
		}
		for f, r := range p.refs {
			want, ok := row.Cell(r.Feature)
			got := cellOf(cols.Columns[f], 0)
			if ok != (got.Status == Present) || ok && (want.EventTime != got.EventTime || !want.Value.Equal(got.Value)) {
				t.Fatalf("%q: columns %+v, DecodeRow %v %+v", r.Feature, got, ok, want)
			}
		}
	})
}

// badRefName reports whether "s:"+name is not a valid ref.
func badRefName(name string) bool {
	_, err := ParseFeatureRef("", "s:"+name)
	return err != nil
}

// BenchmarkReadForms decodes stored rows of doubles into both forms, with no store: the
// CPU and allocations of the read path's own work, at fsbench's cached sizes (every
// feature of a set of 10 or 100), and at 100x100 from rows of 200 features.
func BenchmarkReadForms(b *testing.B) {
	s := &Service{cfg: Config{}.withDefaults()}
	for _, tc := range []struct {
		n, nf, width, step int
	}{{1, 10, 10, 1}, {10, 100, 100, 1}, {100, 10, 10, 1}, {100, 100, 100, 1}, {100, 100, 200, 2}} {
		fs := FeatureSet{Name: "s", EntityType: "u"}
		var row Row
		for i := range tc.width {
			name := "f" + strconv.Itoa(i)
			fs.Features = append(fs.Features, FeatureSpec{Name: name, Type: TypeDouble})
			row.Merge([]Cell{{Name: name, EventTime: 1_800_000_000_000_000 + int64(i), Value: Value{Type: TypeDouble, Float: float64(i)}}})
		}
		data := AppendRow(nil, row)
		var refs, ids []string
		for i := 0; len(refs) < tc.nf; i += tc.step {
			refs = append(refs, "s:f"+strconv.Itoa(i))
		}
		for e := range tc.n {
			ids = append(ids, "user-"+strconv.Itoa(e))
		}
		p, err := s.planRead(refs, ids)
		if err != nil {
			b.Fatal(err)
		}
		items := make([]writethrough.Item, len(p.keys))
		for i := 1; i < len(items); i++ {
			items[i].Data = data
		}
		types := make([]ValueType, len(refs))
		for i := range types {
			types[i] = TypeDouble
		}
		now := time.Unix(1_800_000_001, 0)
		sets := []FeatureSet{fs}
		name := fmt.Sprintf("%dx%d of %d", tc.n, tc.nf, tc.width)
		b.Run("rows/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.valuesFrom(p, sets, types, items, now); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("columns/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.columnsFrom(p, sets, types, items, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUvarintAtMatchesBinary checks the inlined decoder against encoding/binary on the
// boundaries of every length, and its refusals of overlong and overflowing input.
func TestUvarintAtMatchesBinary(t *testing.T) {
	vals := []uint64{0, 1, 127, 128, 255, 300, 1<<14 - 1, 1 << 14, 1<<21 - 1, 1 << 21, 1<<35 + 7, 1<<49 - 1, 1 << 49,
		1_800_000_000_000_000, 1<<56 - 1, 1 << 56, 1<<63 - 1, 1 << 63, ^uint64(0)}
	// Each case alone and followed by other bytes: uvarintAt reads eight at a time when
	// it can.
	for _, tail := range [][]byte{nil, {0x80, 0xff, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}} {
		for _, v := range vals {
			enc := binary.AppendUvarint([]byte{0xff}, v) // an offset, so i is not 0
			b := append(enc, tail...)
			got, i := uvarintAt(b, 1)
			if got != v || i != len(enc) {
				t.Errorf("uvarintAt(%x) = %d, %d; want %d, %d", b, got, i, v, len(enc))
			}
			if j := skipVarintAt(b, 1); j != len(enc) {
				t.Errorf("skipVarintAt(%x) = %d, want %d", b, j, len(enc))
			}
		}
		for _, bad := range [][]byte{
			{},
			{0x80},             // ends inside
			{0x80, 0x00},       // overlong zero
			{0xff, 0x80, 0x00}, // overlong
			{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00},                   // overlong, eight bytes
			{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},       // overflows
			{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00}, // eleven bytes
		} {
			if _, n := binary.Uvarint(bad); n > 0 && (n == 1 || bad[n-1] != 0) {
				t.Fatalf("test case %x is valid for encoding/binary", bad)
			}
			if len(tail) > 0 && (len(bad) == 0 || bad[len(bad)-1] >= 0x80) {
				continue // the tail would complete it
			}
			b := append(slices.Clip(bad), tail...)
			if _, i := uvarintAt(b, 0); i != -1 {
				t.Errorf("uvarintAt(%x) accepted it (index %d)", b, i)
			}
			if i := skipVarintAt(b, 0); i != -1 {
				t.Errorf("skipVarintAt(%x) accepted it (index %d)", b, i)
			}
		}
	}
	if j := skipVarintAt([]byte{0x80, 0x80}, 0); j != -1 {
		t.Errorf("skipVarintAt of a truncated varint = %d, want -1", j)
	}
	// Every length from one to ten bytes, at every alignment, against encoding/binary.
	for bitsN := range 64 {
		v := uint64(1)<<bitsN | uint64(bitsN)
		for pad := range 9 {
			b := binary.AppendUvarint(make([]byte, pad), v)
			b = append(b, make([]byte, pad)...)
			want, n := binary.Uvarint(b[pad:])
			if got, i := uvarintAt(b, pad); got != want || i != pad+n {
				t.Errorf("uvarintAt(%x, %d) = %d, %d; want %d, %d", b, pad, got, i, want, pad+n)
			}
		}
	}
}

// TestColumnsRefuseCorruptSkippedTimes: a cell nobody asked for is stepped over, not
// decoded, but an overlong or overflowing event time in it is still a corrupt row, as it
// is for DecodeRow and the row-wise read.
func TestColumnsRefuseCorruptSkippedTimes(t *testing.T) {
	valid := AppendRow(nil, Row{Cells: []Cell{
		{Name: "a", EventTime: 0, Value: Value{Type: TypeDouble, Float: 1}},
		{Name: "b", EventTime: 0, Value: Value{Type: TypeDouble, Float: 2}},
		{Name: "c", EventTime: 0, Value: Value{Type: TypeDouble, Float: 3}},
	}})
	at := bytes.Index(valid, []byte("\x01b\x00"))
	if at < 0 {
		t.Fatalf("cell b not found in %x", valid)
	}
	for name, bad := range map[string][]byte{
		"overlong":    {0x80, 0x00},
		"overflowing": {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	} {
		row := append(append(append([]byte{}, valid[:at+2]...), bad...), valid[at+3:]...)
		if _, err := DecodeRow(row); err == nil {
			t.Fatalf("%s: DecodeRow accepted %x", name, row)
		}
		s := &Service{cfg: Config{}.withDefaults()}
		p, err := s.planRead([]string{"s:a", "s:c"}, []string{"e"})
		if err != nil {
			t.Fatal(err)
		}
		items := []writethrough.Item{{Key: p.keys[0]}, {Key: p.keys[1], Data: row}}
		set := FeatureSet{Name: "s", EntityType: "u"}
		_, err = s.columnsFrom(p, []FeatureSet{set}, []ValueType{TypeDouble, TypeDouble}, items, time.Unix(0, 0))
		if !errors.Is(err, ErrCorruptRow) {
			t.Errorf("%s event time in a skipped cell: columnsFrom error %v, want ErrCorruptRow", name, err)
		}
	}
}
