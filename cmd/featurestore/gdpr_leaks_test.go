package main

import (
	"context"
	"strings"
	"testing"
	"time"

	vk "github.com/valkey-io/valkey-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// gdprEnv is a server with a personal-data set "p" of int64 features a and b.
type gdprEnv struct {
	ts   testServer
	c    *client.Client
	gdpr pb.GdprServiceClient
}

func newGdprEnv(t *testing.T, extra map[string]string) *gdprEnv {
	t.Helper()
	env := map[string]string{"FS_GDPR_RATE": "1000", "FS_GDPR_INDEX_SETTLE": "500ms"}
	for k, v := range extra {
		env[k] = v
	}
	ts := startServerAt(t, env)
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := client.Dial(ts.addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.API().ApplyFeatureSet(context.Background(), &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{
		Name: "p", EntityType: "user", PersonalData: true, Features: []*pb.FeatureSpec{
			{Name: "a", Type: pb.ValueType_VALUE_TYPE_INT64}, {Name: "b", Type: pb.ValueType_VALUE_TYPE_INT64}},
	}}); err != nil {
		t.Fatal(err)
	}
	return &gdprEnv{ts: ts, c: c, gdpr: pb.NewGdprServiceClient(conn)}
}

func subjectRow(subject, entity string, at time.Time, values map[string]*pb.Value) *pb.FeatureRow {
	r := client.Row(entity, at, values)
	r.SubjectId = subject
	return r
}

// erase files a deletion of subject and waits until it is DONE or FAILED.
func (e *gdprEnv) erase(t *testing.T, subject string) *pb.Deletion {
	t.Helper()
	ctx := context.Background()
	del, err := e.gdpr.DeleteSubject(ctx, &pb.DeleteSubjectRequest{SubjectId: subject, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return e.wait(t, del.GetDeletion().GetId())
}

func (e *gdprEnv) wait(t *testing.T, id string) *pb.Deletion {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		resp, err := e.gdpr.GetDeletion(context.Background(), &pb.GetDeletionRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDeletion()
		if st := d.GetState(); st == pb.DeletionState_DELETION_STATE_DONE || st == pb.DeletionState_DELETION_STATE_FAILED {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("deletion %s not finished: %v", id, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// served returns entity's value of feature f of set p, or ok=false when it is not PRESENT.
func (e *gdprEnv) served(t *testing.T, entity, f string) (int64, bool) {
	t.Helper()
	got, err := e.c.GetFeatures(context.Background(), []string{"p:" + f}, []string{entity})
	if err != nil {
		t.Fatal(err)
	}
	r := got.GetResults()[0]
	return r.GetValues()[0].GetInt64Value(), r.GetStatuses()[0] == pb.FeatureStatus_FEATURE_STATUS_PRESENT
}

func (e *gdprEnv) flushCache(t *testing.T) {
	t.Helper()
	c, err := vk.NewClient(vk.ClientOption{InitAddress: []string{e.ts.valkey.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(context.Background(), c.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

// TestGdprErasesFutureDatedValues: a value written under the subject before the deletion
// is the subject's data whatever its event time (skewed producer clocks, forecasts), so
// it must be gone from DynamoDB and ValKey after DONE.
func TestGdprErasesFutureDatedValues(t *testing.T) {
	e := newGdprEnv(t, nil)
	ctx := context.Background()
	future := time.Now().Add(5 * time.Minute)
	if _, err := e.c.Write(ctx, "p", subjectRow("alice", "u1", future, map[string]*pb.Value{"a": client.Int64(7)})); err != nil {
		t.Fatal(err)
	}
	if v, ok := e.served(t, "u1", "a"); !ok || v != 7 {
		t.Fatalf("before the deletion u1.a = %d (present %v), want 7", v, ok)
	}
	d := e.erase(t, "alice")
	if d.GetState() != pb.DeletionState_DELETION_STATE_DONE {
		t.Fatalf("deletion %v, want DONE", d)
	}
	if v, ok := e.served(t, "u1", "a"); ok {
		t.Fatalf("after DONE the cache still serves alice's future-dated value %d", v)
	}
	e.flushCache(t)
	if v, ok := e.served(t, "u1", "a"); ok {
		t.Fatalf("after DONE DynamoDB still holds alice's future-dated value %d", v)
	}
}

// TestGdprLaterWriterCannotHideRows: carol writes a on an entity, dave then writes b on
// the same entity. The row's single subject attribute used to become dave, the
// by_subject index stopped listing it under carol, and carol's deletion left a=111
// served. A value belongs to the subject that wrote it: mixing subjects on one entity is
// refused, so the index always finds carol's values.
func TestGdprLaterWriterCannotHideRows(t *testing.T) {
	e := newGdprEnv(t, nil)
	ctx := context.Background()
	now := time.Now().Add(-time.Second)
	if _, err := e.c.Write(ctx, "p", subjectRow("carol", "shared", now, map[string]*pb.Value{"a": client.Int64(111)})); err != nil {
		t.Fatal(err)
	}
	_, daveErr := e.c.Write(ctx, "p", subjectRow("dave", "shared", now.Add(time.Millisecond), map[string]*pb.Value{"b": client.Int64(222)}))
	d := e.erase(t, "carol")
	if d.GetState() != pb.DeletionState_DELETION_STATE_DONE {
		t.Fatalf("deletion %v, want DONE", d)
	}
	if v, ok := e.served(t, "shared", "a"); ok {
		t.Fatalf("after carol's deletion is DONE her value a=%d is still served", v)
	}
	e.flushCache(t)
	if v, ok := e.served(t, "shared", "a"); ok {
		t.Fatalf("after carol's deletion is DONE DynamoDB still holds a=%d", v)
	}
	if st := status.Convert(daveErr); st.Code() != codes.FailedPrecondition || !strings.HasPrefix(st.Message(), "rows[0].subject_id") {
		t.Fatalf("dave's write on carol's entity: %v, want FAILED_PRECONDITION naming rows[0].subject_id", daveErr)
	}
	// Once carol's row is gone the entity is free: dave may write it.
	if res, err := e.c.Write(ctx, "p", subjectRow("dave", "shared", time.Now(), map[string]*pb.Value{"b": client.Int64(222)})); err != nil || res[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_WRITTEN {
		t.Fatalf("dave's write after carol's erasure: %v %v", res, err)
	}
}

// TestGdprItemsDeletedCountsEveryItem: items_deleted counts the items that held the
// subject's values, including future-dated ones, so the job's report cannot hide a leak.
func TestGdprItemsDeletedCountsEveryItem(t *testing.T) {
	e := newGdprEnv(t, nil)
	ctx := context.Background()
	past, future := time.Now().Add(-time.Minute), time.Now().Add(5*time.Minute)
	for _, r := range []*pb.FeatureRow{
		subjectRow("frank", "u1", past, map[string]*pb.Value{"a": client.Int64(1)}),
		subjectRow("frank", "u2", future, map[string]*pb.Value{"a": client.Int64(2)}),
		subjectRow("frank", "u3", past, map[string]*pb.Value{"a": client.Int64(3), "b": client.Int64(4)}),
		subjectRow("gina", "u4", past, map[string]*pb.Value{"a": client.Int64(5)}),
	} {
		if _, err := e.c.Write(ctx, "p", r); err != nil {
			t.Fatal(err)
		}
	}
	if d := e.erase(t, "frank"); d.GetState() != pb.DeletionState_DELETION_STATE_DONE || d.GetItemsDeleted() != 3 {
		t.Fatalf("deletion %v, want DONE with items_deleted 3", d)
	}
	if v, ok := e.served(t, "u4", "a"); !ok || v != 5 {
		t.Fatalf("another subject's row: %d (present %v), want 5", v, ok)
	}
}
