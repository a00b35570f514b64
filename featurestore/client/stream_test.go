package client

import (
	"errors"
	"fmt"
	"io"
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

// endStreamAfter is a server stream interceptor that ends the first StreamWriteFeatures
// stream with code after its handler has received n requests: the next request is
// swallowed, the handler sees the end of the input (and acknowledges what it has), and
// the stream ends with code instead of OK.
func endStreamAfter(n int, code codes.Code, streams *calls) grpc.ServerOption {
	var once sync.Once
	return grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod != pb.FeatureStoreService_StreamWriteFeatures_FullMethodName {
			return h(srv, ss)
		}
		streams.add(info.FullMethod)
		first := false
		once.Do(func() { first = true })
		if !first {
			return h(srv, ss)
		}
		if err := h(srv, &cutStream{ServerStream: ss, left: n}); err != nil {
			return err
		}
		return status.Error(code, "injected: stream ended")
	})
}

type cutStream struct {
	grpc.ServerStream
	left int
}

func (s *cutStream) RecvMsg(m any) error {
	if s.left == 0 {
		var drop pb.StreamWriteFeaturesRequest
		_ = s.ServerStream.RecvMsg(&drop) // received, never handled
		return io.EOF
	}
	s.left--
	return s.ServerStream.RecvMsg(m)
}

// TestStreamWriterReconnects: the server ends the stream with UNAVAILABLE while requests
// are unacknowledged; the writer reconnects, resends them, every request is acknowledged
// exactly once, and every row is stored.
func TestStreamWriterReconnects(t *testing.T) {
	var streams calls
	addr := startServer(t, endStreamAfter(3, codes.Unavailable, &streams))
	c := dial(t, addr, Options{BaseBackoff: 5 * time.Millisecond})
	applySet(t, c, "s")
	ctx := testCtx(t)
	var mu sync.Mutex
	var acked []int64
	w, err := c.NewStreamWriter(ctx, StreamOptions{OnAck: func(r *pb.StreamWriteFeaturesResponse) {
		mu.Lock()
		acked = append(acked, r.GetSequence())
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Read the counter while the writer works, for the race detector.
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
				_ = w.Reconnected()
				_ = w.Unacked()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	at := time.Now()
	var entities []string
	for i := range 10 {
		e := fmt.Sprintf("e%d", i)
		entities = append(entities, e)
		if _, err := w.Send("s", Row(e, at, map[string]*pb.Value{"n": Int64(int64(i))})); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	close(stop)
	<-polled
	if n := w.Reconnected(); n != 1 {
		t.Errorf("reconnected %d times, want 1", n)
	}
	if n := streams.get(pb.FeatureStoreService_StreamWriteFeatures_FullMethodName); n != 2 {
		t.Errorf("server saw %d streams, want 2", n)
	}
	slices.Sort(acked)
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, acked); diff != "" {
		t.Errorf("acknowledged sequences (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, readValues(t, c, "s:n", entities...)); diff != "" {
		t.Errorf("stored values (-want +got):\n%s", diff)
	}
	if _, err := w.Send("s"); !errors.Is(err, ErrWriterClosed) {
		t.Errorf("Send after Close: %v, want ErrWriterClosed", err)
	}
}

// TestStreamWriterStopsOnPermanentError: an error other than UNAVAILABLE is not retried;
// Close reports it with its code.
func TestStreamWriterStopsOnPermanentError(t *testing.T) {
	var streams calls
	addr := startServer(t, endStreamAfter(0, codes.PermissionDenied, &streams))
	c := dial(t, addr, Options{BaseBackoff: 5 * time.Millisecond})
	applySet(t, c, "s")
	w, err := c.NewStreamWriter(testCtx(t), StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Send("s", Row("e1", time.Now(), map[string]*pb.Value{"n": Int64(1)})); err != nil {
		t.Fatalf("Send: %v", err)
	}
	err = w.Close()
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Close: %v, want PermissionDenied", err)
	}
	if n := w.Reconnected(); n != 0 {
		t.Errorf("reconnected %d times after a permanent error", n)
	}
	if n := streams.get(pb.FeatureStoreService_StreamWriteFeatures_FullMethodName); n != 1 {
		t.Errorf("server saw %d streams, want 1", n)
	}
}
