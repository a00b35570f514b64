package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dsfeatures/featurestore/featurestore"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// panickingDomain panics on GetFeatures; no other method is called.
type panickingDomain struct{ Domain }

func (panickingDomain) GetFeatures(context.Context, []string, []string) (featurestore.Values, error) {
	panic("handler bug")
}

// lockedBuffer is a log sink the server's goroutines write while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// codeMetrics records the code of every finished RPC.
type codeMetrics struct {
	nopMetrics
	mu    sync.Mutex
	codes map[string]codes.Code
}

func (m *codeMetrics) RPC(_ context.Context, method string, code codes.Code, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.codes[method] = code
}

func (m *codeMetrics) code(method string) codes.Code {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.codes[method]
}

// panicStreamDesc is a streaming method that panics, registered beside the real services
// so the stream interceptors NewGRPC installs are the ones tested.
var panicStreamDesc = grpc.ServiceDesc{
	ServiceName: "test.Panics",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		ClientStreams: true,
		Handler:       func(any, grpc.ServerStream) error { panic("stream handler bug") },
	}},
}

// TestPanicIsInternal requires that a panicking handler, unary or streaming, answers
// INTERNAL with the ErrorInfo every internal error carries (reason INTERNAL, our domain)
// and no detail of the panic, that the panic and its stack are logged with the method,
// that the metrics see INTERNAL, and that the server goes on serving.
func TestPanicIsInternal(t *testing.T) {
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	m := &codeMetrics{codes: map[string]codes.Code{}}
	g := NewGRPC(New(panickingDomain{}, logger, Options{Metrics: m}), nil, logger)
	g.RegisterService(&panicStreamDesc, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	const unary = "/featurestore.v1.FeatureStoreService/GetFeatures"
	const stream = "/test.Panics/Stream"
	calls := []struct {
		method string
		call   func() error
	}{
		{unary, func() error {
			_, err := pb.NewFeatureStoreServiceClient(conn).GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"s:f"}, EntityIds: []string{"e"}})
			return err
		}},
		{stream, func() error {
			s, err := conn.NewStream(ctx, &panicStreamDesc.Streams[0], stream)
			if err != nil {
				return err
			}
			return s.RecvMsg(&pb.StreamWriteFeaturesResponse{})
		}},
	}
	// Twice each: the first panic must leave the server serving.
	for round := 0; round < 2; round++ {
		for _, c := range calls {
			st := status.Convert(c.call())
			if st.Code() != codes.Internal || st.Message() != "internal error" {
				t.Fatalf("%s: got %v %q, want INTERNAL %q", c.method, st.Code(), st.Message(), "internal error")
			}
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				if d, ok := d.(*errdetails.ErrorInfo); ok {
					info = d
				}
			}
			if info.GetReason() != featurestore.ReasonInternal || info.GetDomain() != ErrorDomain {
				t.Fatalf("%s: ErrorInfo %v, want reason %s in domain %s", c.method, info, featurestore.ReasonInternal, ErrorDomain)
			}
			if got := m.code(c.method); got != codes.Internal {
				t.Errorf("%s: metrics saw %v, want INTERNAL", c.method, got)
			}
		}
	}
	out := logs.String()
	for _, want := range []string{"panic in handler", "method=" + unary, "method=" + stream, "handler bug", "stream handler bug", "recover_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
