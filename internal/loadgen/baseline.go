package loadgen

import (
	"context"
	"strings"

	vk "github.com/valkey-io/valkey-go"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// BareGets is the cached-read baseline that benchmarks compare GetFeatures with: the same
// pipelined ValKey GETs (the set and every row) and a response carrying each entity's
// cached bytes as one bytes value, decoding nothing. It moves the data, as GetFeatures
// must, and no more. Only GetFeatures is implemented; the set is taken from the first
// feature reference.
type BareGets struct {
	pb.UnimplementedFeatureStoreServiceServer
	Client vk.Client
}

// GetFeatures fetches the keys GetFeatures would and returns their raw bytes. It fails
// only when ValKey does; a missing key answers empty bytes.
func (s *BareGets) GetFeatures(ctx context.Context, req *pb.GetFeaturesRequest) (*pb.GetFeaturesResponse, error) {
	set, _, _ := strings.Cut(req.GetFeatures()[0], ":")
	keys := make([]writethrough.Key, 0, len(req.GetEntityIds())+1)
	keys = append(keys, featurestore.SetKey(set))
	for _, id := range req.GetEntityIds() {
		keys = append(keys, featurestore.RowKey(set, id))
	}
	cmds := make(vk.Commands, len(keys))
	for i, k := range writethrough.CacheKeys(keys) { // as the store names them: one string for all
		cmds[i] = s.Client.B().Get().Key(k).Build()
	}
	out := &pb.GetFeaturesResponse{Features: req.GetFeatures(), Results: make([]*pb.EntityResult, len(req.GetEntityIds()))}
	for i, r := range s.Client.DoMulti(ctx, cmds...) {
		b, err := r.AsBytes()
		if err != nil && !vk.IsValkeyNil(err) {
			return nil, err
		}
		if i > 0 {
			out.Results[i-1] = &pb.EntityResult{EntityId: req.GetEntityIds()[i-1], Values: []*pb.Value{{Kind: &pb.Value_BytesValue{BytesValue: b}}}}
		}
	}
	return out, nil
}
