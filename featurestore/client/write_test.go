package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

func statuses(results []*pb.RowResult) []pb.WriteStatus {
	out := make([]pb.WriteStatus, len(results))
	for i, r := range results {
		out[i] = r.GetStatus()
	}
	return out
}

// loseFirstWriteResponse is a client interceptor that lets the first WriteFeatures call
// reach the server and apply, runs between(ctx) (another writer landing in between),
// and then tells the caller UNAVAILABLE, as a connection lost before the response would.
func loseFirstWriteResponse(between func(context.Context) error) grpc.DialOption {
	var once sync.Once
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method != pb.FeatureStoreService_WriteFeatures_FullMethodName {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		first := false
		once.Do(func() { first = true })
		err := invoker(ctx, method, req, reply, cc, opts...)
		if !first {
			return err
		}
		if err != nil {
			return fmt.Errorf("the first attempt was meant to apply: %w", err)
		}
		if between != nil {
			if err := between(ctx); err != nil {
				return fmt.Errorf("the write in between: %w", err)
			}
		}
		return status.Error(codes.Unavailable, "injected: the response was lost")
	})
}

// TestWriteOutcomeUnknown: Write's first attempt applies but its answer is lost, a newer
// write lands, and the retry answers STALE. Write must not report "not applied": the row
// is listed in an OutcomeUnknownError next to the results.
func TestWriteOutcomeUnknown(t *testing.T) {
	addr := startServer(t)
	other := dial(t, addr, Options{})
	applySet(t, other, "s")
	t1 := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	newer := func(ctx context.Context) error {
		res, err := other.Write(ctx, "s", Row("e1", t1.Add(time.Minute), map[string]*pb.Value{"n": Int64(2)}))
		if err == nil && res[0].GetStatus() != pb.WriteStatus_WRITE_STATUS_WRITTEN {
			err = fmt.Errorf("newer write %v", res[0])
		}
		return err
	}
	c := dial(t, addr, Options{BaseBackoff: time.Millisecond, DialOptions: []grpc.DialOption{loseFirstWriteResponse(newer)}})
	ctx := testCtx(t)
	results, err := c.Write(ctx, "s", Row("e1", t1, map[string]*pb.Value{"n": Int64(1)}), Row("e2", t1, map[string]*pb.Value{"n": Int64(1)}))

	if diff := cmp.Diff([]pb.WriteStatus{pb.WriteStatus_WRITE_STATUS_STALE, pb.WriteStatus_WRITE_STATUS_WRITTEN}, statuses(results)); diff != "" {
		t.Errorf("retry's results (-want +got):\n%s", diff)
	}
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("err %v, want ErrOutcomeUnknown", err)
	}
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) {
		t.Fatalf("err %T, want *OutcomeUnknownError", err)
	}
	if diff := cmp.Diff([]int{0}, ou.Rows); diff != "" {
		t.Errorf("rows with unknown outcome (-want +got):\n%s", diff)
	}
	if ou.Attempts != 2 || ou.Err != nil {
		t.Errorf("attempts %d, err %v; want 2 and nil", ou.Attempts, ou.Err)
	}
	if diff := cmp.Diff([]int64{2, 1}, readValues(t, other, "s:n", "e1", "e2")); diff != "" {
		t.Errorf("stored values (-want +got):\n%s", diff)
	}
}

// TestWriteRetryWithoutAmbiguity: a lost answer with nothing in between: the retry
// merges as a no-op and answers WRITTEN, which is certain, so no error.
func TestWriteRetryWithoutAmbiguity(t *testing.T) {
	addr := startServer(t)
	c := dial(t, addr, Options{BaseBackoff: time.Millisecond, DialOptions: []grpc.DialOption{loseFirstWriteResponse(nil)}})
	applySet(t, c, "s")
	results, err := c.Write(testCtx(t), "s", Row("e1", time.Now(), map[string]*pb.Value{"n": Int64(7)}))
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if diff := cmp.Diff([]pb.WriteStatus{pb.WriteStatus_WRITE_STATUS_WRITTEN}, statuses(results)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestWriteFailures: answers that leave the outcome open become OutcomeUnknownError over
// every row (keeping the status code); answers given before anything is written do not.
func TestWriteFailures(t *testing.T) {
	var seen calls
	var mu sync.Mutex
	var inject error
	addr := startServer(t, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		mu.Lock()
		err := inject
		mu.Unlock()
		if info.FullMethod == pb.FeatureStoreService_WriteFeatures_FullMethodName && err != nil {
			seen.add(info.FullMethod)
			return nil, err
		}
		return h(ctx, req)
	}))
	c := dial(t, addr, Options{BaseBackoff: time.Millisecond, MaxAttempts: 3})
	applySet(t, c, "s")
	rows := []*pb.FeatureRow{Row("e1", time.Now(), map[string]*pb.Value{"n": Int64(1)}), Row("e2", time.Now(), map[string]*pb.Value{"n": Int64(1)})}
	tests := []struct {
		inject       error
		wantCode     codes.Code
		wantUnknown  bool
		wantAttempts int
	}{
		{status.Error(codes.Unavailable, "injected"), codes.Unavailable, true, 3},
		{status.Error(codes.DeadlineExceeded, "injected"), codes.DeadlineExceeded, true, 1},
		{status.Error(codes.InvalidArgument, "injected"), codes.InvalidArgument, false, 1},
		{status.Error(codes.PermissionDenied, "injected"), codes.PermissionDenied, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.wantCode.String(), func(t *testing.T) {
			mu.Lock()
			inject = tc.inject
			mu.Unlock()
			before := seen.get(pb.FeatureStoreService_WriteFeatures_FullMethodName)
			_, err := c.Write(testCtx(t), "s", rows...)
			if status.Code(err) != tc.wantCode {
				t.Errorf("code %v, want %v (%v)", status.Code(err), tc.wantCode, err)
			}
			if got := errors.Is(err, ErrOutcomeUnknown); got != tc.wantUnknown {
				t.Errorf("outcome unknown %v, want %v (%v)", got, tc.wantUnknown, err)
			}
			var ou *OutcomeUnknownError
			if errors.As(err, &ou) && !slices.Equal(ou.Rows, []int{0, 1}) {
				t.Errorf("unknown rows %v, want all", ou.Rows)
			}
			if n := seen.get(pb.FeatureStoreService_WriteFeatures_FullMethodName) - before; n != tc.wantAttempts {
				t.Errorf("%d attempts, want %d", n, tc.wantAttempts)
			}
		})
	}
}

// batchRecord is what the server saw of one BatchWriteFeatures stream.
type batchRecord struct {
	handlerErr error
	ctxErr     error
}

// TestBatchWriteSourceFailureCancels: a row source that fails half-way makes BatchWrite
// cancel the stream: the server sees a cancellation rather than a complete batch, rows
// after the failure are never written, and the caller gets the source's error.
func TestBatchWriteSourceFailureCancels(t *testing.T) {
	records := make(chan batchRecord, 4)
	addr := startServer(t, grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		if info.FullMethod == pb.FeatureStoreService_BatchWriteFeatures_FullMethodName {
			records <- batchRecord{handlerErr: err, ctxErr: ss.Context().Err()}
		}
		return err
	}))
	c := dial(t, addr, Options{})
	applySet(t, c, "s")
	ctx := testCtx(t)
	at := time.Now()
	errSource := errors.New("source: disk read failed")
	i := 0
	sum, err := c.BatchWrite(ctx, "s", 100, func() (*pb.FeatureRow, error) {
		if i == 250 {
			return nil, errSource
		}
		i++
		return Row(fmt.Sprintf("e%d", i-1), at, map[string]*pb.Value{"n": Int64(int64(i - 1))}), nil
	})
	if !errors.Is(err, errSource) || sum != nil {
		t.Fatalf("BatchWrite = %v, %v; want no summary and the source's error", sum, err)
	}
	select {
	case r := <-records:
		if !errors.Is(r.ctxErr, context.Canceled) || r.handlerErr == nil {
			t.Errorf("server saw handler error %v, context %v; want a cancelled stream", r.handlerErr, r.ctxErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server never finished the stream")
	}
	// Rows 200-249 were read from the source but never sent.
	var after []string
	for e := 200; e < 260; e++ {
		after = append(after, fmt.Sprintf("e%d", e))
	}
	for k, v := range readValues(t, c, "s:n", after...) {
		if v != -1 {
			t.Errorf("%s = %d: written although the source failed before it", after[k], v)
		}
	}

	// The same source, without the failure, ends with a summary of every row.
	i = 0
	sum, err = c.BatchWrite(ctx, "s", 100, func() (*pb.FeatureRow, error) {
		if i == 250 {
			return nil, nil
		}
		i++
		return Row(fmt.Sprintf("e%d", i-1), at, map[string]*pb.Value{"n": Int64(int64(i - 1))}), nil
	})
	if err != nil || sum.GetRowsWritten() != 250 {
		t.Fatalf("complete batch: %v %v", sum, err)
	}
	if r := <-records; r.handlerErr != nil {
		t.Errorf("complete batch: server handler error %v", r.handlerErr)
	}
}

// TestLargeReadWithDefaults: 100 entities x 100 float_list features of 128 floats (about
// 5.3 MB) is inside the server's limits and must be readable with default options; at
// grpc-go's own 4 MiB default it is not.
func TestLargeReadWithDefaults(t *testing.T) {
	addr := startServer(t)
	c := dial(t, addr, Options{})
	var specs []*pb.FeatureSpec
	var refs []string
	for f := range 100 {
		specs = append(specs, &pb.FeatureSpec{Name: fmt.Sprintf("emb%d", f), Type: pb.ValueType_VALUE_TYPE_FLOAT_LIST})
		refs = append(refs, fmt.Sprintf("big:emb%d", f))
	}
	applySet(t, c, "big", specs...)
	ctx := testCtx(t)
	at := time.Now()
	vec := make([]float32, 128)
	for i := range vec {
		vec[i] = float32(i) / 7
	}
	var entities []string
	var rows []*pb.FeatureRow
	for e := range 100 {
		entities = append(entities, fmt.Sprintf("e%d", e))
		values := map[string]*pb.Value{}
		for _, s := range specs {
			values[s.GetName()] = Floats(vec...)
		}
		rows = append(rows, Row(entities[e], at, values))
	}
	// Five rows (about 260 KB) per write: the subject is the read. Twenty rows made 1 MB
	// transactions, which DynamoDB Local under make test's load once could not land
	// within the put window in five attempts.
	for i := 0; i < len(rows); i += 5 {
		if _, err := c.Write(ctx, "big", rows[i:i+5]...); err != nil {
			t.Fatalf("write rows %d-%d: %v", i, i+4, err)
		}
	}
	resp, err := c.GetFeatures(ctx, refs, entities)
	if err != nil {
		t.Fatalf("GetFeatures with default options: %v", err)
	}
	present := 0
	for _, r := range resp.GetResults() {
		for i, st := range r.GetStatuses() {
			if st == pb.FeatureStatus_FEATURE_STATUS_PRESENT && len(r.GetValues()[i].GetFloatListValue().GetValues()) == 128 {
				present++
			}
		}
	}
	if present != 100*100 {
		t.Errorf("%d values of 128 floats present, want 10000", present)
	}
	small := dial(t, addr, Options{MaxRecvMsgBytes: 4 << 20})
	if _, err := small.GetFeatures(ctx, refs, entities); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("with grpc's 4 MiB default: %v, want ResourceExhausted (else this test proves nothing)", err)
	}
}
