package main

import (
	"context"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// TestGdprEndToEnd erases a subject through the real server and then sends late rows on
// every lane: rows at or before the deletion are REJECTED, newer rows are accepted.
func TestGdprEndToEnd(t *testing.T) {
	conn, _, _ := startServer(t, map[string]string{"FS_GDPR_RATE": "1000"})
	ctx := context.Background()
	c, err := client.Dial(conn.Target(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.API().ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{
		Name: "profile", EntityType: "user", PersonalData: true, Features: []*pb.FeatureSpec{{Name: "age", Type: pb.ValueType_VALUE_TYPE_INT64}},
	}}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	row := func(entity string, at time.Time, age int64) *pb.FeatureRow {
		r := client.Row(entity, at, map[string]*pb.Value{"age": client.Int64(age)})
		r.SubjectId = "erin"
		return r
	}
	// A personal-data set requires a subject.
	if res, err := c.Write(ctx, "profile", client.Row("x", old, map[string]*pb.Value{"age": client.Int64(1)})); err == nil {
		t.Fatalf("row without subject accepted: %v", res)
	}
	if _, err := c.Write(ctx, "profile", row("u1", old, 30), row("u2", old, 31)); err != nil {
		t.Fatal(err)
	}
	g := pb.NewGdprServiceClient(conn)
	del, err := g.DeleteSubject(ctx, &pb.DeleteSubjectRequest{SubjectId: "erin", Reason: "ticket 7"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var d *pb.Deletion
	for {
		resp, err := g.GetDeletion(ctx, &pb.GetDeletionRequest{Id: del.GetDeletion().GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if d = resp.GetDeletion(); d.GetState() == pb.DeletionState_DELETION_STATE_DONE {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deletion not done: %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d.GetItemsDeleted() != 2 || d.GetCompletedAt() == nil {
		t.Fatalf("deletion %v, want 2 items and a completion time", d)
	}
	got, err := c.GetFeatures(ctx, []string{"profile:age"}, []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got.GetResults() {
		if r.GetStatuses()[0] != pb.FeatureStatus_FEATURE_STATUS_NOT_FOUND {
			t.Fatalf("%s after deletion: %v", r.GetEntityId(), r)
		}
	}

	// Late batch row (older) and a newer one.
	rows := []*pb.FeatureRow{row("u1", old, 40), row("u3", time.Now(), 41)}
	sum, err := c.BatchWrite(ctx, "profile", 10, client.RowsFrom(rows))
	if err != nil || sum.GetRowsRejected() != 1 || sum.GetRowsWritten() != 1 || sum.GetErrors()[0].GetRow() != 0 {
		t.Fatalf("late batch: %v %v, want row 0 rejected and row 1 written", sum, err)
	}
	// Late stream row.
	var ack *pb.StreamWriteFeaturesResponse
	w, err := c.NewStreamWriter(ctx, client.StreamOptions{OnAck: func(r *pb.StreamWriteFeaturesResponse) { ack = r }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Send("profile", row("u2", old.Add(time.Minute), 50)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := ack.GetResults()[0]; r.GetStatus() != pb.WriteStatus_WRITE_STATUS_REJECTED {
		t.Fatalf("late stream row: %v", r)
	}
	// Late on-demand row.
	res, err := c.Write(ctx, "profile", row("u2", old, 51))
	if err != nil || res[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_REJECTED {
		t.Fatalf("late on-demand row: %v %v", res, err)
	}
	got, _ = c.GetFeatures(ctx, []string{"profile:age"}, []string{"u1", "u2", "u3"})
	if got.GetResults()[0].GetStatuses()[0] != pb.FeatureStatus_FEATURE_STATUS_NOT_FOUND ||
		got.GetResults()[1].GetStatuses()[0] != pb.FeatureStatus_FEATURE_STATUS_NOT_FOUND ||
		got.GetResults()[2].GetValues()[0].GetInt64Value() != 41 {
		t.Fatalf("after late rows: %v", got.GetResults())
	}
}
