package client

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// Row builds a row.
func Row(entityID string, eventTime time.Time, values map[string]*pb.Value) *pb.FeatureRow {
	return &pb.FeatureRow{EntityId: entityID, EventTime: timestamppb.New(eventTime), Values: values}
}

// Int64 and the helpers below build a Value of each type.
func Int64(v int64) *pb.Value { return &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: v}} }

// Double builds a double Value.
func Double(v float64) *pb.Value { return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: v}} }

// String builds a string Value.
func String(v string) *pb.Value { return &pb.Value{Kind: &pb.Value_StringValue{StringValue: v}} }

// Bytes builds a bytes Value.
func Bytes(v []byte) *pb.Value { return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: v}} }

// Bool builds a bool Value.
func Bool(v bool) *pb.Value { return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: v}} }

// Floats builds a float_list Value, e.g. an embedding.
func Floats(v ...float32) *pb.Value {
	return &pb.Value{Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: v}}}
}

// Int64s builds an int64_list Value.
func Int64s(v ...int64) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Int64ListValue{Int64ListValue: &pb.Int64List{Values: v}}}
}

// Strings builds a string_list Value.
func Strings(v ...string) *pb.Value {
	return &pb.Value{Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: v}}}
}
