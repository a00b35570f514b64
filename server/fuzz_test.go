package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/memdb"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// rawCodec sends and receives bytes as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// rpc is one method of the server and how it is called.
type rpc struct {
	method       string
	clientStream bool
	serverStream bool
	seed         proto.Message
}

var rpcs = []rpc{
	{method: "/featurestore.v1.FeatureStoreService/ApplyFeatureSet", seed: &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{Name: "s", EntityType: "e", Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}}}}},
	{method: "/featurestore.v1.FeatureStoreService/GetFeatureSet", seed: &pb.GetFeatureSetRequest{Name: "s"}},
	{method: "/featurestore.v1.FeatureStoreService/ListFeatureSets", seed: &pb.ListFeatureSetsRequest{PageSize: 2}},
	{method: "/featurestore.v1.FeatureStoreService/DeleteFeatureSet", seed: &pb.DeleteFeatureSetRequest{Name: "gone"}},
	{method: "/featurestore.v1.FeatureStoreService/GetFeatures", seed: &pb.GetFeaturesRequest{Features: []string{"s:n"}, EntityIds: []string{"e"}}},
	{method: "/featurestore.v1.FeatureStoreService/GetFeatureColumns", seed: &pb.GetFeatureColumnsRequest{Features: []string{"s:n"}, EntityIds: []string{"e"}}},
	{method: "/featurestore.v1.FeatureStoreService/WriteFeatures", seed: &pb.WriteFeaturesRequest{FeatureSet: "s", Rows: []*pb.FeatureRow{{EntityId: "e", Values: map[string]*pb.Value{"n": {Kind: &pb.Value_Int64Value{Int64Value: 1}}}}}}},
	{method: "/featurestore.v1.FeatureStoreService/DeleteEntities", seed: &pb.DeleteEntitiesRequest{FeatureSet: "s", EntityIds: []string{"e"}}},
	{method: "/featurestore.v1.FeatureStoreService/StreamWriteFeatures", clientStream: true, serverStream: true, seed: &pb.StreamWriteFeaturesRequest{Sequence: 1, FeatureSet: "s"}},
	{method: "/featurestore.v1.FeatureStoreService/BatchWriteFeatures", clientStream: true, seed: &pb.BatchWriteFeaturesRequest{FeatureSet: "s"}},
	{method: "/featurestore.v1.GdprService/DeleteSubject", seed: &pb.DeleteSubjectRequest{SubjectId: "x"}},
	{method: "/featurestore.v1.GdprService/GetDeletion", seed: &pb.GetDeletionRequest{Id: "del-0000000000000000"}},
	{method: "/grpc.health.v1.Health/Check"},
	{method: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", clientStream: true, serverStream: true},
}

// FuzzRPC feeds arbitrary bytes to every RPC of an in-process server (the real handlers,
// the real domain over the in-memory database and a real valkey-server) and requires
// that none answers INTERNAL (a panic is recovered as INTERNAL) or UNKNOWN: whatever a
// caller sends, the answer is a result or a clear status.
func FuzzRPC(f *testing.F) {
	for i, r := range rpcs {
		b := []byte{}
		if r.seed != nil {
			b, _ = proto.Marshal(r.seed)
		}
		f.Add(uint8(i), b)
		f.Add(uint8(i), []byte{0xff, 0xff})
	}
	st := devstack.NewMemoryStack(f, 600*time.Millisecond, devstack.ValkeyOptions{}, memdb.Options{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, _, err := devstack.NewService(st.DB, st.Cache, nil, writethrough.Config{WriteTimeout: 400 * time.Millisecond, Lease: 600 * time.Millisecond}, logger)
	if err != nil {
		f.Fatal(err)
	}
	g := server.NewGRPC(server.New(svc, logger, server.Options{RPCTimeout: 2 * time.Second}), nil, logger)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	f.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })

	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		r := rpcs[int(which)%len(rpcs)]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out []byte
		var err error
		if !r.clientStream && !r.serverStream {
			err = conn.Invoke(ctx, r.method, &payload, &out)
		} else {
			var s grpc.ClientStream
			if s, err = conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: r.clientStream, ServerStreams: r.serverStream}, r.method); err == nil {
				_ = s.SendMsg(&payload)
				_ = s.CloseSend()
				for err == nil {
					err = s.RecvMsg(&out)
				}
				if err == io.EOF {
					err = nil
				}
			}
		}
		if c := status.Code(err); c == codes.Internal || c == codes.Unknown {
			t.Fatalf("%s with %x: %v", r.method, payload, err)
		}
	})
}
