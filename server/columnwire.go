package server

import (
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// columnsReply is GetFeatureColumns' answer as served: the domain's columns, which the
// server's codec writes straight to the wire (see marshal), with the same bytes as
// proto.Marshal of columnsToProto's message but none of its hundreds of messages.
type columnsReply struct {
	refs []string // the request's refs: the columns' names, in order
	res  featurestore.Columns
}

// statusWire is each domain status as the API numbers it.
var statusWire = func() (t [featurestore.Expired + 1]pb.FeatureStatus) {
	for s := range t {
		t[s] = featureStatusToProto(featurestore.FeatureStatus(s))
	}
	return t
}()

func toWireStatus(s featurestore.FeatureStatus) pb.FeatureStatus {
	if int(s) < len(statusWire) {
		return statusWire[s]
	}
	return pb.FeatureStatus_FEATURE_STATUS_UNSPECIFIED
}

// marshal encodes r as a GetFeatureColumnsResponse: fields in number order, repeated
// scalars packed, as protobuf-go writes it, into one buffer of the exact size. At
// ranking sizes (10 entities x 100 features) this is about a third of the CPU that
// columnsToProto and protobuf's generic marshaller took.
func (r *columnsReply) marshal() (mem.BufferSlice, error) {
	cols := r.res.Columns
	// Each column's size is needed twice (the total, then its length prefix); up to a
	// ranking request's width they are kept on the stack.
	var small [128]int
	sizes := small[:0]
	if len(cols) > len(small) {
		sizes = make([]int, 0, len(cols))
	}
	size := 0
	for f, col := range cols {
		n, err := columnSize(r.refs[f], col)
		if err != nil {
			return nil, err
		}
		sizes = append(sizes, n)
		size += 1 + protowire.SizeBytes(n) // the tag of field 1 is one byte
	}

	var buf *[]byte
	var b []byte
	pool := mem.DefaultBufferPool()
	if mem.IsBelowBufferPoolingThreshold(size) {
		b = make([]byte, 0, size)
	} else {
		buf = pool.Get(size)
		b = (*buf)[:0]
	}
	for f, col := range cols {
		b = append(b, tag(1, protowire.BytesType))
		b = protowire.AppendVarint(b, uint64(sizes[f]))
		b = appendColumn(b, r.refs[f], col)
	}
	if buf == nil {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// errInvalidUTF8 is what the server answers (INTERNAL) for a column holding a string
// that is not UTF-8, as protobuf's marshaller refuses one.
var errInvalidUTF8 = errors.New("proto: string field contains invalid UTF-8")

// Every field number of FeatureColumn is below 16, so each tag is one byte.
func tag(num protowire.Number, typ protowire.Type) byte { return byte(uint64(num)<<3 | uint64(typ)) }

// columnSize is the encoded size of column col named ref, without its own tag and
// length.
func columnSize(ref string, col *featurestore.Column) (int, error) {
	n := 0
	if ref != "" {
		if !utf8.ValidString(ref) {
			return 0, errInvalidUTF8
		}
		n += 1 + protowire.SizeBytes(len(ref))
	}
	if col.Type != 0 {
		n += 1 + protowire.SizeVarint(uint64(col.Type))
	}
	n += packedSize(statusesSize(col.Statuses))
	n += packedSize(int64sSize(col.EventTimes))
	var err error
	switch col.Type {
	case featurestore.TypeInt64:
		n += packedSize(int64sSize(col.Int64s))
	case featurestore.TypeDouble:
		n += packedSize(8 * len(col.Float64s))
	case featurestore.TypeString, featurestore.TypeStringList:
		var s int
		s, err = stringsSize(col.Strings)
		n += s
	case featurestore.TypeBytes:
		for _, v := range col.Bytes {
			n += 1 + protowire.SizeBytes(len(v))
		}
	case featurestore.TypeBool:
		n += packedSize(len(col.Bools))
	case featurestore.TypeFloatList:
		n += packedSize(4 * len(col.Float32s))
	case featurestore.TypeInt64List:
		n += packedSize(int64sSize(col.Int64s))
	}
	if isList(col.Type) {
		n += packedSize(offsetsSize(col.Offsets))
	}
	return n, err
}

func isList(t featurestore.ValueType) bool {
	return t == featurestore.TypeFloatList || t == featurestore.TypeInt64List || t == featurestore.TypeStringList
}

// appendColumn appends the fields of column col named ref, in field number order (as
// columnsToProto fills them); columnSize has checked its strings.
func appendColumn(b []byte, ref string, col *featurestore.Column) []byte {
	if ref != "" {
		b = protowire.AppendString(append(b, tag(1, protowire.BytesType)), ref)
	}
	if col.Type != 0 {
		b = protowire.AppendVarint(append(b, tag(2, protowire.VarintType)), uint64(col.Type))
	}
	if vs := col.Statuses; len(vs) > 0 {
		b = protowire.AppendVarint(append(b, tag(3, protowire.BytesType)), uint64(statusesSize(vs)))
		for _, v := range vs {
			b = append(b, byte(toWireStatus(v))) // API statuses are below 0x80
		}
	}
	b = appendInt64s(b, 4, col.EventTimes)
	switch col.Type {
	case featurestore.TypeInt64:
		b = appendInt64s(b, 5, col.Int64s)
	case featurestore.TypeDouble:
		if vs := col.Float64s; len(vs) > 0 {
			b = protowire.AppendVarint(append(b, tag(6, protowire.BytesType)), uint64(8*len(vs)))
			for _, v := range vs {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
			}
		}
	case featurestore.TypeString:
		for _, v := range col.Strings {
			b = protowire.AppendString(append(b, tag(7, protowire.BytesType)), v)
		}
	case featurestore.TypeBytes:
		for _, v := range col.Bytes {
			b = protowire.AppendBytes(append(b, tag(8, protowire.BytesType)), v)
		}
	case featurestore.TypeBool:
		if vs := col.Bools; len(vs) > 0 {
			b = protowire.AppendVarint(append(b, tag(9, protowire.BytesType)), uint64(len(vs)))
			for _, v := range vs {
				x := byte(0)
				if v {
					x = 1
				}
				b = append(b, x)
			}
		}
	case featurestore.TypeFloatList:
		if vs := col.Float32s; len(vs) > 0 {
			b = protowire.AppendVarint(append(b, tag(10, protowire.BytesType)), uint64(4*len(vs)))
			for _, v := range vs {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
			}
		}
	case featurestore.TypeInt64List:
		b = appendInt64s(b, 11, col.Int64s)
	case featurestore.TypeStringList:
		for _, v := range col.Strings {
			b = protowire.AppendString(append(b, tag(12, protowire.BytesType)), v)
		}
	}
	if isList(col.Type) {
		if vs := col.Offsets; len(vs) > 0 {
			b = protowire.AppendVarint(append(b, tag(13, protowire.BytesType)), uint64(offsetsSize(vs)))
			for _, v := range vs {
				b = protowire.AppendVarint(b, uint64(v))
			}
		}
	}
	return b
}

// packedSize is the size of a packed field (tag, length, elements) whose elements take
// n bytes; an empty one is left out, as protobuf leaves it.
func packedSize(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + protowire.SizeBytes(n)
}

func statusesSize(vs []featurestore.FeatureStatus) int { return len(vs) } // one byte each

func int64sSize(vs []int64) int {
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(uint64(v))
	}
	return n
}

func offsetsSize(vs []uint32) int {
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(uint64(v))
	}
	return n
}

func appendInt64s(b []byte, num protowire.Number, vs []int64) []byte {
	if len(vs) == 0 {
		return b
	}
	b = protowire.AppendVarint(append(b, tag(num, protowire.BytesType)), uint64(int64sSize(vs)))
	for _, v := range vs {
		b = protowire.AppendVarint(b, uint64(v))
	}
	return b
}

func stringsSize(vs []string) (int, error) {
	n := 0
	for _, v := range vs {
		if !utf8.ValidString(v) {
			return 0, errInvalidUTF8
		}
		n += 1 + protowire.SizeBytes(len(v))
	}
	return n, nil
}
