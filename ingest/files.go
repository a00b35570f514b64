package ingest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// Reserved column names; every other column must name a feature of the set.
const (
	ColEntityID  = "entity_id"
	ColSubjectID = "subject_id"
	ColEventTime = "event_time"
)

// Source yields the rows of a file, one at a time, so a file of any size is read in
// bounded memory.
type Source interface {
	// Next returns the next row, or io.EOF. Errors name the line or row.
	Next() (*pb.FeatureRow, error)
	// Progress reports how far the source is, in Unit, and the total (0 if unknown).
	Progress() (done, total int64)
	Unit() string
	Close() error
}

// Open opens path as format ("csv", "jsonl" or "parquet"; "" picks by extension) for the
// feature set fs. now is the event time of rows without an event_time column.
func Open(path, format string, fs *pb.FeatureSet, now time.Time) (Source, error) {
	if format == "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".csv":
			format = "csv"
		case ".jsonl", ".ndjson", ".json":
			format = "jsonl"
		case ".parquet", ".pq":
			format = "parquet"
		default:
			return nil, fmt.Errorf("%s: cannot tell the format from the extension; pass -format csv|jsonl|parquet", path)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	types := featureTypes(fs)
	var src Source
	switch format {
	case "csv":
		src, err = newCSV(f, st.Size(), types, now)
	case "jsonl":
		src = NewJSONL(f, st.Size(), types, now)
	case "parquet":
		src, err = newParquet(f, st.Size(), types, now)
	default:
		err = fmt.Errorf("unknown format %q (want csv, jsonl or parquet)", format)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return src, nil
}

func featureTypes(fs *pb.FeatureSet) map[string]featurestore.ValueType {
	types := make(map[string]featurestore.ValueType, len(fs.GetFeatures()))
	for _, f := range fs.GetFeatures() {
		types[f.GetName()] = featurestore.ValueType(f.GetType())
	}
	return types
}

// ParseValue parses text as a value of type t: numbers and booleans as Go parses them,
// bytes as base64, lists comma-separated.
func ParseValue(t featurestore.ValueType, s string) (*pb.Value, error) {
	list := func() []string {
		if s == "" {
			return nil
		}
		parts := strings.Split(s, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts
	}
	switch t {
	case featurestore.TypeInt64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an integer, got %q", s)
		}
		return &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: n}}, nil
	case featurestore.TypeDouble:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("want a number, got %q", s)
		}
		return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: f}}, nil
	case featurestore.TypeString:
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: s}}, nil
	case featurestore.TypeBytes:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("want base64, got %q", s)
		}
		return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: b}}, nil
	case featurestore.TypeBool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("want true or false, got %q", s)
		}
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: b}}, nil
	case featurestore.TypeFloatList:
		var out []float32
		for _, p := range list() {
			f, err := strconv.ParseFloat(p, 32)
			if err != nil {
				return nil, fmt.Errorf("want comma-separated numbers, got %q", p)
			}
			out = append(out, float32(f))
		}
		return &pb.Value{Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: out}}}, nil
	case featurestore.TypeInt64List:
		var out []int64
		for _, p := range list() {
			n, err := strconv.ParseInt(p, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("want comma-separated integers, got %q", p)
			}
			out = append(out, n)
		}
		return &pb.Value{Kind: &pb.Value_Int64ListValue{Int64ListValue: &pb.Int64List{Values: out}}}, nil
	case featurestore.TypeStringList:
		return &pb.Value{Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: list()}}}, nil
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

// ParseEventTime accepts RFC 3339 or Unix seconds (fractions allowed).
func ParseEventTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("event_time: want RFC 3339 or Unix seconds, got %q", s)
}

type csvSource struct {
	f      *os.File
	r      *csv.Reader
	size   int64
	cols   []string
	types  []featurestore.ValueType
	now    time.Time
	line   int
	header map[string]int
}

func newCSV(f *os.File, size int64, types map[string]featurestore.ValueType, now time.Time) (*csvSource, error) {
	r := csv.NewReader(bufio.NewReaderSize(f, 256<<10))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	s := &csvSource{f: f, r: r, size: size, now: now, line: 1, header: map[string]int{}}
	for i, h := range header {
		h = strings.TrimSpace(h)
		s.cols = append(s.cols, h)
		s.header[h] = i
		switch h {
		case ColEntityID, ColSubjectID, ColEventTime:
			s.types = append(s.types, featurestore.TypeUnspecified)
		default:
			t, ok := types[h]
			if !ok {
				return nil, fmt.Errorf("column %q is not a feature of the set (nor entity_id, subject_id or event_time)", h)
			}
			s.types = append(s.types, t)
		}
	}
	if _, ok := s.header[ColEntityID]; !ok {
		return nil, errors.New("no entity_id column")
	}
	return s, nil
}

func (s *csvSource) Next() (*pb.FeatureRow, error) {
	rec, err := s.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("line %d: %w", s.line+1, err)
	}
	s.line++
	row := &pb.FeatureRow{Values: make(map[string]*pb.Value, len(rec)), EventTime: timestamppb.New(s.now)}
	for i, cell := range rec {
		switch s.cols[i] {
		case ColEntityID:
			row.EntityId = cell
		case ColSubjectID:
			row.SubjectId = cell
		case ColEventTime:
			if cell != "" {
				t, err := ParseEventTime(cell)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", s.line, err)
				}
				row.EventTime = timestamppb.New(t)
			}
		default:
			if cell == "" {
				continue // no value for this feature in this row
			}
			v, err := ParseValue(s.types[i], cell)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", s.line, s.cols[i], err)
			}
			row.Values[s.cols[i]] = v
		}
	}
	return row, nil
}

// Progress counts the bytes parsed, not those read ahead into the buffer, so that the
// fraction and the ETA move with the rows.
func (s *csvSource) Progress() (int64, int64) { return s.r.InputOffset(), s.size }
func (s *csvSource) Unit() string             { return "bytes" }
func (s *csvSource) Close() error             { return s.f.Close() }

// JSONLSource reads JSON Lines: one object per line with entity_id, optional subject_id
// and event_time, and one member per feature.
type JSONLSource struct {
	c     io.Closer
	sc    *bufio.Scanner
	done  int64 // bytes of the lines scanned so far
	size  int64
	types map[string]featurestore.ValueType
	now   time.Time
	line  int
}

// NewJSONL reads JSON Lines from r (size 0 if unknown), e.g. for `fsctl stream` on stdin.
func NewJSONL(r io.Reader, size int64, types map[string]featurestore.ValueType, now time.Time) *JSONLSource {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	s := &JSONLSource{sc: sc, size: size, types: types, now: now}
	if c, ok := r.(io.Closer); ok {
		s.c = c
	}
	return s
}

// FeatureTypes returns the value types of a set's features, for NewJSONL.
func FeatureTypes(fs *pb.FeatureSet) map[string]featurestore.ValueType { return featureTypes(fs) }

func (s *JSONLSource) Next() (*pb.FeatureRow, error) {
	for s.sc.Scan() {
		s.line++
		s.done += int64(len(s.sc.Bytes())) + 1
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		row, err := s.parse(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", s.line, err)
		}
		return row, nil
	}
	if err := s.sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", s.line+1, err)
	}
	return nil, io.EOF
}

func (s *JSONLSource) parse(line []byte) (*pb.FeatureRow, error) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	row := &pb.FeatureRow{Values: make(map[string]*pb.Value, len(obj)), EventTime: timestamppb.New(s.now)}
	for k, raw := range obj {
		switch k {
		case ColEntityID, ColSubjectID:
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, fmt.Errorf("%s: want a string", k)
			}
			if k == ColEntityID {
				row.EntityId = v
			} else {
				row.SubjectId = v
			}
		case ColEventTime:
			var str string
			if err := json.Unmarshal(raw, &str); err != nil {
				str = string(raw) // a number of Unix seconds
			}
			t, err := ParseEventTime(str)
			if err != nil {
				return nil, err
			}
			row.EventTime = timestamppb.New(t)
		default:
			t, ok := s.types[k]
			if !ok {
				return nil, fmt.Errorf("%q is not a feature of the set", k)
			}
			if string(raw) == "null" {
				continue
			}
			v, err := jsonValue(t, raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			row.Values[k] = v
		}
	}
	return row, nil
}

func jsonValue(t featurestore.ValueType, raw json.RawMessage) (*pb.Value, error) {
	switch t {
	case featurestore.TypeString, featurestore.TypeBytes:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("want a string")
		}
		return ParseValue(t, s)
	case featurestore.TypeFloatList:
		var v []float32
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("want an array of numbers")
		}
		return &pb.Value{Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: v}}}, nil
	case featurestore.TypeInt64List:
		var v []int64
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("want an array of integers")
		}
		return &pb.Value{Kind: &pb.Value_Int64ListValue{Int64ListValue: &pb.Int64List{Values: v}}}, nil
	case featurestore.TypeStringList:
		var v []string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("want an array of strings")
		}
		return &pb.Value{Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: v}}}, nil
	}
	return ParseValue(t, string(raw)) // numbers and booleans in their JSON text
}

// Progress counts the bytes of the lines scanned (read-ahead excluded); the last line may
// lack its newline, hence the cap.
func (s *JSONLSource) Progress() (int64, int64) {
	if s.size > 0 && s.done > s.size {
		return s.size, s.size
	}
	return s.done, s.size
}
func (s *JSONLSource) Unit() string { return "bytes" }

// Close closes the underlying reader if it is a Closer.
func (s *JSONLSource) Close() error {
	if s.c != nil {
		return s.c.Close()
	}
	return nil
}

// parquetSource reads a Parquet file row by row through a small buffer. Flat columns map
// to features by name; a LIST column maps by its top-level name.
type parquetSource struct {
	f     *os.File
	r     *parquet.GenericReader[any] // any: rows as the file's schema has them
	buf   []parquet.Row
	n, i  int
	done  int64
	total int64
	cols  []parquetCol
	now   time.Time
	eof   bool
}

type parquetCol struct {
	name string
	kind string // entity, subject, time, feature
	t    featurestore.ValueType
	unit time.Duration // for time columns stored as integers
}

func newParquet(f *os.File, size int64, types map[string]featurestore.ValueType, now time.Time) (*parquetSource, error) {
	pf, err := parquet.OpenFile(f, size)
	if err != nil {
		return nil, err
	}
	s := &parquetSource{f: f, r: parquet.NewGenericReader[any](pf), buf: make([]parquet.Row, 256), total: pf.NumRows(), now: now}
	hasEntity := false
	for _, path := range pf.Schema().Columns() {
		name := path[0]
		leaf, _ := pf.Schema().Lookup(path...)
		c := parquetCol{name: name}
		switch name {
		case ColEntityID:
			c.kind, hasEntity = "entity", true
		case ColSubjectID:
			c.kind = "subject"
		case ColEventTime:
			c.kind, c.unit = "time", time.Microsecond
			if lt := leaf.Node.Type().LogicalType(); lt != nil {
				if ts, ok := lt.Value.(*format.TimestampType); ok {
					switch ts.Unit.Value.(type) {
					case *format.MilliSeconds:
						c.unit = time.Millisecond
					case *format.NanoSeconds:
						c.unit = time.Nanosecond
					}
				}
			}
		default:
			t, ok := types[name]
			if !ok {
				return nil, fmt.Errorf("column %q is not a feature of the set (nor entity_id, subject_id or event_time)", name)
			}
			c.kind, c.t = "feature", t
		}
		s.cols = append(s.cols, c)
	}
	if !hasEntity {
		return nil, errors.New("no entity_id column")
	}
	return s, nil
}

func (s *parquetSource) Next() (*pb.FeatureRow, error) {
	if s.i == s.n {
		if s.eof {
			return nil, io.EOF
		}
		n, err := s.r.ReadRows(s.buf)
		s.n, s.i = n, 0
		if errors.Is(err, io.EOF) {
			s.eof = true
		} else if err != nil {
			return nil, fmt.Errorf("row %d: %w", s.done+1, err)
		}
		if n == 0 {
			return nil, io.EOF
		}
	}
	prow := s.buf[s.i]
	s.i++
	s.done++
	row := &pb.FeatureRow{Values: map[string]*pb.Value{}, EventTime: timestamppb.New(s.now)}
	// Values of a repeated column come one after another in the row.
	byCol := map[int][]parquet.Value{}
	for _, v := range prow {
		byCol[v.Column()] = append(byCol[v.Column()], v)
	}
	for ci, vals := range byCol {
		c := s.cols[ci]
		if len(vals) == 1 && vals[0].IsNull() {
			continue
		}
		v := vals[0]
		switch c.kind {
		case "entity":
			row.EntityId = string(v.ByteArray())
		case "subject":
			row.SubjectId = string(v.ByteArray())
		case "time":
			if v.Kind() == parquet.ByteArray {
				t, err := ParseEventTime(string(v.ByteArray()))
				if err != nil {
					return nil, fmt.Errorf("row %d: %w", s.done, err)
				}
				row.EventTime = timestamppb.New(t)
			} else {
				row.EventTime = timestamppb.New(time.Unix(0, v.Int64()*int64(c.unit)))
			}
		case "feature":
			pv, err := parquetValue(c.t, vals)
			if err != nil {
				return nil, fmt.Errorf("row %d: %s: %w", s.done, c.name, err)
			}
			row.Values[c.name] = pv
		}
	}
	return row, nil
}

func parquetValue(t featurestore.ValueType, vals []parquet.Value) (*pb.Value, error) {
	v := vals[0]
	switch t {
	case featurestore.TypeInt64:
		return &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: v.Int64()}}, nil
	case featurestore.TypeDouble:
		if v.Kind() == parquet.Float {
			return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: float64(v.Float())}}, nil
		}
		return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: v.Double()}}, nil
	case featurestore.TypeString:
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: string(v.ByteArray())}}, nil
	case featurestore.TypeBytes:
		return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: append([]byte(nil), v.ByteArray()...)}}, nil
	case featurestore.TypeBool:
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: v.Boolean()}}, nil
	case featurestore.TypeFloatList:
		out := make([]float32, 0, len(vals))
		for _, x := range vals {
			if !x.IsNull() {
				out = append(out, x.Float())
			}
		}
		return &pb.Value{Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: out}}}, nil
	case featurestore.TypeInt64List:
		out := make([]int64, 0, len(vals))
		for _, x := range vals {
			if !x.IsNull() {
				out = append(out, x.Int64())
			}
		}
		return &pb.Value{Kind: &pb.Value_Int64ListValue{Int64ListValue: &pb.Int64List{Values: out}}}, nil
	case featurestore.TypeStringList:
		out := make([]string, 0, len(vals))
		for _, x := range vals {
			if !x.IsNull() {
				out = append(out, string(x.ByteArray()))
			}
		}
		return &pb.Value{Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: out}}}, nil
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

func (s *parquetSource) Progress() (int64, int64) { return s.done, s.total }
func (s *parquetSource) Unit() string             { return "rows" }
func (s *parquetSource) Close() error {
	s.r.Close()
	return s.f.Close()
}
