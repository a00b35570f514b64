package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
// i-th entity id. A cell that is not FEATURE_STATUS_PRESENT holds a filler (0, false, "",
// empty bytes, an empty list); its status says whether the feature was NOT_FOUND or
// EXPIRED. The slices the views return share the Columns' memory: do not modify them. A
// Columns is safe for concurrent reads.
//
// ReadColumns decodes the response from the wire straight into one array per element
// type (every column's doubles in one []float64, every column's statuses in one
// []FeatureStatus, and so on), so that a response costs a dozen allocations whatever its
// number of columns; generated messages would cost several per column, which at ranking
// sizes is as much CPU as the server spends answering.
type Columns struct {
	entityIDs []string
	cols      []column
	byRef     map[string]int
	// One array per field; column c's statuses and event times are entries
	// [c*n, (c+1)*n), its values and list offsets a run recorded in cols[c].
	statuses                  []pb.FeatureStatus
	times, int64s, int64Lists []int64
	doubles                   []float64
	strs, strLists            []string
	bytess                    [][]byte
	bools                     []bool
	floats                    []float32
	offsets                   []uint32

	respOnce sync.Once
	resp     *pb.GetFeatureColumnsResponse
}

// column is one column of a Columns: its ref and type, and where its values and list
// offsets are in the arrays of its type.
type column struct {
	feature string
	typ     pb.ValueType
	lo, hi  int // values
	off     int // list offsets: [off, off+n+1)
}

// NewColumns wraps a GetFeatureColumns response to the request for entityIDs, copying
// its arrays. It checks that every column has one entry per entity (and consistent list
// offsets), so that the views never index out of range; a response that does not is an
// error. Response returns resp itself.
func NewColumns(resp *pb.GetFeatureColumnsResponse, entityIDs []string) (*Columns, error) {
	c := &Columns{entityIDs: entityIDs}
	if err := c.fromProto(resp); err != nil {
		return nil, err
	}
	c.respOnce.Do(func() { c.resp = resp })
	return c, nil
}

// fromProto fills c from a decoded response.
func (c *Columns) fromProto(resp *pb.GetFeatureColumnsResponse) error {
	n := len(c.entityIDs)
	c.cols = make([]column, len(resp.GetColumns()))
	c.byRef = make(map[string]int, len(c.cols))
	for i, col := range resp.GetColumns() {
		if err := checkColumn(col, n); err != nil {
			return fmt.Errorf("column %d (%q) of the response: %w", i, col.GetFeature(), err)
		}
		cc := &c.cols[i]
		cc.feature, cc.typ = col.GetFeature(), col.GetType()
		c.statuses = append(c.statuses, col.GetStatuses()...)
		c.times = append(c.times, col.GetEventTimes()...)
		switch col.GetType() {
		case pb.ValueType_VALUE_TYPE_INT64:
			cc.lo, c.int64s = appendRun(c.int64s, col.GetInt64Values())
		case pb.ValueType_VALUE_TYPE_DOUBLE:
			cc.lo, c.doubles = appendRun(c.doubles, col.GetDoubleValues())
		case pb.ValueType_VALUE_TYPE_STRING:
			cc.lo, c.strs = appendRun(c.strs, col.GetStringValues())
		case pb.ValueType_VALUE_TYPE_BYTES:
			cc.lo, c.bytess = appendRun(c.bytess, col.GetBytesValues())
		case pb.ValueType_VALUE_TYPE_BOOL:
			cc.lo, c.bools = appendRun(c.bools, col.GetBoolValues())
		case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
			cc.lo, c.floats = appendRun(c.floats, col.GetFloatListValues())
		case pb.ValueType_VALUE_TYPE_INT64_LIST:
			cc.lo, c.int64Lists = appendRun(c.int64Lists, col.GetInt64ListValues())
		case pb.ValueType_VALUE_TYPE_STRING_LIST:
			cc.lo, c.strLists = appendRun(c.strLists, col.GetStringListValues())
		}
		cc.hi = cc.lo + valuesOf(col)
		cc.off, c.offsets = appendRun(c.offsets, col.GetListOffsets())
		if _, dup := c.byRef[cc.feature]; !dup { // a ref requested twice is answered twice, identically
			c.byRef[cc.feature] = i
		}
	}
	return nil
}

func appendRun[T any](to, run []T) (int, []T) { return len(to), append(to, run...) }

// valuesOf is how many values col holds of its own type.
func valuesOf(col *pb.FeatureColumn) int {
	switch col.GetType() {
	case pb.ValueType_VALUE_TYPE_INT64:
		return len(col.GetInt64Values())
	case pb.ValueType_VALUE_TYPE_DOUBLE:
		return len(col.GetDoubleValues())
	case pb.ValueType_VALUE_TYPE_STRING:
		return len(col.GetStringValues())
	case pb.ValueType_VALUE_TYPE_BYTES:
		return len(col.GetBytesValues())
	case pb.ValueType_VALUE_TYPE_BOOL:
		return len(col.GetBoolValues())
	case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
		return len(col.GetFloatListValues())
	case pb.ValueType_VALUE_TYPE_INT64_LIST:
		return len(col.GetInt64ListValues())
	case pb.ValueType_VALUE_TYPE_STRING_LIST:
		return len(col.GetStringListValues())
	}
	return -1
}

func checkColumn(col *pb.FeatureColumn, n int) error {
	if len(col.GetStatuses()) != n || len(col.GetEventTimes()) != n {
		return fmt.Errorf("%d statuses and %d event times for %d entities", len(col.GetStatuses()), len(col.GetEventTimes()), n)
	}
	return checkValues(col.GetType(), valuesOf(col), col.GetListOffsets(), n)
}

// checkValues checks a column of type typ, holding values values of its type and the
// list offsets offsets, against n entities.
func checkValues(typ pb.ValueType, values int, offsets []uint32, n int) error {
	switch typ {
	case pb.ValueType_VALUE_TYPE_INT64, pb.ValueType_VALUE_TYPE_DOUBLE, pb.ValueType_VALUE_TYPE_STRING,
		pb.ValueType_VALUE_TYPE_BYTES, pb.ValueType_VALUE_TYPE_BOOL:
		if values != n {
			return fmt.Errorf("%d values for %d entities", values, n)
		}
		return nil
	case pb.ValueType_VALUE_TYPE_FLOAT_LIST, pb.ValueType_VALUE_TYPE_INT64_LIST, pb.ValueType_VALUE_TYPE_STRING_LIST:
		return checkOffsets(offsets, n, values)
	}
	return fmt.Errorf("unknown type %v", typ)
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
// UNAVAILABLE, like GetFeatureColumns. A response that does not fit the request (see
// NewColumns) is an error with code INTERNAL, raised where gRPC decodes the response. It
// relies on the client's own codec: a codec forced through Options.DialOptions makes it
// fail.
func (c *Client) ReadColumns(ctx context.Context, refs, entityIDs []string) (*Columns, error) {
	cols := &Columns{entityIDs: entityIDs}
	// The client's codec decodes into cols (see wireColumns): the reply need not be a
	// generated message.
	err := c.conn.Invoke(ctx, pb.FeatureStoreService_GetFeatureColumns_FullMethodName,
		&pb.GetFeatureColumnsRequest{Features: refs, EntityIds: entityIDs}, (*wireColumns)(cols))
	if err != nil {
		return nil, err
	}
	return cols, nil
}

// EntityIDs are the request's entity ids: entry i of every column belongs to EntityIDs()[i].
func (c *Columns) EntityIDs() []string { return c.entityIDs }

// Response is the response the view reads, as generated messages whose repeated fields
// share the view's arrays. For a view ReadColumns made, it is built on the first call
// and holds what the views hold: each column's name, type, statuses, event times and the
// values (and list offsets) of its own type, not fields of other types a server might
// have sent as well. For NewColumns' it is the response given.
func (c *Columns) Response() *pb.GetFeatureColumnsResponse {
	c.respOnce.Do(func() {
		n := len(c.entityIDs)
		msgs := make([]pb.FeatureColumn, len(c.cols))
		c.resp = &pb.GetFeatureColumnsResponse{Columns: make([]*pb.FeatureColumn, len(c.cols))}
		for i := range c.cols {
			cc, m := &c.cols[i], &msgs[i]
			c.resp.Columns[i] = m
			m.Feature, m.Type = cc.feature, cc.typ
			m.Statuses, m.EventTimes = c.statuses[i*n:(i+1)*n:(i+1)*n], c.times[i*n:(i+1)*n:(i+1)*n]
			switch cc.typ {
			case pb.ValueType_VALUE_TYPE_INT64:
				m.Int64Values = run(c.int64s, cc)
			case pb.ValueType_VALUE_TYPE_DOUBLE:
				m.DoubleValues = run(c.doubles, cc)
			case pb.ValueType_VALUE_TYPE_STRING:
				m.StringValues = run(c.strs, cc)
			case pb.ValueType_VALUE_TYPE_BYTES:
				m.BytesValues = run(c.bytess, cc)
			case pb.ValueType_VALUE_TYPE_BOOL:
				m.BoolValues = run(c.bools, cc)
			case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
				m.FloatListValues, m.ListOffsets = run(c.floats, cc), c.listOffsets(cc)
			case pb.ValueType_VALUE_TYPE_INT64_LIST:
				m.Int64ListValues, m.ListOffsets = run(c.int64Lists, cc), c.listOffsets(cc)
			case pb.ValueType_VALUE_TYPE_STRING_LIST:
				m.StringListValues, m.ListOffsets = run(c.strLists, cc), c.listOffsets(cc)
			}
		}
	})
	return c.resp
}

// run is column cc's values in its type's array (nil when it has none).
func run[T any](all []T, cc *column) []T {
	if cc.lo == cc.hi {
		return nil
	}
	return all[cc.lo:cc.hi:cc.hi]
}

func (c *Columns) listOffsets(cc *column) []uint32 {
	end := cc.off + len(c.entityIDs) + 1
	return c.offsets[cc.off:end:end]
}

// Column returns ref's column as a generated message (see Response), or an error
// wrapping ErrNoColumn.
func (c *Columns) Column(ref string) (*pb.FeatureColumn, error) {
	i, err := c.index(ref)
	if err != nil {
		return nil, err
	}
	return c.Response().GetColumns()[i], nil
}

func (c *Columns) index(ref string) (int, error) {
	i, ok := c.byRef[ref]
	if !ok {
		return 0, fmt.Errorf("%q: %w", ref, ErrNoColumn)
	}
	return i, nil
}

// Statuses returns ref's statuses, or an error wrapping ErrNoColumn.
func (c *Columns) Statuses(ref string) ([]pb.FeatureStatus, error) {
	i, err := c.index(ref)
	if err != nil {
		return nil, err
	}
	return c.statusesOf(i), nil
}

func (c *Columns) statusesOf(i int) []pb.FeatureStatus {
	n := len(c.entityIDs)
	return c.statuses[i*n : (i+1)*n : (i+1)*n]
}

// EventTimes returns ref's event times in microseconds since the Unix epoch (for EXPIRED
// the stored value's, 0 for NOT_FOUND), or an error wrapping ErrNoColumn.
func (c *Columns) EventTimes(ref string) ([]int64, error) {
	i, err := c.index(ref)
	if err != nil {
		return nil, err
	}
	n := len(c.entityIDs)
	return c.times[i*n : (i+1)*n : (i+1)*n], nil
}

// typed returns ref's column and its statuses if it holds type want: otherwise an error
// wrapping ErrNoColumn or a *ColumnTypeError.
func (c *Columns) typed(ref string, want pb.ValueType) (*column, []pb.FeatureStatus, error) {
	i, err := c.index(ref)
	if err != nil {
		return nil, nil, err
	}
	cc := &c.cols[i]
	if cc.typ != want {
		return nil, nil, &ColumnTypeError{Feature: ref, Type: cc.typ, Want: want}
	}
	return cc, c.statusesOf(i), nil
}

// Float64s returns a double feature's values and statuses. Errors: ErrNoColumn (wrapped),
// *ColumnTypeError.
func (c *Columns) Float64s(ref string) ([]float64, []pb.FeatureStatus, error) {
	cc, st, err := c.typed(ref, pb.ValueType_VALUE_TYPE_DOUBLE)
	if err != nil {
		return nil, nil, err
	}
	return run(c.doubles, cc), st, nil
}

// Int64s returns an int64 feature's values and statuses. Errors: as Float64s.
func (c *Columns) Int64s(ref string) ([]int64, []pb.FeatureStatus, error) {
	cc, st, err := c.typed(ref, pb.ValueType_VALUE_TYPE_INT64)
	if err != nil {
		return nil, nil, err
	}
	return run(c.int64s, cc), st, nil
}

// Strings returns a string feature's values and statuses. Errors: as Float64s.
func (c *Columns) Strings(ref string) ([]string, []pb.FeatureStatus, error) {
	cc, st, err := c.typed(ref, pb.ValueType_VALUE_TYPE_STRING)
	if err != nil {
		return nil, nil, err
	}
	return run(c.strs, cc), st, nil
}

// Bytes returns a bytes feature's values and statuses. Errors: as Float64s.
func (c *Columns) Bytes(ref string) ([][]byte, []pb.FeatureStatus, error) {
	cc, st, err := c.typed(ref, pb.ValueType_VALUE_TYPE_BYTES)
	if err != nil {
		return nil, nil, err
	}
	return run(c.bytess, cc), st, nil
}

// Bools returns a bool feature's values and statuses. Errors: as Float64s.
func (c *Columns) Bools(ref string) ([]bool, []pb.FeatureStatus, error) {
	cc, st, err := c.typed(ref, pb.ValueType_VALUE_TYPE_BOOL)
	if err != nil {
		return nil, nil, err
	}
	return run(c.bools, cc), st, nil
}

// FloatLists returns a float_list feature's lists (embeddings) and statuses. Errors: as
// Float64s.
func (c *Columns) FloatLists(ref string) (Lists[float32], []pb.FeatureStatus, error) {
	cc, st, err := c.typed(ref, pb.ValueType_VALUE_TYPE_FLOAT_LIST)
	if err != nil {
		return Lists[float32]{}, nil, err
	}
	return Lists[float32]{run(c.floats, cc), c.listOffsets(cc)}, st, nil
}

// Int64Lists returns an int64_list feature's lists and statuses. Errors: as Float64s.
func (c *Columns) Int64Lists(ref string) (Lists[int64], []pb.FeatureStatus, error) {
	cc, st, err := c.typed(ref, pb.ValueType_VALUE_TYPE_INT64_LIST)
	if err != nil {
		return Lists[int64]{}, nil, err
	}
	return Lists[int64]{run(c.int64Lists, cc), c.listOffsets(cc)}, st, nil
}

// StringLists returns a string_list feature's lists and statuses. Errors: as Float64s.
func (c *Columns) StringLists(ref string) (Lists[string], []pb.FeatureStatus, error) {
	cc, st, err := c.typed(ref, pb.ValueType_VALUE_TYPE_STRING_LIST)
	if err != nil {
		return Lists[string]{}, nil, err
	}
	return Lists[string]{run(c.strLists, cc), c.listOffsets(cc)}, st, nil
}
