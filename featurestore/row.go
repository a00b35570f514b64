package featurestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Cell is one feature's value with the event time it was observed at.
type Cell struct {
	Name string
	// EventTime in microseconds since the Unix epoch; merge compares it.
	EventTime int64
	Value     Value
}

// Row is the stored state of one (feature set, entity): one cell per feature ever
// written, sorted by name.
type Row struct {
	Cells []Cell
	// Floor is the newest event time of values an entity delete removed (0: none). A value
	// at or before it is stale, so a write retried after the delete, or arriving late, does
	// not bring deleted data back; newer values apply.
	Floor int64
}

// Cell returns the named cell.
func (r *Row) Cell(name string) (Cell, bool) {
	i := sort.Search(len(r.Cells), func(i int) bool { return r.Cells[i].Name >= name })
	if i < len(r.Cells) && r.Cells[i].Name == name {
		return r.Cells[i], true
	}
	return Cell{}, false
}

// MaxEventTime is the newest event time in the row, or 0 for an empty row.
func (r *Row) MaxEventTime() int64 {
	var m int64
	for _, c := range r.Cells {
		m = max(m, c.EventTime)
	}
	return m
}

// MergeOutcome says what merging one incoming row did.
type MergeOutcome struct {
	// Applied counts values that were newer and replaced or added a cell.
	Applied int
	// Same counts values equal (time and value) to the stored cell: a retry, a no-op.
	Same int
	// Stale lists features whose incoming value was older than the stored one, or had the
	// same event time and a different value (the first write at a given time wins, so
	// replays are deterministic).
	Stale []string
}

// Written reports whether the row counts as written: something was applied, or it had
// been applied before (a retry of an acknowledged or unknown-outcome write).
func (o MergeOutcome) Written() bool { return o.Applied > 0 || o.Same > 0 }

// Merge applies the incoming cells to r by event time, per feature: newer wins; older is
// stale; equal time and equal value is an idempotent no-op. It modifies r in place.
func (r *Row) Merge(incoming []Cell) MergeOutcome {
	var out MergeOutcome
	for _, in := range incoming {
		if in.EventTime <= r.Floor {
			out.Stale = append(out.Stale, in.Name)
			continue
		}
		i := sort.Search(len(r.Cells), func(i int) bool { return r.Cells[i].Name >= in.Name })
		if i < len(r.Cells) && r.Cells[i].Name == in.Name {
			cur := r.Cells[i]
			switch {
			case in.EventTime > cur.EventTime:
				r.Cells[i] = in
				out.Applied++
			case in.EventTime == cur.EventTime && in.Value.Equal(cur.Value):
				out.Same++
			default:
				out.Stale = append(out.Stale, in.Name)
			}
			continue
		}
		// A new feature goes where the search found its place, keeping the cells sorted.
		r.Cells = slices.Insert(r.Cells, i, in)
		out.Applied++
	}
	return out
}

// ErrCorruptRow is returned by DecodeRow for bytes that are not a row.
var ErrCorruptRow = errors.New("corrupt row encoding")

// rowFormat is the first byte of an encoded row, so the format can evolve. Format 2 is
// format 1 with the row's Floor before the cells; rows without a floor stay format 1.
const (
	rowFormat      = 1
	rowFormatFloor = 2
)

// AppendRow appends the binary encoding of r to dst. The encoding is deterministic:
// equal rows encode to equal bytes.
func AppendRow(dst []byte, r Row) []byte {
	if r.Floor > 0 {
		dst = append(dst, rowFormatFloor)
		dst = binary.AppendUvarint(dst, uint64(r.Floor))
	} else {
		dst = append(dst, rowFormat)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Cells)))
	for _, c := range r.Cells {
		dst = binary.AppendUvarint(dst, uint64(len(c.Name)))
		dst = append(dst, c.Name...)
		dst = binary.AppendVarint(dst, c.EventTime)
		dst = appendValue(dst, c.Value)
	}
	return dst
}

func appendValue(dst []byte, v Value) []byte {
	dst = append(dst, byte(v.Type))
	switch v.Type {
	case TypeInt64:
		dst = binary.AppendVarint(dst, v.Int)
	case TypeDouble:
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.Float))
	case TypeString:
		dst = binary.AppendUvarint(dst, uint64(len(v.Str)))
		dst = append(dst, v.Str...)
	case TypeBytes:
		dst = binary.AppendUvarint(dst, uint64(len(v.Bytes)))
		dst = append(dst, v.Bytes...)
	case TypeBool:
		b := byte(0)
		if v.Bool {
			b = 1
		}
		dst = append(dst, b)
	case TypeFloatList:
		dst = binary.AppendUvarint(dst, uint64(len(v.Floats)))
		for _, f := range v.Floats {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(f))
		}
	case TypeInt64List:
		dst = binary.AppendUvarint(dst, uint64(len(v.Ints)))
		for _, n := range v.Ints {
			dst = binary.AppendVarint(dst, n)
		}
	case TypeStringList:
		dst = binary.AppendUvarint(dst, uint64(len(v.Strs)))
		for _, s := range v.Strs {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	return dst
}

// rowDecoder reads an encoded row, refusing any length that exceeds what is left, so
// corrupt or hostile input cannot make it allocate more than its own size.
type rowDecoder struct {
	b   []byte
	err error
}

func (d *rowDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	// An overlong encoding (a final zero byte after the first) is refused, so that every
	// row has exactly one encoding.
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.err = ErrCorruptRow
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *rowDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.err = ErrCorruptRow
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length of elements each at least minSize bytes long.
func (d *rowDecoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.err = ErrCorruptRow
		return 0
	}
	return int(n)
}

func (d *rowDecoder) bytes() []byte {
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *rowDecoder) fixed(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = ErrCorruptRow
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

// newRowDecoder reads an encoded row's header: its format and, in format 2, its floor
// (which must be positive, so that every row has exactly one encoding).
func newRowDecoder(b []byte) (rowDecoder, int64, error) {
	if len(b) == 0 || b[0] != rowFormat && b[0] != rowFormatFloor {
		return rowDecoder{}, 0, ErrCorruptRow
	}
	d := rowDecoder{b: b[1:]}
	var floor int64
	if b[0] == rowFormatFloor {
		f := d.uvarint()
		if d.err != nil || f == 0 || f > math.MaxInt64 {
			return rowDecoder{}, 0, ErrCorruptRow
		}
		floor = int64(f)
	}
	return d, floor, nil
}

// DecodeRow parses an encoded row. Byte slices in the result alias b.
func DecodeRow(b []byte) (Row, error) {
	d, floor, err := newRowDecoder(b)
	if err != nil {
		return Row{}, err
	}
	// A cell takes at least 4 bytes: name length, one name byte, time, type.
	n := d.count(4)
	r := Row{Cells: make([]Cell, 0, n), Floor: floor}
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		var c Cell
		c.Name = string(d.bytes())
		c.EventTime = d.varint()
		c.Value = d.value()
		if d.err == nil && (c.Name == "" || i > 0 && c.Name <= prev) {
			d.err = ErrCorruptRow
		}
		prev = c.Name
		r.Cells = append(r.Cells, c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = ErrCorruptRow
	}
	if d.err != nil {
		return Row{}, d.err
	}
	return r, nil
}

func (d *rowDecoder) value() Value {
	t := d.fixed(1)
	if d.err != nil {
		return Value{}
	}
	v := Value{Type: ValueType(t[0])}
	switch v.Type {
	case TypeInt64:
		v.Int = d.varint()
	case TypeDouble:
		if b := d.fixed(8); b != nil {
			v.Float = math.Float64frombits(binary.LittleEndian.Uint64(b))
		}
	case TypeString:
		v.Str = string(d.bytes())
	case TypeBytes:
		v.Bytes = d.bytes()
	case TypeBool:
		if b := d.fixed(1); b != nil {
			if b[0] > 1 {
				d.err = ErrCorruptRow
			}
			v.Bool = b[0] == 1
		}
	case TypeFloatList:
		n := d.count(4)
		if d.err == nil {
			v.Floats = make([]float32, n)
			for i := range v.Floats {
				v.Floats[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.fixed(4)))
			}
		}
	case TypeInt64List:
		n := d.count(1)
		if d.err == nil {
			v.Ints = make([]int64, n)
			for i := range v.Ints {
				v.Ints[i] = d.varint()
			}
		}
	case TypeStringList:
		n := d.count(1)
		if d.err == nil {
			v.Strs = make([]string, n)
			for i := range v.Strs {
				v.Strs[i] = string(d.bytes())
			}
		}
	default:
		d.err = ErrCorruptRow
	}
	return v
}

// Micros converts a time to the microseconds stored in cells.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// CheckValue reports whether v may be stored in a feature of type t.
func CheckValue(field string, t ValueType, v Value) error {
	if v.Type != t {
		return WithReason(ReasonInvalidValue, Invalid(field, "value of type %s, feature is declared %s", v.Type, t))
	}
	return nil
}

// String describes a cell without its value, for errors and logs.
func (c Cell) String() string { return fmt.Sprintf("%s@%d", c.Name, c.EventTime) }

// LookupCells decodes from an encoded row only the cells named in names, into out
// (out[i] for names[i]; found[i] tells whether it was there). names must be sorted (they
// may repeat): cells are stored sorted too, so one merge walk finds them all. It allocates
// nothing for names or for cells it skips, which is what the read path wants: a request
// usually asks for some features of wide rows.
func LookupCells(b []byte, names []string, out []Cell, found []bool) error {
	d, _, err := newRowDecoder(b)
	if err != nil {
		return err
	}
	n := d.count(4)
	j := 0
	for c := 0; c < n && d.err == nil; c++ {
		name := d.bytes()
		t := d.varint()
		for j < len(names) && names[j] < string(name) {
			j++
		}
		if j == len(names) || names[j] != string(name) {
			d.skipValue()
			continue
		}
		v := d.value()
		if d.err != nil {
			break
		}
		for ; j < len(names) && names[j] == string(name); j++ { // a feature may be requested twice
			out[j] = Cell{Name: names[j], EventTime: t, Value: v}
			found[j] = true
		}
	}
	return d.err
}

// skipValue advances past one encoded value without decoding it.
func (d *rowDecoder) skipValue() {
	t := d.fixed(1)
	if d.err != nil {
		return
	}
	switch ValueType(t[0]) {
	case TypeInt64:
		d.varint()
	case TypeDouble:
		d.fixed(8)
	case TypeString, TypeBytes:
		d.bytes()
	case TypeBool:
		d.fixed(1)
	case TypeFloatList:
		d.fixed(4 * d.count(4))
	case TypeInt64List:
		for n := d.count(1); n > 0 && d.err == nil; n-- {
			d.varint()
		}
	case TypeStringList:
		for n := d.count(1); n > 0 && d.err == nil; n-- {
			d.bytes()
		}
	default:
		d.err = ErrCorruptRow
	}
}

// uvarintLen is the length of v's uvarint encoding.
func uvarintLen(v int) int {
	n := 1
	for u := uint64(v); u >= 0x80; u >>= 7 {
		n++
	}
	return n
}

// cellSize bounds the encoded size of a cell of name holding v (its event time counted at
// its widest), so that sizes can be checked against DynamoDB's item limit without
// encoding.
func cellSize(name string, v Value) int {
	n := uvarintLen(len(name)) + len(name) + binary.MaxVarintLen64 + 1
	switch v.Type {
	case TypeInt64:
		n += binary.MaxVarintLen64
	case TypeDouble:
		n += 8
	case TypeString:
		n += uvarintLen(len(v.Str)) + len(v.Str)
	case TypeBytes:
		n += uvarintLen(len(v.Bytes)) + len(v.Bytes)
	case TypeBool:
		n++
	case TypeFloatList:
		n += uvarintLen(len(v.Floats)) + 4*len(v.Floats)
	case TypeInt64List:
		n += uvarintLen(len(v.Ints)) + binary.MaxVarintLen64*len(v.Ints)
	case TypeStringList:
		n += uvarintLen(len(v.Strs))
		for _, s := range v.Strs {
			n += uvarintLen(len(s)) + len(s)
		}
	}
	return n
}

// size bounds the row's encoded size.
func (r *Row) size() int {
	n := 0
	for _, c := range r.Cells {
		n += cellSize(c.Name, c.Value)
	}
	return n
}
