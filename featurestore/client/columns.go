package client

import (
	"context"
	"errors"
	"fmt"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// ErrNoColumn is returned (wrapped, with the ref) by a Columns view asked for a feature
// the request did not name.
var ErrNoColumn = errors.New("no column for this feature")

// ColumnTypeError is returned by a Columns view asked to read a column as a type it does
// not hold, e.g. Float64s on an int64 feature.
type ColumnTypeError struct {
	Feature string
	// Type is the column's type; Want is the type the caller asked for.
	Type, Want pb.ValueType
}

func (e *ColumnTypeError) Error() string {
	return fmt.Sprintf("feature %q is of type %s, not %s", e.Feature, e.Type, e.Want)
}

// Lists is a column of lists, flattened: entity i's list is
// Values[Offsets[i]:Offsets[i+1]], and Offsets has one entry more than there are
// entities.
type Lists[T any] struct {
	Values  []T
	Offsets []uint32
}

// Len is the number of lists (entities).
func (l Lists[T]) Len() int { return max(len(l.Offsets)-1, 0) }

// At returns entity i's list, sharing Values' memory. It panics if i is out of range.
func (l Lists[T]) At(i int) []T { return l.Values[l.Offsets[i]:l.Offsets[i+1]:l.Offsets[i+1]] }

// Columns is a typed view of a GetFeatureColumns response: per feature ref, its values as
// one packed slice, its statuses and its event times, entry i belonging to the request's
// i-th entity id. The slices are the response's own (nothing is copied): do not modify
// them. A cell that is not FEATURE_STATUS_PRESENT holds a filler (0, false, "", empty
// bytes, an empty list); its status says whether the feature was NOT_FOUND or EXPIRED.
// A Columns is safe for concurrent reads.
type Columns struct {
	entityIDs []string
	resp      *pb.GetFeatureColumnsResponse
	byRef     map[string]*pb.FeatureColumn
}

// NewColumns wraps a GetFeatureColumns response to the request for entityIDs. It checks
// that every column has one entry per entity (and consistent list offsets), so that the
// views never index out of range; a response that does not is an error.
func NewColumns(resp *pb.GetFeatureColumnsResponse, entityIDs []string) (*Columns, error) {
	n := len(entityIDs)
	c := &Columns{entityIDs: entityIDs, resp: resp, byRef: make(map[string]*pb.FeatureColumn, len(resp.GetColumns()))}
	for i, col := range resp.GetColumns() {
		if err := checkColumn(col, n); err != nil {
			return nil, fmt.Errorf("column %d (%q) of the response: %w", i, col.GetFeature(), err)
		}
		if _, dup := c.byRef[col.GetFeature()]; !dup { // a ref requested twice is answered twice, identically
			c.byRef[col.GetFeature()] = col
		}
	}
	return c, nil
}

func checkColumn(col *pb.FeatureColumn, n int) error {
	if len(col.GetStatuses()) != n || len(col.GetEventTimes()) != n {
		return fmt.Errorf("%d statuses and %d event times for %d entities", len(col.GetStatuses()), len(col.GetEventTimes()), n)
	}
	values := -1
	switch col.GetType() {
	case pb.ValueType_VALUE_TYPE_INT64:
		values = len(col.GetInt64Values())
	case pb.ValueType_VALUE_TYPE_DOUBLE:
		values = len(col.GetDoubleValues())
	case pb.ValueType_VALUE_TYPE_STRING:
		values = len(col.GetStringValues())
	case pb.ValueType_VALUE_TYPE_BYTES:
		values = len(col.GetBytesValues())
	case pb.ValueType_VALUE_TYPE_BOOL:
		values = len(col.GetBoolValues())
	case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
		return checkOffsets(col.GetListOffsets(), n, len(col.GetFloatListValues()))
	case pb.ValueType_VALUE_TYPE_INT64_LIST:
		return checkOffsets(col.GetListOffsets(), n, len(col.GetInt64ListValues()))
	case pb.ValueType_VALUE_TYPE_STRING_LIST:
		return checkOffsets(col.GetListOffsets(), n, len(col.GetStringListValues()))
	default:
		return fmt.Errorf("unknown type %v", col.GetType())
	}
	if values != n {
		return fmt.Errorf("%d values for %d entities", values, n)
	}
	return nil
}

func checkOffsets(offsets []uint32, n, values int) error {
	if len(offsets) != n+1 || offsets[0] != 0 || int(offsets[n]) != values {
		return fmt.Errorf("%d list offsets for %d entities and %d values", len(offsets), n, values)
	}
	for i := 1; i <= n; i++ {
		if offsets[i] < offsets[i-1] {
			return fmt.Errorf("list offsets decrease at entity %d", i-1)
		}
	}
	return nil
}

// ReadColumns calls GetFeatureColumns and returns its typed view. It is retried on
// UNAVAILABLE, like GetFeatureColumns.
func (c *Client) ReadColumns(ctx context.Context, refs, entityIDs []string) (*Columns, error) {
	resp, err := c.GetFeatureColumns(ctx, refs, entityIDs)
	if err != nil {
		return nil, err
	}
	return NewColumns(resp, entityIDs)
}

// EntityIDs are the request's entity ids: entry i of every column belongs to EntityIDs()[i].
func (c *Columns) EntityIDs() []string { return c.entityIDs }

// Response is the response the view reads.
func (c *Columns) Response() *pb.GetFeatureColumnsResponse { return c.resp }

// Column returns ref's column as sent, or an error wrapping ErrNoColumn.
func (c *Columns) Column(ref string) (*pb.FeatureColumn, error) {
	col, ok := c.byRef[ref]
	if !ok {
		return nil, fmt.Errorf("%q: %w", ref, ErrNoColumn)
	}
	return col, nil
}

// Statuses returns ref's statuses, or an error wrapping ErrNoColumn.
func (c *Columns) Statuses(ref string) ([]pb.FeatureStatus, error) {
	col, err := c.Column(ref)
	return col.GetStatuses(), err
}

// EventTimes returns ref's event times in microseconds since the Unix epoch (for EXPIRED
// the stored value's, 0 for NOT_FOUND), or an error wrapping ErrNoColumn.
func (c *Columns) EventTimes(ref string) ([]int64, error) {
	col, err := c.Column(ref)
	return col.GetEventTimes(), err
}

// typed returns ref's column if it holds type want: otherwise an error wrapping
// ErrNoColumn or a *ColumnTypeError.
func (c *Columns) typed(ref string, want pb.ValueType) (*pb.FeatureColumn, error) {
	col, err := c.Column(ref)
	if err != nil {
		return nil, err
	}
	if col.GetType() != want {
		return nil, &ColumnTypeError{Feature: ref, Type: col.GetType(), Want: want}
	}
	return col, nil
}

// Float64s returns a double feature's values and statuses. Errors: ErrNoColumn (wrapped),
// *ColumnTypeError.
func (c *Columns) Float64s(ref string) ([]float64, []pb.FeatureStatus, error) {
	col, err := c.typed(ref, pb.ValueType_VALUE_TYPE_DOUBLE)
	return col.GetDoubleValues(), col.GetStatuses(), err
}

// Int64s returns an int64 feature's values and statuses. Errors: as Float64s.
func (c *Columns) Int64s(ref string) ([]int64, []pb.FeatureStatus, error) {
	col, err := c.typed(ref, pb.ValueType_VALUE_TYPE_INT64)
	return col.GetInt64Values(), col.GetStatuses(), err
}

// Strings returns a string feature's values and statuses. Errors: as Float64s.
func (c *Columns) Strings(ref string) ([]string, []pb.FeatureStatus, error) {
	col, err := c.typed(ref, pb.ValueType_VALUE_TYPE_STRING)
	return col.GetStringValues(), col.GetStatuses(), err
}

// Bytes returns a bytes feature's values and statuses. Errors: as Float64s.
func (c *Columns) Bytes(ref string) ([][]byte, []pb.FeatureStatus, error) {
	col, err := c.typed(ref, pb.ValueType_VALUE_TYPE_BYTES)
	return col.GetBytesValues(), col.GetStatuses(), err
}

// Bools returns a bool feature's values and statuses. Errors: as Float64s.
func (c *Columns) Bools(ref string) ([]bool, []pb.FeatureStatus, error) {
	col, err := c.typed(ref, pb.ValueType_VALUE_TYPE_BOOL)
	return col.GetBoolValues(), col.GetStatuses(), err
}

// FloatLists returns a float_list feature's lists (embeddings) and statuses. Errors: as
// Float64s.
func (c *Columns) FloatLists(ref string) (Lists[float32], []pb.FeatureStatus, error) {
	col, err := c.typed(ref, pb.ValueType_VALUE_TYPE_FLOAT_LIST)
	return Lists[float32]{col.GetFloatListValues(), col.GetListOffsets()}, col.GetStatuses(), err
}

// Int64Lists returns an int64_list feature's lists and statuses. Errors: as Float64s.
func (c *Columns) Int64Lists(ref string) (Lists[int64], []pb.FeatureStatus, error) {
	col, err := c.typed(ref, pb.ValueType_VALUE_TYPE_INT64_LIST)
	return Lists[int64]{col.GetInt64ListValues(), col.GetListOffsets()}, col.GetStatuses(), err
}

// StringLists returns a string_list feature's lists and statuses. Errors: as Float64s.
func (c *Columns) StringLists(ref string) (Lists[string], []pb.FeatureStatus, error) {
	col, err := c.typed(ref, pb.ValueType_VALUE_TYPE_STRING_LIST)
	return Lists[string]{col.GetStringListValues(), col.GetListOffsets()}, col.GetStatuses(), err
}
