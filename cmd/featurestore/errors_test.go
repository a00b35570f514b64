package main

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// errorInfo returns the ErrorInfo of err's status, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// TestStableReasons checks, through the real transport, that errors carry an ErrorInfo
// with a stable reason and that rejected rows carry one too, so callers need not match text.
func TestStableReasons(t *testing.T) {
	conn, _, _ := startServer(t, nil)
	ctx := context.Background()
	c := pb.NewFeatureStoreServiceClient(conn)
	if _, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: allTypes}); err != nil {
		t.Fatal(err)
	}
	now := timestamppb.New(time.Now())
	_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "nope", Rows: []*pb.FeatureRow{{EntityId: "e", EventTime: now,
		Values: map[string]*pb.Value{"i": {Kind: &pb.Value_Int64Value{Int64Value: 1}}}}}})
	if info := errorInfo(err); status.Code(err) != codes.NotFound || info.GetReason() != "UNKNOWN_FEATURE_SET" || info.GetDomain() != server.ErrorDomain || info.GetMetadata()["field"] != "feature_set" {
		t.Fatalf("unknown set: %v, info %v", err, info)
	}
	_, err = c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "all_types", Rows: []*pb.FeatureRow{{EntityId: "e", EventTime: now,
		Values: map[string]*pb.Value{"i": {Kind: &pb.Value_StringValue{StringValue: "x"}}}}}})
	if info := errorInfo(err); status.Code(err) != codes.InvalidArgument || info.GetReason() != "INVALID_VALUE" {
		t.Fatalf("wrong type: %v, info %v", err, info)
	}

	st, err := c.BatchWriteFeatures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.BatchWriteFeaturesRequest{FeatureSet: "all_types", Rows: []*pb.FeatureRow{
		{EntityId: "e1", EventTime: now, Values: map[string]*pb.Value{"i": {Kind: &pb.Value_Int64Value{Int64Value: 1}}}},
		{EntityId: "e2", EventTime: now, Values: map[string]*pb.Value{"zz": {Kind: &pb.Value_Int64Value{Int64Value: 1}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	sum, err := st.CloseAndRecv()
	if err != nil || sum.GetRowsWritten() != 1 || len(sum.GetErrors()) != 1 || sum.GetErrors()[0].GetReason() != "UNKNOWN_FEATURE" {
		t.Fatalf("batch summary %v, err %v; want the unknown feature rejected with reason UNKNOWN_FEATURE", sum, err)
	}

	old, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "all_types", Rows: []*pb.FeatureRow{{EntityId: "e1",
		EventTime: timestamppb.New(now.AsTime().Add(-time.Hour)), Values: map[string]*pb.Value{"i": {Kind: &pb.Value_Int64Value{Int64Value: 2}}}}}})
	if err != nil || old.GetResults()[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_STALE || old.GetResults()[0].GetReason() != "STALE" {
		t.Fatalf("older row: %v %v, want STALE with reason STALE", old, err)
	}
}
