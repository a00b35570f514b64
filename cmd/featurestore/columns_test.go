package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// allTypes is a feature set with one feature of every value type.
var allTypes = &pb.FeatureSet{
	Name: "all_types", EntityType: "thing", Ttl: durationpb.New(time.Hour),
	Features: []*pb.FeatureSpec{
		{Name: "i", Type: pb.ValueType_VALUE_TYPE_INT64},
		{Name: "d", Type: pb.ValueType_VALUE_TYPE_DOUBLE},
		{Name: "s", Type: pb.ValueType_VALUE_TYPE_STRING},
		{Name: "b", Type: pb.ValueType_VALUE_TYPE_BYTES},
		{Name: "t", Type: pb.ValueType_VALUE_TYPE_BOOL},
		{Name: "fl", Type: pb.ValueType_VALUE_TYPE_FLOAT_LIST},
		{Name: "il", Type: pb.ValueType_VALUE_TYPE_INT64_LIST},
		{Name: "sl", Type: pb.ValueType_VALUE_TYPE_STRING_LIST},
	},
}

// randomValue returns a random value of type t.
func randomValue(rng *rand.Rand, t pb.ValueType) *pb.Value {
	n := rng.IntN(4)
	switch t {
	case pb.ValueType_VALUE_TYPE_INT64:
		return &pb.Value{Kind: &pb.Value_Int64Value{Int64Value: rng.Int64() - rng.Int64()}}
	case pb.ValueType_VALUE_TYPE_DOUBLE:
		return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: rng.NormFloat64()}}
	case pb.ValueType_VALUE_TYPE_STRING:
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: fmt.Sprintf("s%d", rng.IntN(1000))}}
	case pb.ValueType_VALUE_TYPE_BYTES:
		return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: []byte(fmt.Sprintf("b%d", rng.IntN(1000)))}}
	case pb.ValueType_VALUE_TYPE_BOOL:
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: rng.IntN(2) == 1}}
	case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
		v := make([]float32, n)
		for i := range v {
			v[i] = rng.Float32()
		}
		return &pb.Value{Kind: &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: v}}}
	case pb.ValueType_VALUE_TYPE_INT64_LIST:
		v := make([]int64, n)
		for i := range v {
			v[i] = rng.Int64()
		}
		return &pb.Value{Kind: &pb.Value_Int64ListValue{Int64ListValue: &pb.Int64List{Values: v}}}
	default:
		v := make([]string, n)
		for i := range v {
			v[i] = fmt.Sprintf("e%d", rng.IntN(100))
		}
		return &pb.Value{Kind: &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: v}}}
	}
}

// rowsFromColumns rebuilds the row-wise response from a columnar one, with the fillers of
// cells that are not present replaced by the row-wise form's empty values.
func rowsFromColumns(ids []string, cols []*pb.FeatureColumn) []*pb.EntityResult {
	out := make([]*pb.EntityResult, len(ids))
	for e, id := range ids {
		er := &pb.EntityResult{EntityId: id}
		for _, c := range cols {
			er.Statuses = append(er.Statuses, c.GetStatuses()[e])
			er.EventTimes = append(er.EventTimes, timestamppb.New(time.UnixMicro(c.GetEventTimes()[e])))
			v := &pb.Value{}
			if c.GetStatuses()[e] == pb.FeatureStatus_FEATURE_STATUS_PRESENT {
				switch c.GetType() {
				case pb.ValueType_VALUE_TYPE_INT64:
					v.Kind = &pb.Value_Int64Value{Int64Value: c.GetInt64Values()[e]}
				case pb.ValueType_VALUE_TYPE_DOUBLE:
					v.Kind = &pb.Value_DoubleValue{DoubleValue: c.GetDoubleValues()[e]}
				case pb.ValueType_VALUE_TYPE_STRING:
					v.Kind = &pb.Value_StringValue{StringValue: c.GetStringValues()[e]}
				case pb.ValueType_VALUE_TYPE_BYTES:
					v.Kind = &pb.Value_BytesValue{BytesValue: c.GetBytesValues()[e]}
				case pb.ValueType_VALUE_TYPE_BOOL:
					v.Kind = &pb.Value_BoolValue{BoolValue: c.GetBoolValues()[e]}
				case pb.ValueType_VALUE_TYPE_FLOAT_LIST:
					o := c.GetListOffsets()
					v.Kind = &pb.Value_FloatListValue{FloatListValue: &pb.FloatList{Values: c.GetFloatListValues()[o[e]:o[e+1]]}}
				case pb.ValueType_VALUE_TYPE_INT64_LIST:
					o := c.GetListOffsets()
					v.Kind = &pb.Value_Int64ListValue{Int64ListValue: &pb.Int64List{Values: c.GetInt64ListValues()[o[e]:o[e+1]]}}
				case pb.ValueType_VALUE_TYPE_STRING_LIST:
					o := c.GetListOffsets()
					v.Kind = &pb.Value_StringListValue{StringListValue: &pb.StringList{Values: c.GetStringListValues()[o[e]:o[e+1]]}}
				}
			}
			er.Values = append(er.Values, v)
		}
		out[e] = er
	}
	return out
}

// TestFeatureColumnsAgreeWithRows reads a random mix of present, missing and expired
// values of every type, repeated features and repeated entities included, both ways
// through the real server, and requires the same answer.
func TestFeatureColumnsAgreeWithRows(t *testing.T) {
	conn, _, _ := startServer(t, nil)
	ctx := context.Background()
	c := pb.NewFeatureStoreServiceClient(conn)
	if _, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: allTypes}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	var rows []*pb.FeatureRow
	for e := 0; e < 40; e++ {
		at := time.Now().Add(-time.Minute)
		if rng.IntN(5) == 0 {
			at = time.Now().Add(-2 * time.Hour) // older than the ttl: EXPIRED
		}
		row := &pb.FeatureRow{EntityId: fmt.Sprintf("e%d", e), EventTime: timestamppb.New(at), Values: map[string]*pb.Value{}}
		for _, f := range allTypes.GetFeatures() {
			if rng.IntN(3) > 0 {
				row.Values[f.GetName()] = randomValue(rng, f.GetType())
			}
		}
		if len(row.Values) > 0 {
			rows = append(rows, row)
		}
	}
	// Setup through the client library, which retries UNAVAILABLE as clients should: a
	// loaded DynamoDB Local can miss the tests' short write deadline.
	cl, err := client.Dial(conn.Target(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Write(ctx, "all_types", rows...); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 20; round++ {
		var refs, ids []string
		for i := 0; i < 1+rng.IntN(10); i++ {
			refs = append(refs, "all_types:"+allTypes.GetFeatures()[rng.IntN(len(allTypes.GetFeatures()))].GetName())
		}
		for i := 0; i < 1+rng.IntN(50); i++ {
			ids = append(ids, fmt.Sprintf("e%d", rng.IntN(50))) // e40..e49 were never written
		}
		rowsResp, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: refs, EntityIds: ids})
		if err != nil {
			t.Fatal(err)
		}
		colsResp, err := c.GetFeatureColumns(ctx, &pb.GetFeatureColumnsRequest{Features: refs, EntityIds: ids})
		if err != nil {
			t.Fatal(err)
		}
		for f, col := range colsResp.GetColumns() {
			if col.GetFeature() != refs[f] || len(col.GetStatuses()) != len(ids) || len(col.GetEventTimes()) != len(ids) {
				t.Fatalf("column %d: feature %q, %d statuses, %d times for %d entities", f, col.GetFeature(), len(col.GetStatuses()), len(col.GetEventTimes()), len(ids))
			}
			if o := col.GetListOffsets(); o != nil && len(o) != len(ids)+1 {
				t.Fatalf("column %d: %d list offsets for %d entities", f, len(o), len(ids))
			}
		}
		want := rowsResp.GetResults()
		for _, er := range want { // the row-wise form leaves NOT_FOUND times unset
			for f, ts := range er.EventTimes {
				if ts == nil {
					er.EventTimes[f] = timestamppb.New(time.UnixMicro(0))
				}
			}
		}
		if diff := cmp.Diff(want, rowsFromColumns(ids, colsResp.GetColumns()), protocmp.Transform()); diff != "" {
			t.Fatalf("round %d: columns disagree with rows (-rows +columns):\n%s", round, diff)
		}
	}
}
