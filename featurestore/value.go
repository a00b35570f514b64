package featurestore

import (
	"bytes"
	"math"
	"slices"
)

// ValueType is the declared type of a feature.
type ValueType uint8

// The value types. The numbering matches the API's ValueType enum and is part of the
// stored row encoding: never renumber.
const (
	TypeUnspecified ValueType = iota
	TypeInt64
	TypeDouble
	TypeString
	TypeBytes
	TypeBool
	TypeFloatList
	TypeInt64List
	TypeStringList
	typeEnd
)

var typeNames = [...]string{"unspecified", "int64", "double", "string", "bytes", "bool", "float_list", "int64_list", "string_list"}

func (t ValueType) String() string {
	if t < typeEnd {
		return typeNames[t]
	}
	return "unknown"
}

// ParseValueType parses the lower-case names used in feature set files ("int64", "float_list").
func ParseValueType(s string) (ValueType, bool) {
	for i, n := range typeNames {
		if i > 0 && n == s {
			return ValueType(i), true
		}
	}
	return TypeUnspecified, false
}

// Valid reports whether t is a concrete type.
func (t ValueType) Valid() bool { return t > TypeUnspecified && t < typeEnd }

// Value is one feature value. Only the field that Type selects is meaningful.
type Value struct {
	Type   ValueType
	Int    int64
	Float  float64
	Str    string
	Bytes  []byte
	Bool   bool
	Floats []float32
	Ints   []int64
	Strs   []string
}

// Equal reports whether two values have the same type and content.
func (v Value) Equal(o Value) bool {
	if v.Type != o.Type {
		return false
	}
	switch v.Type {
	case TypeInt64:
		return v.Int == o.Int
	case TypeDouble:
		// Bitwise, so a retried write of exactly the same value (NaN included) is a no-op.
		return math.Float64bits(v.Float) == math.Float64bits(o.Float)
	case TypeString:
		return v.Str == o.Str
	case TypeBytes:
		return bytes.Equal(v.Bytes, o.Bytes)
	case TypeBool:
		return v.Bool == o.Bool
	case TypeFloatList:
		return slices.EqualFunc(v.Floats, o.Floats, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) })
	case TypeInt64List:
		return slices.Equal(v.Ints, o.Ints)
	case TypeStringList:
		return slices.Equal(v.Strs, o.Strs)
	}
	return true
}
