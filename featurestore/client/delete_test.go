package client

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// These tests follow the proto's contract for DeleteEntities, DeleteFeatureSet and
// ListFeatureSets pagination. They fail against a server that lacks those RPCs
// (UNIMPLEMENTED) or ignores page_size.

func TestDeleteEntities(t *testing.T) {
	addr := startServer(t)
	c := dial(t, addr, Options{})
	applySet(t, c, "s")
	ctx := testCtx(t)
	if _, err := c.Write(ctx, "s", Row("e1", time.Now(), map[string]*pb.Value{"n": Int64(1)}), Row("e2", time.Now(), map[string]*pb.Value{"n": Int64(2)})); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{1, 2}, readValues(t, c, "s:n", "e1", "e2")); diff != "" {
		t.Fatalf("before delete (-want +got):\n%s", diff)
	}
	got, err := c.DeleteEntities(ctx, "s", "e1", "e9")
	if err != nil {
		t.Fatalf("DeleteEntities: %v", err)
	}
	want := []*pb.EntityDeletion{{EntityId: "e1", Existed: true}, {EntityId: "e9", Existed: false}}
	if diff := cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreFields(&pb.EntityDeletion{}, "version")); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if len(got) == 2 && got[0].GetVersion() <= 0 {
		t.Errorf("version after delete %d, want a positive version", got[0].GetVersion())
	}
	// The read after the ack sees no old value; the other entity is untouched.
	if diff := cmp.Diff([]int64{-1, 2}, readValues(t, c, "s:n", "e1", "e2")); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
	// A later write recreates the row, at a higher version than the delete's.
	res, err := c.Write(ctx, "s", Row("e1", time.Now(), map[string]*pb.Value{"n": Int64(3)}))
	if err != nil || res[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_WRITTEN {
		t.Fatalf("write after delete: %v %v", res, err)
	}
	if len(got) == 2 && res[0].GetVersion() <= got[0].GetVersion() {
		t.Errorf("version went from %d (delete) to %d (write): versions must not go backwards", got[0].GetVersion(), res[0].GetVersion())
	}
	if _, err := c.DeleteEntities(ctx, "nope", "e1"); status.Code(err) != codes.NotFound {
		t.Errorf("delete from an unknown set: %v, want NotFound", err)
	}
}

func TestDeleteFeatureSet(t *testing.T) {
	addr := startServer(t)
	c := dial(t, addr, Options{})
	applySet(t, c, "s")
	ctx := testCtx(t)
	if _, err := c.Write(ctx, "s", Row("e1", time.Now(), map[string]*pb.Value{"n": Int64(1)})); err != nil {
		t.Fatal(err)
	}
	retired, err := c.DeleteFeatureSet(ctx, "s")
	if err != nil {
		t.Fatalf("DeleteFeatureSet: %v", err)
	}
	if retired.GetName() != "s" || len(retired.GetFeatures()) != 1 {
		t.Errorf("retired set %v, want s as it was", retired)
	}
	if _, err := c.GetFeatureSet(ctx, "s"); status.Code(err) != codes.NotFound {
		t.Errorf("get a retired set: %v, want NotFound", err)
	}
	if _, err := c.DeleteFeatureSet(ctx, "s"); status.Code(err) != codes.NotFound {
		t.Errorf("retire twice: %v, want NotFound", err)
	}
	_, err = c.ApplyFeatureSet(ctx, &pb.FeatureSet{Name: "s", EntityType: "e", Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("re-apply a retired name: %v, want FailedPrecondition", err)
	}
	if _, err := c.GetFeatures(ctx, []string{"s:n"}, []string{"e1"}); err == nil {
		t.Error("a retired set's rows are still served")
	}
}

func TestListPagination(t *testing.T) {
	addr := startServer(t)
	c := dial(t, addr, Options{})
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("set%d", i)
		applySet(t, c, name)
		want = append(want, name)
	}
	ctx := testCtx(t)
	// Page by page: at most two each, the last without a token. The order is the
	// server's (stable, not sorted), so the pages together must hold each set once.
	var pages [][]string
	var listed []string
	token := ""
	for range 10 {
		resp, err := c.ListFeatureSetsPage(ctx, 2, token)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, fs := range resp.GetFeatureSets() {
			names = append(names, fs.GetName())
		}
		pages = append(pages, names)
		listed = append(listed, names...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	for i, p := range pages {
		if len(p) > 2 {
			t.Errorf("page %d holds %d sets, more than page_size 2: %v", i, len(p), p)
		}
	}
	if len(pages) < 3 {
		t.Errorf("%d pages of at most 2 for 5 sets: %v", len(pages), pages)
	}
	slices.Sort(listed)
	if diff := cmp.Diff(want, listed); diff != "" {
		t.Errorf("sets over all pages (-want +got):\n%s", diff)
	}
	// The iterator walks every page, in the same order.
	var got, inOrder []string
	for _, p := range pages {
		inOrder = append(inOrder, p...)
	}
	for fs, err := range c.FeatureSets(ctx, 2) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fs.GetName())
	}
	if diff := cmp.Diff(inOrder, got); diff != "" {
		t.Errorf("FeatureSets (-pages +iterator):\n%s", diff)
	}
	if _, err := c.ListFeatureSetsPage(ctx, -1, ""); err == nil {
		t.Error("a negative page size was accepted")
	}
}
