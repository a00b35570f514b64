package client

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// codec is grpc's proto codec, except that it decodes a GetFeatureColumns response for
// ReadColumns (a *wireColumns) itself, into the Columns' flat arrays.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2("proto")} }

// wireColumns is a Columns as the reply of a call: what codec decodes into.
type wireColumns Columns

// Unmarshal implements encoding.CodecV2.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	w, ok := v.(*wireColumns)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return (*Columns)(w).unmarshal(buf.ReadOnlyData())
}

// unmarshal fills c (with its entity ids set) from an encoded GetFeatureColumnsResponse.
// decodeWire takes the encoding the server writes (every repeated scalar packed, no
// unknown fields, every column the request's shape); anything else is decoded by
// proto.Unmarshal and checked by NewColumns' rules, so both give the same view and the
// same errors.
func (c *Columns) unmarshal(b []byte) error {
	if c.decodeWire(b) {
		return nil
	}
	var resp pb.GetFeatureColumnsResponse
	if err := proto.Unmarshal(b, &resp); err != nil {
		return err
	}
	*c = Columns{entityIDs: c.entityIDs}
	if err := c.fromProto(&resp); err != nil {
		return err
	}
	c.respOnce.Do(func() { c.resp = &resp })
	return nil
}

// The field numbers of FeatureColumn (featurestore.proto).
const (
	fcFeature protowire.Number = iota + 1
	fcType
	fcStatuses
	fcEventTimes
	fcInt64Values
	fcDoubleValues
	fcStringValues
	fcBytesValues
	fcBoolValues
	fcFloatListValues
	fcInt64ListValues
	fcStringListValues
	fcListOffsets
	fcFields = fcListOffsets
)

// ownField is the field that holds the values of each type.
var ownField = [...]protowire.Number{
	pb.ValueType_VALUE_TYPE_INT64:       fcInt64Values,
	pb.ValueType_VALUE_TYPE_DOUBLE:      fcDoubleValues,
	pb.ValueType_VALUE_TYPE_STRING:      fcStringValues,
	pb.ValueType_VALUE_TYPE_BYTES:       fcBytesValues,
	pb.ValueType_VALUE_TYPE_BOOL:        fcBoolValues,
	pb.ValueType_VALUE_TYPE_FLOAT_LIST:  fcFloatListValues,
	pb.ValueType_VALUE_TYPE_INT64_LIST:  fcInt64ListValues,
	pb.ValueType_VALUE_TYPE_STRING_LIST: fcStringListValues,
}

// decodeWire fills c from b and reports true, or reports false (c unspecified) where b
// is not in the form it handles.
func (c *Columns) decodeWire(b []byte) bool {
	// Pass 1: check the framing and count every field's elements over all columns, so
	// that each field is decoded into one array of the right size.
	var total [fcFields + 1]int
	ncols, strBytes, bytesBytes := 0, 0, 0
	for rest := b; len(rest) > 0; ncols++ {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return false
		}
		m, k := protowire.ConsumeBytes(rest[n:])
		if k < 0 {
			return false
		}
		rest = rest[n+k:]
		for len(m) > 0 {
			num, typ, n := protowire.ConsumeTag(m)
			if n < 0 || num < fcFeature || num > fcFields {
				return false
			}
			m = m[n:]
			if num == fcType {
				if typ != protowire.VarintType {
					return false
				}
				_, k := protowire.ConsumeVarint(m)
				if k < 0 {
					return false
				}
				m = m[k:]
				continue
			}
			if typ != protowire.BytesType {
				return false // an unpacked repeated scalar, or a wire type the field does not have
			}
			v, k := protowire.ConsumeBytes(m)
			if k < 0 {
				return false
			}
			m = m[k:]
			switch num {
			case fcFeature, fcStringValues, fcStringListValues:
				if !utf8.Valid(v) {
					return false
				}
				strBytes += len(v)
				total[num]++
			case fcBytesValues:
				bytesBytes += len(v)
				total[num]++
			case fcDoubleValues:
				if len(v)%8 != 0 {
					return false
				}
				total[num] += len(v) / 8
			case fcFloatListValues:
				if len(v)%4 != 0 {
					return false
				}
				total[num] += len(v) / 4
			default: // packed varints
				cnt, ok := countVarints(v)
				if !ok {
					return false
				}
				total[num] += cnt
			}
		}
	}

	ents := len(c.entityIDs)
	if total[fcStatuses] != ncols*ents || total[fcEventTimes] != ncols*ents {
		return false
	}
	c.cols = make([]column, ncols)
	c.byRef = make(map[string]int, ncols)
	c.statuses = make([]pb.FeatureStatus, 0, total[fcStatuses])
	c.times = make([]int64, 0, total[fcEventTimes])
	c.int64s = make([]int64, 0, total[fcInt64Values])
	c.doubles = make([]float64, 0, total[fcDoubleValues])
	c.bools = make([]bool, 0, total[fcBoolValues])
	c.floats = make([]float32, 0, total[fcFloatListValues])
	c.int64Lists = make([]int64, 0, total[fcInt64ListValues])
	c.offsets = make([]uint32, 0, total[fcListOffsets])
	c.strs = make([]string, 0, total[fcStringValues])
	c.strLists = make([]string, 0, total[fcStringListValues])
	var bytesArena []byte
	if total[fcBytesValues] > 0 {
		c.bytess = make([][]byte, 0, total[fcBytesValues])
		bytesArena = make([]byte, 0, bytesBytes)
	}
	// Strings are cut from one, built without a second copy once every piece is in.
	var sb strings.Builder
	sb.Grow(strBytes)
	spans := make([]strSpan, 0, total[fcFeature]+total[fcStringValues]+total[fcStringListValues])

	// Pass 2: decode. Pass 1 checked the framing, so only a varint or the column's shape
	// can fail here.
	for i, rest := 0, b; len(rest) > 0; i++ {
		_, _, n := protowire.ConsumeTag(rest)
		m, k := protowire.ConsumeBytes(rest[n:])
		rest = rest[n+k:]
		cc := &c.cols[i]
		var at [fcFields + 1]int
		at[fcStatuses], at[fcEventTimes], at[fcInt64Values], at[fcDoubleValues] = len(c.statuses), len(c.times), len(c.int64s), len(c.doubles)
		at[fcBoolValues], at[fcFloatListValues], at[fcInt64ListValues], at[fcListOffsets] = len(c.bools), len(c.floats), len(c.int64Lists), len(c.offsets)
		at[fcStringValues], at[fcStringListValues], at[fcBytesValues] = len(c.strs), len(c.strLists), len(c.bytess)
		featureSpan := -1
		for len(m) > 0 {
			// Pass 1 checked every tag and length; most are one byte.
			var num protowire.Number
			if m[0] < 0x80 {
				num, m = protowire.Number(m[0]>>3), m[1:]
			} else {
				var n int
				num, _, n = protowire.ConsumeTag(m)
				m = m[n:]
			}
			if num == fcType {
				v, k := protowire.ConsumeVarint(m)
				m = m[k:]
				cc.typ = pb.ValueType(int32(v))
				continue
			}
			var v []byte
			if m[0] < 0x80 {
				l := int(m[0])
				v, m = m[1:1+l], m[1+l:]
			} else {
				var k int
				v, k = protowire.ConsumeBytes(m)
				m = m[k:]
			}
			switch num {
			case fcFeature: // the last one given wins
				if featureSpan < 0 {
					featureSpan = len(spans)
					spans = append(spans, strSpan{kind: fcFeature, at: i})
				}
				spans[featureSpan].lo, spans[featureSpan].hi = sb.Len(), sb.Len()+len(v)
				sb.Write(v)
			case fcStringValues:
				spans = append(spans, strSpan{kind: fcStringValues, at: len(c.strs), lo: sb.Len(), hi: sb.Len() + len(v)})
				c.strs = append(c.strs, "")
				sb.Write(v)
			case fcStringListValues:
				spans = append(spans, strSpan{kind: fcStringListValues, at: len(c.strLists), lo: sb.Len(), hi: sb.Len() + len(v)})
				c.strLists = append(c.strLists, "")
				sb.Write(v)
			case fcBytesValues:
				lo := len(bytesArena)
				bytesArena = append(bytesArena, v...)
				c.bytess = append(c.bytess, bytesArena[lo:len(bytesArena):len(bytesArena)])
			case fcDoubleValues:
				for ; len(v) > 0; v = v[8:] {
					c.doubles = append(c.doubles, math.Float64frombits(binary.LittleEndian.Uint64(v)))
				}
			case fcFloatListValues:
				for ; len(v) > 0; v = v[4:] {
					c.floats = append(c.floats, math.Float32frombits(binary.LittleEndian.Uint32(v)))
				}
			default:
				if !c.decodeVarints(num, v) {
					return false
				}
			}
		}
		// The column's shape, as NewColumns checks it (the fallback gives the error).
		lens := [fcFields + 1]int{fcStatuses: len(c.statuses), fcEventTimes: len(c.times), fcInt64Values: len(c.int64s),
			fcDoubleValues: len(c.doubles), fcBoolValues: len(c.bools), fcFloatListValues: len(c.floats),
			fcInt64ListValues: len(c.int64Lists), fcListOffsets: len(c.offsets), fcStringValues: len(c.strs),
			fcStringListValues: len(c.strLists), fcBytesValues: len(c.bytess)}
		if lens[fcStatuses]-at[fcStatuses] != ents || lens[fcEventTimes]-at[fcEventTimes] != ents ||
			cc.typ <= 0 || int(cc.typ) >= len(ownField) {
			return false
		}
		own := ownField[cc.typ]
		cc.lo, cc.hi, cc.off = at[own], lens[own], at[fcListOffsets]
		if checkValues(cc.typ, cc.hi-cc.lo, c.offsets[cc.off:], ents) != nil {
			return false
		}
	}
	all := sb.String()
	for _, sp := range spans {
		switch sp.kind {
		case fcFeature:
			c.cols[sp.at].feature = all[sp.lo:sp.hi]
		case fcStringValues:
			c.strs[sp.at] = all[sp.lo:sp.hi]
		default:
			c.strLists[sp.at] = all[sp.lo:sp.hi]
		}
	}
	// A ref requested twice is answered twice, identically: the first column is the one
	// looked up. Going backwards, the first overwrites the others.
	for i := len(c.cols) - 1; i >= 0; i-- {
		c.byRef[c.cols[i].feature] = i
	}
	return true
}

// decodeVarints appends the packed varints v of field num to its array, or reports false
// for one that is more than ten bytes or past 64 bits.
func (c *Columns) decodeVarints(num protowire.Number, v []byte) bool {
	var ok bool
	switch num {
	case fcStatuses:
		c.statuses, ok = appendStatuses(c.statuses, v)
		return ok
	case fcEventTimes:
		c.times, ok = appendInt64s(c.times, v)
		return ok
	case fcInt64Values:
		c.int64s, ok = appendInt64s(c.int64s, v)
		return ok
	case fcInt64ListValues:
		c.int64Lists, ok = appendInt64s(c.int64Lists, v)
		return ok
	case fcBoolValues:
		return appendVarints(&c.bools, v, func(x uint64) bool { return x != 0 })
	case fcListOffsets:
		return appendVarints(&c.offsets, v, func(x uint64) uint32 { return uint32(x) })
	}
	return true
}

// appendStatuses and appendInt64s are appendVarints for the two fields every column has
// (statuses, one byte each; event times, eight), written out so that no call is made
// per element.
func appendStatuses(s []pb.FeatureStatus, v []byte) ([]pb.FeatureStatus, bool) {
	for i := 0; i < len(v); {
		if b := v[i]; b < 0x80 {
			s = append(s, pb.FeatureStatus(b))
			i++
			continue
		}
		x, k := protowire.ConsumeVarint(v[i:])
		if k < 0 {
			return s, false
		}
		s = append(s, pb.FeatureStatus(int32(x)))
		i += k
	}
	return s, true
}

func appendInt64s(s []int64, v []byte) ([]int64, bool) {
	for len(v) > 0 {
		x, k := protowire.ConsumeVarint(v)
		if k < 0 {
			return s, false
		}
		s = append(s, int64(x))
		v = v[k:]
	}
	return s, true
}

// appendVarints appends the packed varints v to *to, each converted by conv (which the
// compiler inlines into this loop, one instance per element type).
func appendVarints[T any](to *[]T, v []byte, conv func(uint64) T) bool {
	s := *to
	for len(v) > 0 {
		if v[0] < 0x80 {
			s = append(s, conv(uint64(v[0])))
			v = v[1:]
			continue
		}
		x, k := protowire.ConsumeVarint(v)
		if k < 0 {
			return false
		}
		s = append(s, conv(x))
		v = v[k:]
	}
	*to = s
	return true
}

// strSpan says that a string is all[lo:hi] of the strings decoded: the feature of
// column at, or element at of the string values or the string list values, as kind says.
type strSpan struct {
	kind       protowire.Number
	at, lo, hi int
}

// countVarints counts the varints packed in v, one ending at each byte below 0x80, eight
// bytes at a time; ok is false if the last one is cut short.
func countVarints(v []byte) (n int, ok bool) {
	if len(v) > 0 && v[len(v)-1] >= 0x80 {
		return 0, false
	}
	const high = 0x8080808080808080
	for ; len(v) >= 8; v = v[8:] {
		n += bits.OnesCount64(^binary.LittleEndian.Uint64(v) & high)
	}
	for _, x := range v {
		if x < 0x80 {
			n++
		}
	}
	return n, true
}
