package server

import (
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

func featureSetFromProto(p *pb.FeatureSet) featurestore.FeatureSet {
	if p == nil {
		return featurestore.FeatureSet{}
	}
	fs := featurestore.FeatureSet{
		Name:         p.GetName(),
		EntityType:   p.GetEntityType(),
		TTL:          p.GetTtl().AsDuration(),
		Description:  p.GetDescription(),
		Owner:        p.GetOwner(),
		PersonalData: p.GetPersonalData(),
	}
	for _, f := range p.GetFeatures() {
		t := featurestore.ValueType(f.GetType())
		if !t.Valid() {
			t = featurestore.TypeUnspecified
		}
		fs.Features = append(fs.Features, featurestore.FeatureSpec{Name: f.GetName(), Type: t})
	}
	return fs
}

func featureSetToProto(fs featurestore.FeatureSet) *pb.FeatureSet {
	p := &pb.FeatureSet{
		Name:         fs.Name,
		EntityType:   fs.EntityType,
		Description:  fs.Description,
		Owner:        fs.Owner,
		PersonalData: fs.PersonalData,
		Version:      fs.Version,
	}
	if fs.TTL > 0 {
		p.Ttl = durationpb.New(fs.TTL)
	}
	for _, f := range fs.Features {
		p.Features = append(p.Features, &pb.FeatureSpec{Name: f.Name, Type: pb.ValueType(f.Type)})
	}
	return p
}

// valueFromProto converts a value; a value with no kind set is an error naming field.
func valueFromProto(field string, v *pb.Value) (featurestore.Value, error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Int64Value:
		return featurestore.Value{Type: featurestore.TypeInt64, Int: k.Int64Value}, nil
	case *pb.Value_DoubleValue:
		return featurestore.Value{Type: featurestore.TypeDouble, Float: k.DoubleValue}, nil
	case *pb.Value_StringValue:
		return featurestore.Value{Type: featurestore.TypeString, Str: k.StringValue}, nil
	case *pb.Value_BytesValue:
		return featurestore.Value{Type: featurestore.TypeBytes, Bytes: k.BytesValue}, nil
	case *pb.Value_BoolValue:
		return featurestore.Value{Type: featurestore.TypeBool, Bool: k.BoolValue}, nil
	case *pb.Value_FloatListValue:
		return featurestore.Value{Type: featurestore.TypeFloatList, Floats: k.FloatListValue.GetValues()}, nil
	case *pb.Value_Int64ListValue:
		return featurestore.Value{Type: featurestore.TypeInt64List, Ints: k.Int64ListValue.GetValues()}, nil
	case *pb.Value_StringListValue:
		return featurestore.Value{Type: featurestore.TypeStringList, Strs: k.StringListValue.GetValues()}, nil
	}
	return featurestore.Value{}, featurestore.Invalid(field, "a value is required")
}

func valueToProto(v featurestore.Value) *pb.Value {
	switch v.Type {
	case featurestore.TypeInt64:
		return &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: v.Int}}
	case featurestore.TypeDouble:
		return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: v.Float}}
	case featurestore.TypeString:
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: v.Str}}
	case featurestore.TypeBytes:
		return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: v.Bytes}}
	case featurestore.TypeBool:
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: v.Bool}}
	case featurestore.TypeFloatList:
		return &pb.Value{Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: v.Floats}}}
	case featurestore.TypeInt64List:
		return &pb.Value{Kind: &pb.Value_Int64ListValue{Int64ListValue: &pb.Int64List{Values: v.Ints}}}
	case featurestore.TypeStringList:
		return &pb.Value{Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: v.Strs}}}
	}
	return &pb.Value{}
}

// rowsFromProto converts rows; prefix names them in errors ("rows").
func rowsFromProto(prefix string, rows []*pb.FeatureRow) ([]featurestore.WriteRow, error) {
	out := make([]featurestore.WriteRow, len(rows))
	for i, r := range rows {
		field := fmt.Sprintf("%s[%d]", prefix, i)
		w := featurestore.WriteRow{EntityID: r.GetEntityId(), SubjectID: r.GetSubjectId()}
		if r.GetEventTime() == nil {
			return nil, featurestore.Invalid(field+".event_time", "is required")
		}
		if err := r.GetEventTime().CheckValid(); err != nil {
			return nil, featurestore.Invalid(field+".event_time", "is not a valid timestamp")
		}
		w.EventTime = r.GetEventTime().AsTime()
		w.Values = make(map[string]featurestore.Value, len(r.GetValues()))
		for name, v := range r.GetValues() {
			val, err := valueFromProto(fmt.Sprintf("%s.values[%q]", field, name), v)
			if err != nil {
				return nil, err
			}
			w.Values[name] = val
		}
		out[i] = w
	}
	return out, nil
}

func writeStatusToProto(s featurestore.WriteStatus) pb.WriteStatus {
	switch s {
	case featurestore.Written:
		return pb.WriteStatus_WRITE_STATUS_WRITTEN
	case featurestore.Stale:
		return pb.WriteStatus_WRITE_STATUS_STALE
	case featurestore.Rejected:
		return pb.WriteStatus_WRITE_STATUS_REJECTED
	}
	return pb.WriteStatus_WRITE_STATUS_UNSPECIFIED
}

func featureStatusToProto(s featurestore.FeatureStatus) pb.FeatureStatus {
	switch s {
	case featurestore.Present:
		return pb.FeatureStatus_FEATURE_STATUS_PRESENT
	case featurestore.NotFoundStatus:
		return pb.FeatureStatus_FEATURE_STATUS_NOT_FOUND
	case featurestore.Expired:
		return pb.FeatureStatus_FEATURE_STATUS_EXPIRED
	}
	return pb.FeatureStatus_FEATURE_STATUS_UNSPECIFIED
}

// rowsFromProtoLenient converts rows without failing: what cannot be converted (a value
// with no kind, a missing or invalid event time) is left for validation to reject, so that
// in the streaming and batch lanes one bad row never fails the rows around it.
func rowsFromProtoLenient(rows []*pb.FeatureRow) []featurestore.WriteRow {
	out := make([]featurestore.WriteRow, len(rows))
	for i, r := range rows {
		w := featurestore.WriteRow{EntityID: r.GetEntityId(), SubjectID: r.GetSubjectId()}
		if ts := r.GetEventTime(); ts != nil && ts.CheckValid() == nil {
			w.EventTime = ts.AsTime()
		}
		w.Values = make(map[string]featurestore.Value, len(r.GetValues()))
		for name, v := range r.GetValues() {
			val, _ := valueFromProto("", v) // an empty value has no type: validation names it
			w.Values[name] = val
		}
		out[i] = w
	}
	return out
}

func rowResultsToProto(results []featurestore.RowResult) []*pb.RowResult {
	out := make([]*pb.RowResult, len(results))
	for i, r := range results {
		out[i] = &pb.RowResult{Status: writeStatusToProto(r.Status), Version: r.Version, Error: r.Error, Reason: r.Reason}
	}
	return out
}

// valueArena hands out response values from arrays allocated once per response.
type valueArena struct {
	vals    []pb.Value
	doubles []pb.Value_DoubleValue
	ints    []pb.Value_Int64Value
	n       int
}

func newValueArena(n int) *valueArena { return &valueArena{vals: make([]pb.Value, n)} }

func (a *valueArena) next() *pb.Value {
	v := &a.vals[a.n]
	a.n++
	return v
}

func (a *valueArena) empty() *pb.Value { return a.next() }

// value converts v; the common scalar kinds come from arrays too.
func (a *valueArena) value(v featurestore.Value) *pb.Value {
	switch v.Type {
	case featurestore.TypeDouble:
		if a.doubles == nil {
			a.doubles = make([]pb.Value_DoubleValue, 0, len(a.vals))
		}
		a.doubles = append(a.doubles, pb.Value_DoubleValue{DoubleValue: v.Float})
		out := a.next()
		out.Kind = &a.doubles[len(a.doubles)-1]
		return out
	case featurestore.TypeInt64:
		if a.ints == nil {
			a.ints = make([]pb.Value_Int64Value, 0, len(a.vals))
		}
		a.ints = append(a.ints, pb.Value_Int64Value{Int64Value: v.Int})
		out := a.next()
		out.Kind = &a.ints[len(a.ints)-1]
		return out
	}
	out := a.next()
	out.Kind = valueToProto(v).Kind
	return out
}
