package featurestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// Column is one requested feature for every requested entity: entry i of Statuses and
// EventTimes, and of the values, belongs to the request's i-th entity id. Only the values
// of the column's Type are set. A cell that is not Present holds a filler (0, false, "",
// nil, an empty list) and its status says why. Lists are flattened: entity i's list is
// the elements [Offsets[i], Offsets[i+1]), and Offsets has one more entry than there are
// entities.
type Column struct {
	Type     ValueType
	Statuses []FeatureStatus
	// EventTimes are microseconds since the Unix epoch: the served value's, for Expired
	// the stored value's, 0 for NotFoundStatus.
	EventTimes []int64
	// Int64s holds TypeInt64 values, or the elements of TypeInt64List.
	Int64s   []int64
	Float64s []float64
	// Strings holds TypeString values, or the elements of TypeStringList.
	Strings []string
	Bytes   [][]byte
	Bools   []bool
	// Float32s holds the elements of TypeFloatList.
	Float32s []float32
	Offsets  []uint32
}

// Columns is what GetFeatureColumns read: Columns[f] holds Refs[f]. A feature requested
// more than once shares one *Column, the columns' slices share backing arrays, and Refs
// is shared with every request of the same refs (see refPlan), so callers must treat
// all of them as read-only.
type Columns struct {
	Refs    []FeatureRef
	Columns []*Column
}

// GetFeatureColumns is GetFeatures with one column per requested ref: the same keys read
// the same linearizable way (through the write-through store), the same statuses, TTL,
// limits and errors, but decoded cells go straight into packed, typed arrays instead of a
// Value per cell. The cost of a request is a few allocations per distinct feature, not
// per cell. Errors: as GetFeatures.
func (s *Service) GetFeatureColumns(ctx context.Context, refStrs []string, entityIDs []string) (Columns, error) {
	p, err := s.planRead(refStrs, entityIDs)
	if err != nil {
		return Columns{}, err
	}
	res, err := s.store.Read(ctx, p.keys)
	if err != nil {
		return Columns{}, storeError(err)
	}
	sets, types, err := s.resolveRead(p, res)
	if err != nil {
		return Columns{}, err
	}
	return s.columnsFrom(p, sets, types, res, s.clock.Now())
}

// columnsFrom builds GetFeatureColumns' answer from the items p's keys read.
func (s *Service) columnsFrom(p *readPlan, sets []FeatureSet, types []ValueType, res []writethrough.Item, now time.Time) (Columns, error) {
	b := newColumnBuilder(p, types, s.cfg.MaxResponseBytes)
	nsets := len(p.setNames)
	for si := range p.setNames {
		b.expires = sets[si].TTL > 0
		if b.expires {
			b.cutoff = expiryCutoff(now, sets[si].TTL)
		}
		lo, hi := b.span[si], b.span[si+1]
		for d := 0; d < p.ndist; d++ {
			row := res[nsets+si*p.ndist+d]
			if len(row.Data) > 0 {
				if err := b.decodeRow(lo, hi, d, row.Data); err != nil {
					if errors.Is(err, errResponseTooLarge) {
						return Columns{}, s.responseTooLarge(p)
					}
					return Columns{}, fmt.Errorf("stored row %q: %w", row.Key.PK, err)
				}
			}
			if !b.lists[si] {
				continue
			}
			if err := b.endEntity(lo, hi, d); err != nil {
				return Columns{}, s.responseTooLarge(p)
			}
		}
	}
	return b.finish(), nil
}

// expiryCutoff is the oldest event time, in microseconds, that is not expired at now
// under ttl: a value is expired when now.Sub(its time) > ttl, which for a time of t
// microseconds is 1000t < now - ttl in nanoseconds, so t < ceil((now - ttl) / 1000).
// Comparing integers spares a time.Time per cell.
func expiryCutoff(now time.Time, ttl time.Duration) int64 {
	c := now.UnixNano() - int64(ttl)
	q := c / 1000 // rounds towards zero: the ceiling for negative c
	if c%1000 > 0 {
		q++
	}
	return q
}

// cellOverhead is what cellSize counts for a cell beyond its value, with the empty name
// the read path uses: the name's length, the widest event time and the type.
const cellOverhead = 1 + binary.MaxVarintLen64 + 1

// errResponseTooLarge is the builder's signal that the response bound was passed; the
// caller turns it into the request's error.
var errResponseTooLarge = errors.New("response too large")

// columnBuilder decodes stored rows into columns, one column per distinct (set, feature)
// of the request. During decoding a column has one entry per distinct entity id; finish
// spreads them to the request's ids when some repeat.
type columnBuilder struct {
	p    *readPlan
	cols []Column
	// names[c] is column c's feature; the columns of set si are span[si]..span[si+1],
	// sorted by name, the order in which stored rows hold their cells.
	names []string
	span  []int
	// refMult[c] is how many refs column c answers; colOf[f] is ref f's column.
	refMult []int
	colOf   []int
	// lists[si]: set si has list columns, whose offsets close after each entity.
	lists []bool

	// The response bound, counted as GetFeatures counts it (cellSize per value, every
	// repeat of an id or ref included), so both forms refuse the same requests.
	respBytes, maxBytes int
	expires             bool
	cutoff              int64

	// Strings are copied into one arena and cut from one string made of it at the end, so
	// that a column of strings costs a few allocations rather than one per value.
	arena  []byte
	fixups []stringFixup
}

// stringFixup says that cols[col].Strings[at] is arena[lo:hi].
type stringFixup struct{ col, at, lo, hi int }

func newColumnBuilder(p *readPlan, types []ValueType, maxBytes int) *columnBuilder {
	b := &columnBuilder{p: p, names: p.names, span: p.span, refMult: p.refMult, colOf: p.colOf, respBytes: p.baseResponseBytes(), maxBytes: maxBytes}
	colTypes := make([]ValueType, len(p.names))
	for f, c := range p.colOf {
		colTypes[c] = types[f]
	}
	colSet := p.colSet
	nsets := len(p.setNames)

	// One backing array per kind of slice, shared by the columns.
	nc, n := len(b.names), p.ndist
	count := [typeEnd]int{}
	for _, t := range colTypes {
		count[t]++
	}
	b.cols = make([]Column, nc)
	statuses := make([]FeatureStatus, nc*n)
	for i := range statuses {
		statuses[i] = NotFoundStatus
	}
	times := make([]int64, nc*n)
	int64s := make([]int64, count[TypeInt64]*n)
	float64s := make([]float64, count[TypeDouble]*n)
	strs := make([]string, count[TypeString]*n)
	bytess := make([][]byte, count[TypeBytes]*n)
	bools := make([]bool, count[TypeBool]*n)
	offsets := make([]uint32, (count[TypeFloatList]+count[TypeInt64List]+count[TypeStringList])*(n+1))
	b.lists = make([]bool, nsets)
	for c, t := range colTypes {
		col := &b.cols[c]
		col.Type = t
		col.Statuses = take(&statuses, n)
		col.EventTimes = take(&times, n)
		switch t {
		case TypeInt64:
			col.Int64s = take(&int64s, n)
		case TypeDouble:
			col.Float64s = take(&float64s, n)
		case TypeString:
			col.Strings = take(&strs, n)
		case TypeBytes:
			col.Bytes = take(&bytess, n)
		case TypeBool:
			col.Bools = take(&bools, n)
		case TypeFloatList, TypeInt64List, TypeStringList:
			col.Offsets = take(&offsets, n+1)
			b.lists[colSet[c]] = true
		}
	}
	return b
}

// take cuts the first n elements off *s, capped so that appends cannot spill into the
// next column's.
func take[T any](s *[]T, n int) []T {
	v := (*s)[:n:n]
	*s = (*s)[n:]
	return v
}

// decodeRow decodes entity d's cells of the columns lo..hi from an encoded row. It walks
// the row's sorted cells and the columns' sorted names together, skips cells nobody asked
// for without decoding their values, and stops after the last wanted name.
//
// It reads the format AppendRow writes with an index into data rather than rowDecoder:
// this loop runs once per stored cell of every row read, and keeping its state in locals
// (with one-byte fast paths for the lengths) makes it about twice as fast. Every length is
// checked against what is left, so corrupt input is an error, never a panic.
func (b *columnBuilder) decodeRow(lo, hi, d int, data []byte) error {
	if len(data) == 0 || data[0] != rowFormat && data[0] != rowFormatFloor {
		return ErrCorruptRow
	}
	i := 1
	if data[0] == rowFormatFloor {
		if _, i = uvarintAt(data, i); i < 0 {
			return ErrCorruptRow
		}
	}
	n, i := uvarintAt(data, i)
	// A cell takes at least 4 bytes: name length, one name byte, time, type.
	if i < 0 || n > uint64(len(data)-i)/4 {
		return ErrCorruptRow
	}
	mult := int(b.p.mult[d])
	j := lo
	for ; n > 0 && j < hi; n-- {
		var l uint64
		if l, i = uvarintAt(data, i); i < 0 || l > uint64(len(data)-i) {
			return ErrCorruptRow
		}
		name := data[i : i+int(l)]
		i += int(l)
		if b.names[j] != string(name) {
			for j < hi && b.names[j] < string(name) {
				j++
			}
			if j == hi {
				break
			}
			if b.names[j] != string(name) {
				// A cell nobody asked for: its time is checked and stepped over, not
				// decoded (most of a wide row's cells, and most of the walk's time when
				// they were). Cells after the last wanted name are not read at all.
				if i = skipVarintAt(data, i); i < 0 {
					return ErrCorruptRow
				}
				if i = skipValueAt(data, i); i < 0 {
					return ErrCorruptRow
				}
				continue
			}
		}
		var t int64
		if t, i = varintAt(data, i); i < 0 {
			return ErrCorruptRow
		}
		var size int
		var err error
		if i, size, err = b.decodeCell(data, i, j, d, t); err != nil {
			return err
		}
		if b.respBytes += (cellOverhead + size) * mult * b.refMult[j]; b.respBytes > b.maxBytes {
			return errResponseTooLarge
		}
		j++
	}
	return nil
}

// decodeCell decodes the value at data[i:] into column c at entity d, and returns the
// index after it and the size cellSize gives it. An expired value is consumed but not
// stored.
func (b *columnBuilder) decodeCell(data []byte, i, c, d int, t int64) (int, int, error) {
	col := &b.cols[c]
	if i >= len(data) {
		return 0, 0, ErrCorruptRow
	}
	if got := ValueType(data[i]); got != col.Type {
		if !got.Valid() {
			return 0, 0, ErrCorruptRow
		}
		return 0, 0, fmt.Errorf("feature %q holds a value of type %s, but is declared %s", b.names[c], got, col.Type)
	}
	i++
	expired := b.expires && t < b.cutoff
	col.EventTimes[d] = t
	col.Statuses[d] = Present
	if expired {
		col.Statuses[d] = Expired
	}
	start := i
	switch col.Type {
	case TypeInt64:
		var v int64
		if v, i = varintAt(data, i); i < 0 {
			return 0, 0, ErrCorruptRow
		}
		if !expired {
			col.Int64s[d] = v
		}
		return i, binary.MaxVarintLen64, nil
	case TypeDouble:
		if len(data)-i < 8 {
			return 0, 0, ErrCorruptRow
		}
		if !expired {
			col.Float64s[d] = math.Float64frombits(binary.LittleEndian.Uint64(data[i:]))
		}
		i += 8
	case TypeString, TypeBytes:
		var raw []byte
		if raw, i = bytesAt(data, i); i < 0 {
			return 0, 0, ErrCorruptRow
		}
		switch {
		case expired:
		case col.Type == TypeString:
			b.addString(c, d, raw)
		default:
			col.Bytes[d] = raw
		}
	case TypeBool:
		if i >= len(data) || data[i] > 1 {
			return 0, 0, ErrCorruptRow
		}
		if !expired {
			col.Bools[d] = data[i] == 1
		}
		i++
	case TypeFloatList:
		k, j := uvarintAt(data, i)
		if j < 0 || k > uint64(len(data)-j)/4 {
			return 0, 0, ErrCorruptRow
		}
		i = j + 4*int(k)
		if !expired {
			col.Float32s = slices.Grow(col.Float32s, int(k))
			for raw := data[j:i]; len(raw) >= 4; raw = raw[4:] {
				col.Float32s = append(col.Float32s, math.Float32frombits(binary.LittleEndian.Uint32(raw)))
			}
		}
	case TypeInt64List:
		k, j := uvarintAt(data, i)
		if j < 0 || k > uint64(len(data)-j) {
			return 0, 0, ErrCorruptRow
		}
		i = j
		if !expired {
			col.Int64s = slices.Grow(col.Int64s, int(k))
		}
		for range k {
			var v int64
			if v, i = varintAt(data, i); i < 0 {
				return 0, 0, ErrCorruptRow
			}
			if !expired {
				col.Int64s = append(col.Int64s, v)
			}
		}
		// cellSize counts every element at its widest.
		return i, uvarintLen(int(k)) + binary.MaxVarintLen64*int(k), nil
	case TypeStringList:
		k, j := uvarintAt(data, i)
		if j < 0 || k > uint64(len(data)-j) {
			return 0, 0, ErrCorruptRow
		}
		i = j
		for range k {
			var raw []byte
			if raw, i = bytesAt(data, i); i < 0 {
				return 0, 0, ErrCorruptRow
			}
			if !expired {
				b.addString(c, len(col.Strings), raw)
				col.Strings = append(col.Strings, "")
			}
		}
	}
	// Every other type's size is that of its encoding: lengths are canonical uvarints.
	return i, i - start, nil
}

// uvarintAt reads the uvarint at data[i:] and returns it and the index after it, or -1
// for a malformed or overlong one (every row has exactly one encoding, see rowDecoder).
// Lengths are almost always one byte, which the inlined fast path reads.
func uvarintAt(data []byte, i int) (uint64, int) {
	if i < len(data) && data[i] < 0x80 {
		return uint64(data[i]), i + 1
	}
	return uvarintSlow(data, i)
}

// uvarintSlow is binary.Uvarint inlined into a loop over data (event times, eight bytes
// or so, come here for every cell read), refusing overlong encodings.
func uvarintSlow(data []byte, i int) (uint64, int) {
	if i < 0 {
		return 0, -1
	}
	// With eight bytes to read, one load finds the last byte of a varint of up to eight
	// (every event time, microseconds since 1970, takes eight) and shifts assemble it,
	// without a branch per byte.
	if i >= 0 && len(data)-i >= 8 {
		x := binary.LittleEndian.Uint64(data[i:])
		if stops := ^x & 0x8080808080808080; stops != 0 {
			last := bits.TrailingZeros64(stops) >> 3 // index of the varint's last byte
			if last > 0 && byte(x>>(8*last)) == 0 {
				return 0, -1 // overlong
			}
			x &= ^uint64(0) >> (56 - 8*last)
			v := x&0x7f | x>>1&(0x7f<<7) | x>>2&(0x7f<<14) | x>>3&(0x7f<<21) |
				x>>4&(0x7f<<28) | x>>5&(0x7f<<35) | x>>6&(0x7f<<42) | x>>7&(0x7f<<49)
			return v, i + last + 1
		}
	}
	var v uint64
	for s, j := uint(0), i; j < len(data); s += 7 {
		c := data[j]
		j++
		if c < 0x80 {
			if s == 63 && c > 1 || c == 0 && j-i > 1 {
				return 0, -1 // overflows 64 bits, or overlong
			}
			return v | uint64(c)<<s, j
		}
		if s == 63 {
			return 0, -1
		}
		v |= uint64(c&0x7f) << s
	}
	return 0, -1
}

// skipVarintAt returns the index after the varint at data[i:], or -1 where uvarintAt
// would refuse it (data ends first, overlong, past 64 bits), without assembling the
// value: a row has one encoding, whether or not a cell was asked for.
func skipVarintAt(data []byte, i int) int {
	if i < 0 {
		return -1
	}
	for j, end := i, min(len(data), i+binary.MaxVarintLen64); j < end; j++ {
		if c := data[j]; c < 0x80 {
			if c == 0 && j > i || c > 1 && j-i == binary.MaxVarintLen64-1 {
				return -1
			}
			return j + 1
		}
	}
	return -1
}

// varintAt is uvarintAt for zig-zag encoded signed integers.
func varintAt(data []byte, i int) (int64, int) {
	u, j := uvarintAt(data, i)
	return int64(u>>1) ^ -int64(u&1), j
}

// bytesAt reads a length-prefixed byte string; the result aliases data.
func bytesAt(data []byte, i int) ([]byte, int) {
	l, j := uvarintAt(data, i)
	if j < 0 || l > uint64(len(data)-j) {
		return nil, -1
	}
	end := j + int(l)
	return data[j:end:end], end
}

// skipValueAt returns the index after the value at data[i:], or -1.
func skipValueAt(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	t := ValueType(data[i])
	i++
	switch t {
	case TypeInt64:
		_, i = uvarintAt(data, i)
	case TypeDouble:
		i += 8
	case TypeString, TypeBytes:
		_, i = bytesAt(data, i)
	case TypeBool:
		i++
	case TypeFloatList:
		k, j := uvarintAt(data, i)
		if j < 0 || k > uint64(len(data)-j)/4 {
			return -1
		}
		i = j + 4*int(k)
	case TypeInt64List, TypeStringList:
		k, j := uvarintAt(data, i)
		if j < 0 || k > uint64(len(data)-j) {
			return -1
		}
		i = j
		for ; k > 0 && i >= 0; k-- {
			if t == TypeInt64List {
				_, i = uvarintAt(data, i)
			} else {
				_, i = bytesAt(data, i)
			}
		}
	default:
		return -1
	}
	if i > len(data) {
		return -1
	}
	return i
}

func (b *columnBuilder) addString(c, at int, raw []byte) {
	lo := len(b.arena)
	b.arena = append(b.arena, raw...)
	b.fixups = append(b.fixups, stringFixup{col: c, at: at, lo: lo, hi: len(b.arena)})
}

// endEntity closes entity d's lists in the columns lo..hi. It fails only when a column
// holds more list elements than the API's offsets can count.
func (b *columnBuilder) endEntity(lo, hi, d int) error {
	for c := lo; c < hi; c++ {
		col := &b.cols[c]
		var n int
		switch col.Type {
		case TypeFloatList:
			n = len(col.Float32s)
		case TypeInt64List:
			n = len(col.Int64s)
		case TypeStringList:
			n = len(col.Strings)
		default:
			continue
		}
		if n > math.MaxUint32 {
			return errResponseTooLarge
		}
		col.Offsets[d+1] = uint32(n)
	}
	return nil
}

// finish resolves the strings, spreads the columns to repeated ids, and returns one
// column per ref.
func (b *columnBuilder) finish() Columns {
	if len(b.fixups) > 0 {
		s := string(b.arena)
		for _, f := range b.fixups {
			b.cols[f.col].Strings[f.at] = s[f.lo:f.hi]
		}
	}
	if b.p.ndist < len(b.p.ids) {
		for c := range b.cols {
			b.cols[c] = b.cols[c].spread(b.p.dist)
		}
	}
	out := Columns{Refs: b.p.refs, Columns: make([]*Column, len(b.p.refs))}
	for f, c := range b.colOf {
		out.Columns[f] = &b.cols[c]
	}
	return out
}

// spread returns the column with entry e taken from entry dist[e] of c.
func (c *Column) spread(dist []int32) Column {
	n := len(dist)
	out := Column{Type: c.Type, Statuses: make([]FeatureStatus, n), EventTimes: make([]int64, n)}
	for e, d := range dist {
		out.Statuses[e], out.EventTimes[e] = c.Statuses[d], c.EventTimes[d]
	}
	switch c.Type {
	case TypeInt64:
		out.Int64s = gather(c.Int64s, dist)
	case TypeDouble:
		out.Float64s = gather(c.Float64s, dist)
	case TypeString:
		out.Strings = gather(c.Strings, dist)
	case TypeBytes:
		out.Bytes = gather(c.Bytes, dist)
	case TypeBool:
		out.Bools = gather(c.Bools, dist)
	case TypeFloatList:
		out.Float32s, out.Offsets = gatherLists(c.Float32s, c.Offsets, dist)
	case TypeInt64List:
		out.Int64s, out.Offsets = gatherLists(c.Int64s, c.Offsets, dist)
	case TypeStringList:
		out.Strings, out.Offsets = gatherLists(c.Strings, c.Offsets, dist)
	}
	return out
}

func gather[T any](in []T, dist []int32) []T {
	out := make([]T, len(dist))
	for e, d := range dist {
		out[e] = in[d]
	}
	return out
}

func gatherLists[T any](in []T, offsets []uint32, dist []int32) ([]T, []uint32) {
	total := 0
	for _, d := range dist {
		total += int(offsets[d+1] - offsets[d])
	}
	out := make([]T, 0, total)
	outOff := make([]uint32, len(dist)+1)
	for e, d := range dist {
		out = append(out, in[offsets[d]:offsets[d+1]]...)
		outOff[e+1] = uint32(len(out))
	}
	return out, outOff
}
