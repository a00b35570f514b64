package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

func laneClient(t *testing.T, conn *grpc.ClientConn) *client.Client {
	t.Helper()
	c, err := client.Dial(conn.Target(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if _, err := c.API().ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{
		Name: "counts", EntityType: "user",
		Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}, {Name: "tag", Type: pb.ValueType_VALUE_TYPE_STRING}},
	}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func readN(t *testing.T, c *client.Client, ids ...string) []int64 {
	t.Helper()
	resp, err := c.GetFeatures(context.Background(), []string{"counts:n"}, ids)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(ids))
	for i, r := range resp.GetResults() {
		out[i] = r.GetValues()[0].GetInt64Value()
	}
	return out
}

// TestStreamOrdersPerKey sends many requests touching one hot key with increasing event
// times, concurrently with other keys. If the server reordered two of them, the older
// one would be answered STALE.
func TestStreamOrdersPerKey(t *testing.T) {
	conn, _, _ := startServer(t, nil)
	c := laneClient(t, conn)
	base := time.Now().Add(-time.Hour)
	var mu sync.Mutex
	acks := map[int64]*pb.StreamWriteFeaturesResponse{}
	w, err := c.NewStreamWriter(context.Background(), client.StreamOptions{MaxUnacked: 16, OnAck: func(r *pb.StreamWriteFeaturesResponse) {
		mu.Lock()
		acks[r.GetSequence()] = r
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 120
	for i := int64(1); i <= n; i++ {
		at := base.Add(time.Duration(i) * time.Millisecond)
		if _, err := w.Send("counts",
			client.Row("hot", at, map[string]*pb.Value{"n": client.Int64(i)}),
			client.Row(fmt.Sprintf("cold-%d", i%7), at, map[string]*pb.Value{"n": client.Int64(i)}),
		); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(acks) != n {
		t.Fatalf("%d acks, want %d", len(acks), n)
	}
	for seq, a := range acks {
		for j, r := range a.GetResults() {
			if r.GetStatus() != pb.WriteStatus_WRITE_STATUS_WRITTEN {
				t.Fatalf("sequence %d row %d: %v %q: the lane reordered writes to one key", seq, j, r.GetStatus(), r.GetError())
			}
		}
	}
	if got := readN(t, c, "hot"); got[0] != n {
		t.Fatalf("hot = %d, want %d", got[0], n)
	}
}

func TestStreamRejectsBadRowsOnly(t *testing.T) {
	conn, _, _ := startServer(t, nil)
	c := laneClient(t, conn)
	var got *pb.StreamWriteFeaturesResponse
	w, err := c.NewStreamWriter(context.Background(), client.StreamOptions{OnAck: func(r *pb.StreamWriteFeaturesResponse) { got = r }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := w.Send("counts",
		client.Row("a", now, map[string]*pb.Value{"n": client.Int64(1)}),
		client.Row("b", now, map[string]*pb.Value{"n": client.String("not a number")}),
		client.Row("", now, map[string]*pb.Value{"n": client.Int64(3)}),
		client.Row("d", now, map[string]*pb.Value{"n": client.Int64(4)}),
	); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		status pb.WriteStatus
		reason string
	}{
		{pb.WriteStatus_WRITE_STATUS_WRITTEN, ""},
		{pb.WriteStatus_WRITE_STATUS_REJECTED, `rows[1].values["n"]: value of type string`},
		{pb.WriteStatus_WRITE_STATUS_REJECTED, "rows[2].entity_id: is required"},
		{pb.WriteStatus_WRITE_STATUS_WRITTEN, ""},
	}
	for i, w := range want {
		r := got.GetResults()[i]
		if r.GetStatus() != w.status || !strings.HasPrefix(r.GetError(), w.reason) {
			t.Errorf("row %d: %v %q, want %v %q", i, r.GetStatus(), r.GetError(), w.status, w.reason)
		}
	}
	if v := readN(t, c, "a", "d"); v[0] != 1 || v[1] != 4 {
		t.Fatalf("rows around the bad ones: %v, want [1 4]", v)
	}
}

// TestStreamDisconnectAndResend breaks the stream mid-way (the server restarts its
// connections by stopping; here: the client's stream context is cancelled) and resends
// what was not acknowledged on a new stream: nothing acknowledged is lost and the resent
// rows are idempotent.
func TestStreamDisconnectAndResend(t *testing.T) {
	conn, _, _ := startServer(t, nil)
	c := laneClient(t, conn)
	base := time.Now().Add(-time.Hour)
	rows := func(i int64) []*pb.FeatureRow {
		return []*pb.FeatureRow{client.Row(fmt.Sprintf("u%d", i%5), base.Add(time.Duration(i)*time.Millisecond), map[string]*pb.Value{"n": client.Int64(i)})}
	}
	// First stream: send 40, cancel after some acks.
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	acked := map[int64]bool{}
	w1, err := c.NewStreamWriter(ctx, client.StreamOptions{Reconnects: 1, OnAck: func(r *pb.StreamWriteFeaturesResponse) {
		mu.Lock()
		acked[r.GetSequence()] = true
		n := len(acked)
		mu.Unlock()
		if n == 15 {
			cancel() // the client goes away mid-stream
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	sent := int64(0)
	for i := int64(1); i <= 40; i++ {
		if _, err := w1.Send("counts", rows(i)...); err != nil {
			break
		}
		sent = i
	}
	_ = w1.Close()
	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	if nAcked < 15 {
		t.Fatalf("only %d acks before the disconnect", nAcked)
	}
	// Everything acknowledged is durable.
	for seq := range acked {
		i := seq
		if got := readN(t, c, fmt.Sprintf("u%d", i%5)); got[0] < i-5 {
			t.Fatalf("acked row %d lost: u%d = %d", i, i%5, got[0])
		}
	}
	// Second stream: resend everything (acked or not). Nothing is rejected: a resent row
	// that had landed merges as a no-op (WRITTEN), one older than a later row is STALE.
	var results []*pb.RowResult
	w2, err := c.NewStreamWriter(context.Background(), client.StreamOptions{OnAck: func(r *pb.StreamWriteFeaturesResponse) {
		mu.Lock()
		results = append(results, r.GetResults()...)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 40; i++ {
		if _, err := w2.Send("counts", rows(i)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	if len(results) != 40 {
		t.Fatalf("%d results for 40 resent rows", len(results))
	}
	for _, r := range results {
		if r.GetStatus() == pb.WriteStatus_WRITE_STATUS_REJECTED {
			t.Fatalf("resent row: %v %q", r.GetStatus(), r.GetError())
		}
	}
	got := readN(t, c, "u0", "u1", "u2", "u3", "u4")
	want := []int64{40, 36, 37, 38, 39}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("after resend: %v, want %v (sent %d on the first stream)", got, want, sent)
		}
	}
}

func TestBatchSummary(t *testing.T) {
	conn, _, _ := startServer(t, nil)
	c := laneClient(t, conn)
	ctx := context.Background()
	now := time.Now()
	// A stored value newer than the batch's row for "old" makes that row stale.
	if _, err := c.Write(ctx, "counts", client.Row("old", now, map[string]*pb.Value{"n": client.Int64(100)})); err != nil {
		t.Fatal(err)
	}
	var rows []*pb.FeatureRow
	for i := 0; i < 1000; i++ {
		rows = append(rows, client.Row(fmt.Sprintf("e%d", i), now.Add(-time.Minute), map[string]*pb.Value{"n": client.Int64(int64(i))}))
	}
	rows[500] = client.Row("old", now.Add(-time.Hour), map[string]*pb.Value{"n": client.Int64(1)})
	rows[731] = client.Row("bad", now, map[string]*pb.Value{"nope": client.Int64(1)})
	sum, err := c.BatchWrite(ctx, "counts", 128, client.RowsFrom(rows))
	if err != nil {
		t.Fatal(err)
	}
	if sum.GetRowsWritten() != 998 || sum.GetRowsStale() != 1 || sum.GetRowsRejected() != 1 {
		t.Fatalf("summary %v, want 998 written, 1 stale, 1 rejected", sum)
	}
	if len(sum.GetErrors()) != 1 || sum.GetErrors()[0].GetRow() != 731 || sum.GetErrors()[0].GetEntityId() != "bad" ||
		!strings.HasPrefix(sum.GetErrors()[0].GetError(), `rows[731].values["nope"]`) {
		t.Fatalf("errors %v, want row 731 named", sum.GetErrors())
	}
	if got := readN(t, c, "e0", "e999", "old"); got[0] != 0 || got[1] != 999 || got[2] != 100 {
		t.Fatalf("after batch: %v", got)
	}
	// The batch is safe to resend whole.
	again, err := c.BatchWrite(ctx, "counts", 128, client.RowsFrom(rows))
	if err != nil || again.GetRowsWritten() != 998 {
		t.Fatalf("resend: %v %v", again, err)
	}
}
