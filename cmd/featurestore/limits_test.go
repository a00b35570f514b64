package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/featurestore/client"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// bigSet is a set with bytes and int64 features, for tests of size limits.
var bigSet = &pb.FeatureSet{Name: "big", EntityType: "thing", Features: []*pb.FeatureSpec{
	{Name: "b1", Type: pb.ValueType_VALUE_TYPE_BYTES}, {Name: "b2", Type: pb.ValueType_VALUE_TYPE_BYTES},
	{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64},
}}

func bytesRow(entity, feature string, n int) *pb.FeatureRow {
	return &pb.FeatureRow{EntityId: entity, EventTime: timestamppb.New(time.Now().Add(-time.Second)),
		Values: map[string]*pb.Value{feature: {Kind: &pb.Value_BytesValue{BytesValue: make([]byte, n)}}}}
}

// bigClient dials a server with room for large messages both ways.
func bigClient(t *testing.T, addr string) pb.FeatureStoreServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(512<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := pb.NewFeatureStoreServiceClient(conn)
	if _, err := c.ApplyFeatureSet(context.Background(), &pb.ApplyFeatureSetRequest{FeatureSet: bigSet}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestResponseSizeIsBounded: a small request naming one entity 1,000 times, for a
// feature holding 100 KiB, must not cost a 100 MB response: RESOURCE_EXHAUSTED names the
// limit and the size.
func TestResponseSizeIsBounded(t *testing.T) {
	ts := startServerAt(t, map[string]string{"FS_MAX_MESSAGE_BYTES": "33554432"})
	c := bigClient(t, ts.addr)
	ctx := context.Background()
	if _, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{bytesRow("e", "b1", 100<<10)}}); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = "e"
	}
	for _, call := range []func() error{
		func() error {
			_, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"big:b1"}, EntityIds: ids})
			return err
		},
		func() error {
			_, err := c.GetFeatureColumns(ctx, &pb.GetFeatureColumnsRequest{Features: []string{"big:b1"}, EntityIds: ids})
			return err
		},
	} {
		err := call()
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "max-response-bytes") || !strings.Contains(st.Message(), "bytes") {
			t.Fatalf("a 100 MB answer to a 14 KB request: %v, want RESOURCE_EXHAUSTED naming the limit and the size", err)
		}
		if info := errorInfo(err); info.GetReason() != "RESPONSE_TOO_LARGE" {
			t.Fatalf("reason %v, want RESPONSE_TOO_LARGE", info)
		}
	}
	// Within the limit the same read works.
	if _, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"big:b1"}, EntityIds: ids[:100]}); err != nil {
		t.Fatalf("a 10 MB answer: %v", err)
	}
}

// TestDynamoDBLimitsAreTheCallersProblem: what DynamoDB cannot store is the caller's
// mistake, never UNAVAILABLE (which clients retry forever): an item over 400 KB is
// INVALID_ARGUMENT naming the row and feature on the on-demand lane, and that row alone
// is REJECTED on the batch and stream lanes; a group over the 4 MB transaction limit is
// split and written.
func TestDynamoDBLimitsAreTheCallersProblem(t *testing.T) {
	// Megabytes of rows through DynamoDB Local on two busy cores (make test runs the chaos
	// package beside this one) can take longer than the default 2 s write deadline, and
	// one 4 MB transaction longer than the default 500 ms put window; the limits, not the
	// deadlines, are what is tested here.
	ts := startServerAt(t, map[string]string{"FS_WRITE_TIMEOUT": "20s", "FS_LEASE": "25s", "FS_PUT_WINDOW": "15s", "FS_HORIZON": "16s"})
	c := bigClient(t, ts.addr)
	ctx := context.Background()
	_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{bytesRow("e1", "b1", 10), bytesRow("e2", "b1", 500<<10)}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), `rows[1].values["b1"]`) {
		t.Fatalf("a 500 KB value on the on-demand lane: %v, want INVALID_ARGUMENT naming rows[1].values[\"b1\"]", err)
	}
	// Two values that fit alone but not together in one item.
	batch := func(rows ...*pb.FeatureRow) *pb.BatchWriteFeaturesResponse {
		t.Helper()
		st, err := c.BatchWriteFeatures(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&pb.BatchWriteFeaturesRequest{FeatureSet: "big", Rows: rows}); err != nil {
			t.Fatal(err)
		}
		sum, err := st.CloseAndRecv()
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
		return sum
	}
	sum := batch(bytesRow("e3", "b1", 10), bytesRow("e4", "b1", 500<<10), bytesRow("e5", "b1", 10))
	if sum.GetRowsWritten() != 2 || sum.GetRowsRejected() != 1 || sum.GetErrors()[0].GetRow() != 1 || sum.GetErrors()[0].GetReason() != "ITEM_TOO_LARGE" {
		t.Fatalf("batch with one 500 KB row: %v, want it alone REJECTED (ITEM_TOO_LARGE)", sum)
	}
	if _, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{bytesRow("e6", "b1", 300<<10)}}); err != nil {
		t.Fatal(err)
	}
	sum = batch(bytesRow("e6", "b2", 300<<10))
	if sum.GetRowsRejected() != 1 || sum.GetErrors()[0].GetReason() != "ITEM_TOO_LARGE" {
		t.Fatalf("a row that would grow an item past 400 KB: %v, want REJECTED (ITEM_TOO_LARGE)", sum)
	}
	_, err = c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{bytesRow("e6", "b2", 300<<10)}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "rows[0]") {
		t.Fatalf("the same on the on-demand lane: %v, want INVALID_ARGUMENT naming rows[0]", err)
	}
	// The stream lane: the row alone is rejected, and the stream carries on.
	stream, err := c.StreamWriteFeatures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq, row := range []*pb.FeatureRow{bytesRow("e7", "b1", 500<<10), bytesRow("e8", "b1", 10)} {
		if err := stream.Send(&pb.StreamWriteFeaturesRequest{Sequence: int64(seq + 1), FeatureSet: "big", Rows: []*pb.FeatureRow{row}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.CloseSend()
	got := map[int64]pb.WriteStatus{}
	for {
		ack, err := stream.Recv()
		if err != nil {
			if len(got) != 2 {
				t.Fatalf("stream ended after %v: %v", got, err)
			}
			break
		}
		got[ack.GetSequence()] = ack.GetResults()[0].GetStatus()
	}
	if got[1] != pb.WriteStatus_WRITE_STATUS_REJECTED || got[2] != pb.WriteStatus_WRITE_STATUS_WRITTEN {
		t.Fatalf("stream acks %v, want the 500 KB row rejected and the next written", got)
	}
	// 20 rows of 300 KB: 6 MB, over one transaction's 4 MB, split and all written.
	var rows []*pb.FeatureRow
	for i := 0; i < 20; i++ {
		rows = append(rows, bytesRow(fmt.Sprintf("g%d", i), "b1", 300<<10))
	}
	if sum := batch(rows...); sum.GetRowsWritten() != 20 {
		t.Fatalf("6 MB of rows in one batch: %v, want all written", sum)
	}
}

// TestEventTimeInTheFutureIsRefused: a row stamped 9999-12-31 would make every later
// write of its features STALE for good; beyond the allowed skew it is refused.
func TestEventTimeInTheFutureIsRefused(t *testing.T) {
	ts := startServerAt(t, nil)
	c := bigClient(t, ts.addr)
	far := &pb.FeatureRow{EntityId: "e", EventTime: timestamppb.New(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)),
		Values: map[string]*pb.Value{"n": {Kind: &pb.Value_Int64Value{Int64Value: 1}}}}
	_, err := c.WriteFeatures(context.Background(), &pb.WriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{far}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "rows[0].event_time") || errorInfo(err).GetReason() != "EVENT_TIME_IN_FUTURE" {
		t.Fatalf("a row stamped 9999-12-31: %v, want INVALID_ARGUMENT naming rows[0].event_time", err)
	}
	soon := &pb.FeatureRow{EntityId: "e", EventTime: timestamppb.New(time.Now().Add(30 * time.Minute)),
		Values: map[string]*pb.Value{"n": {Kind: &pb.Value_Int64Value{Int64Value: 1}}}}
	if _, err := c.WriteFeatures(context.Background(), &pb.WriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{soon}}); err != nil {
		t.Fatalf("a row 30 minutes ahead, within the default hour of skew: %v", err)
	}
}

// TestEchoesAreCapped: names from a request come back cut, so an error never costs more
// than a few hundred bytes: an 8 MB feature name produced a 16 MB trailer on main.
func TestEchoesAreCapped(t *testing.T) {
	ts := startServerAt(t, map[string]string{"FS_MAX_MESSAGE_BYTES": "33554432"})
	c := bigClient(t, ts.addr)
	ctx := context.Background()
	huge := strings.Repeat("x", 8<<20)
	_, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{{EntityId: "e", EventTime: timestamppb.Now(),
		Values: map[string]*pb.Value{huge: {Kind: &pb.Value_Int64Value{Int64Value: 1}}}}}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || len(st.Message()) > 1024 {
		t.Fatalf("an 8 MB feature name: code %v, message of %d bytes; want INVALID_ARGUMENT under 1 KB", st.Code(), len(st.Message()))
	}
	// A batch whose every row names an unknown 1 MB feature: its summary stays small.
	st, err := c.BatchWriteFeatures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		name := strings.Repeat(strconv.Itoa(i%10), 1<<20)
		if err := st.Send(&pb.BatchWriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{{EntityId: name, EventTime: timestamppb.Now(),
			Values: map[string]*pb.Value{name: {Kind: &pb.Value_Int64Value{Int64Value: 1}}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := st.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, e := range sum.GetErrors() {
		size += len(e.GetError()) + len(e.GetEntityId())
	}
	if sum.GetRowsRejected() != 20 || size > 64<<10 {
		t.Fatalf("batch summary: %d rejected, %d bytes of error text; want 20 and at most 64 KB", sum.GetRowsRejected(), size)
	}
}

// dynamoProxy puts a toxiproxy between a server and DynamoDB Local, so a test can take
// the database away and bring it back.
func dynamoProxy(t *testing.T) (*toxiproxy.Proxy, string) {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	px := toxiproxy.NewProxy(srv, "ddb", "127.0.0.1:0", "127.0.0.1:"+strconv.Itoa(shared.DynamoDB.Port))
	if err := px.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Stop)
	return px, "http://" + px.Listen
}

// stall makes the proxy swallow everything (the database stops answering) until undone.
func stall(t *testing.T, px *toxiproxy.Proxy) func() {
	t.Helper()
	if _, err := px.Toxics.AddToxicJson(strings.NewReader(`{"name":"stall","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`)); err != nil {
		t.Fatal(err)
	}
	return func() { _ = px.Toxics.RemoveToxic(context.Background(), "stall") }
}

// TestNothingHangsWhenDynamoDBStops: with DynamoDB not answering, a read without a client
// deadline ends within the server's own deadline, a write within its write timeout, both
// UNAVAILABLE (which clients retry); a stream whose write failed ends UNAVAILABLE instead
// of waiting for the client's next message, and the Go client's stream writer reconnects
// and resends what was not acknowledged once the database is back.
func TestNothingHangsWhenDynamoDBStops(t *testing.T) {
	px, endpoint := dynamoProxy(t)
	ts := startServerAt(t, map[string]string{"FS_DYNAMODB_ENDPOINT": endpoint, "FS_RPC_TIMEOUT": "2s", "FS_WRITE_TIMEOUT": "1s"})
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewFeatureStoreServiceClient(conn)
	ctx := context.Background()
	if _, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: bigSet}); err != nil {
		t.Fatal(err)
	}
	row := func(entity string, n int64) *pb.FeatureRow {
		return &pb.FeatureRow{EntityId: entity, EventTime: timestamppb.Now(), Values: map[string]*pb.Value{"n": {Kind: &pb.Value_Int64Value{Int64Value: n}}}}
	}
	cl, err := client.Dial(ts.addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	acked := map[int64]bool{}
	w, err := cl.NewStreamWriter(ctx, client.StreamOptions{OnAck: func(r *pb.StreamWriteFeaturesResponse) { acked[r.GetSequence()] = true }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Send("big", row("s1", 1)); err != nil {
		t.Fatal(err)
	}
	undo := stall(t, px)
	// A read and a write with no client deadline, and a stream request.
	start := time.Now()
	_, err = c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"big:n"}, EntityIds: []string{"never-cached"}})
	if status.Code(err) != codes.Unavailable || time.Since(start) > 6*time.Second {
		t.Fatalf("read with DynamoDB stalled: %v after %v, want UNAVAILABLE within the server's 2 s deadline", err, time.Since(start))
	}
	start = time.Now()
	_, err = c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "big", Rows: []*pb.FeatureRow{row("w1", 1)}})
	if status.Code(err) != codes.Unavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("write with DynamoDB stalled: %v after %v, want UNAVAILABLE within the 1 s write timeout", err, time.Since(start))
	}
	raw, err := c.StreamWriteFeatures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Send(&pb.StreamWriteFeaturesRequest{Sequence: 1, FeatureSet: "big", Rows: []*pb.FeatureRow{row("r1", 1)}}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = raw.Recv() // no further message from the client: the server must end the stream
	if status.Code(err) != codes.Unavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("stream whose write failed: %v after %v, want UNAVAILABLE within the write timeout", err, time.Since(start))
	}
	if _, err := w.Send("big", row("s2", 2)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	undo()
	done := make(chan error, 1)
	go func() { done <- w.Close() }()
	select {
	case err := <-done:
		if err != nil || !acked[1] || !acked[2] {
			t.Fatalf("stream writer after DynamoDB came back: %v, acked %v", err, acked)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream writer never finished after DynamoDB came back")
	}
}
