package main

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/internal/loadgen"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

func pickIDs(keys loadgen.Keys, pool string, n int, rng *rand.Rand) []string {
	ids := make([]string, 0, n)
	seen := make(map[int]bool, n)
	for len(ids) < n {
		i := keys.Pick(rng)
		if seen[i] {
			if len(seen) >= keys.N {
				break
			}
			continue
		}
		seen[i] = true
		ids = append(ids, entity(pool, i))
	}
	return ids
}

func doubles(nf int, v float64) map[string]*pb.Value {
	m := make(map[string]*pb.Value, nf)
	for f := 0; f < nf; f++ {
		m["f"+strconv.Itoa(f)] = &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: v + float64(f)}}
	}
	return m
}

func scenarios(e *env) []scenario {
	var out []scenario
	cached := func(n, nf int, keys loadgen.Keys, dist string) scenario {
		read := func(c pb.FeatureStoreServiceClient) loadgen.Op {
			return func(ctx context.Context, _ int, rng *rand.Rand) error {
				_, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: e.refs[nf], EntityIds: pickIDs(keys, "h", n, rng)})
				return err
			}
		}
		return scenario{name: fmt.Sprintf("GetFeatures cached %dx%d %s", n, nf, dist), baseline: "bare handler, same ValKey GETs",
			ours: read(e.ours), base: read(e.base), unit: "req"}
	}
	uniform := loadgen.Keys{N: hotEntities}
	zipf := loadgen.Keys{N: hotEntities, Zipf: true}
	for _, nf := range []int{10, 100} {
		for _, n := range []int{1, 10, 100} {
			out = append(out, cached(n, nf, uniform, "uniform"))
		}
	}
	out = append(out, cached(10, 10, zipf, "zipf"), cached(100, 10, zipf, "zipf"))

	// The columnar form against the same baseline: the bare handler answers in its own
	// (row-wise) shape, which is the least any form of the read can do.
	columns := func(n, nf int, keys loadgen.Keys, dist string) scenario {
		sc := cached(n, nf, keys, dist)
		sc.name = fmt.Sprintf("GetFeatureColumns cached %dx%d %s", n, nf, dist)
		sc.ours = func(ctx context.Context, _ int, rng *rand.Rand) error {
			ids := pickIDs(keys, "h", n, rng)
			cols, err := e.oursClient.ReadColumns(ctx, e.refs[nf], ids)
			if err != nil {
				return err
			}
			// Read every value through the Go client's typed views, as a ranking caller
			// does: whatever the client decodes lazily is paid for here.
			for _, ref := range e.refs[nf] {
				vals, sts, err := cols.Float64s(ref)
				if err != nil {
					return err
				}
				var sum float64
				for i, st := range sts {
					if st != pb.FeatureStatus_FEATURE_STATUS_PRESENT {
						return fmt.Errorf("%s of entity %d: %v, want present", ref, i, st)
					}
					sum += vals[i]
				}
				if math.IsNaN(sum) {
					return fmt.Errorf("%s: NaN", ref)
				}
			}
			return nil
		}
		return sc
	}
	for _, size := range []struct{ n, nf int }{{1, 10}, {10, 100}, {100, 10}, {100, 100}} {
		out = append(out, columns(size.n, size.nf, uniform, "uniform"))
	}

	// Cold: every read misses the cache. The baseline is the consistent BatchGetItem of the
	// same keys (set and rows), straight to DynamoDB.
	coldKeys := loadgen.Keys{N: coldEntities}
	out = append(out, scenario{name: "GetFeatures cold 10x10 uniform", baseline: "raw BatchGetItem, ConsistentRead",
		ours: func(ctx context.Context, _ int, rng *rand.Rand) error {
			_, err := e.cold.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: e.refs[10], EntityIds: pickIDs(coldKeys, "c", 10, rng)})
			return err
		},
		base: func(ctx context.Context, _ int, rng *rand.Rand) error {
			keys := []map[string]types.AttributeValue{{"pk": &types.AttributeValueMemberS{Value: "b10"}}}
			rows := []map[string]types.AttributeValue{}
			for _, id := range pickIDs(coldKeys, "c", 10, rng) {
				rows = append(rows, map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "b10#" + id}})
			}
			_, err := e.ddb.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
				e.tables.Sets: {Keys: keys, ConsistentRead: aws.Bool(true)},
				e.tables.Rows: {Keys: rows, ConsistentRead: aws.Bool(true)},
			}})
			return err
		}, unit: "req"})

	// Writes. Event times increase so every write applies.
	var clock atomic.Int64
	clock.Store(time.Now().UnixMicro())
	ourWrite := func(ctx context.Context, rng *rand.Rand) error {
		id := entity("h", uniform.Pick(rng))
		_, err := e.ours.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "b10", Rows: []*pb.FeatureRow{{
			EntityId: id, EventTime: timestamppb.New(time.UnixMicro(clock.Add(1))), Values: doubles(10, rng.Float64())}}})
		return err
	}
	rawWrite := func(ctx context.Context, rng *rand.Rand) error {
		id := entity("w", uniform.Pick(rng))
		row := featurestore.Row{}
		for f := 0; f < 10; f++ {
			row.Cells = append(row.Cells, featurestore.Cell{Name: "f" + strconv.Itoa(f), EventTime: clock.Add(1), Value: featurestore.Value{Type: featurestore.TypeDouble, Float: rng.Float64()}})
		}
		data := featurestore.AppendRow(nil, row)
		v := strconv.FormatInt(clock.Load(), 10)
		if _, err := e.ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(e.rawTable),
			Item: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: id}, "version": &types.AttributeValueMemberN{Value: v},
				"row": &types.AttributeValueMemberB{Value: data}},
			ConditionExpression:       aws.String("attribute_not_exists(pk) OR version < :v"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: v}},
		}); err != nil {
			return err
		}
		return e.valkey.Do(ctx, e.valkey.B().Set().Key("raw:"+id).Value(string(data)).Build()).Error()
	}
	out = append(out, scenario{name: "WriteFeatures 1 row x 10", baseline: "raw conditional PutItem + ValKey SET",
		ours: func(ctx context.Context, _ int, rng *rand.Rand) error { return ourWrite(ctx, rng) },
		base: func(ctx context.Context, _ int, rng *rand.Rand) error { return rawWrite(ctx, rng) }, unit: "req"})

	readOurs := func(ctx context.Context, rng *rand.Rand) error {
		_, err := e.ours.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: e.refs[10], EntityIds: pickIDs(uniform, "h", 10, rng)})
		return err
	}
	readBase := func(ctx context.Context, rng *rand.Rand) error {
		_, err := e.base.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: e.refs[10], EntityIds: pickIDs(uniform, "h", 10, rng)})
		return err
	}
	out = append(out, scenario{name: "mixed 95% GetFeatures 10x10 / 5% write", baseline: "bare GETs / raw PutItem + SET",
		ours: func(ctx context.Context, _ int, rng *rand.Rand) error {
			if rng.Intn(100) < 5 {
				return ourWrite(ctx, rng)
			}
			return readOurs(ctx, rng)
		},
		base: func(ctx context.Context, _ int, rng *rand.Rand) error {
			if rng.Intn(100) < 5 {
				return rawWrite(ctx, rng)
			}
			return readBase(ctx, rng)
		}, unit: "req"})

	// Ingestion: 100 fresh rows per operation; the baseline writes the same encoded items
	// with four BatchWriteItem calls of 25, and no reads, cache or merge.
	var seq atomic.Int64
	rowsOf := func(prefix string) []*pb.FeatureRow {
		s := seq.Add(1)
		rows := make([]*pb.FeatureRow, 100)
		at := timestamppb.New(time.Now())
		for i := range rows {
			rows[i] = &pb.FeatureRow{EntityId: fmt.Sprintf("%s%d-%d", prefix, s, i), EventTime: at, Values: doubles(10, float64(i))}
		}
		return rows
	}
	rawBatch := func(ctx context.Context, _ int, rng *rand.Rand) error {
		rows := rowsOf("rb")
		for s := 0; s < len(rows); s += 25 {
			reqs := make([]types.WriteRequest, 0, 25)
			for _, r := range rows[s : s+25] {
				row := featurestore.Row{}
				for f := 0; f < 10; f++ {
					row.Cells = append(row.Cells, featurestore.Cell{Name: "f" + strconv.Itoa(f), EventTime: r.GetEventTime().AsTime().UnixMicro(), Value: featurestore.Value{Type: featurestore.TypeDouble, Float: r.GetValues()["f"+strconv.Itoa(f)].GetDoubleValue()}})
				}
				reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{
					"pk": &types.AttributeValueMemberS{Value: r.GetEntityId()}, "version": &types.AttributeValueMemberN{Value: "1"},
					"row": &types.AttributeValueMemberB{Value: featurestore.AppendRow(nil, row)}}}})
			}
			in := &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{e.rawTable: reqs}}
			for len(in.RequestItems) > 0 {
				res, err := e.ddb.BatchWriteItem(ctx, in)
				if err != nil {
					return err
				}
				in.RequestItems = res.UnprocessedItems
			}
		}
		return nil
	}
	out = append(out, scenario{name: "BatchWriteFeatures 100 rows x 10", baseline: "raw BatchWriteItem 4x25", unit: "rows", perOp: 100, workers: 4,
		ours: func(ctx context.Context, _ int, _ *rand.Rand) error {
			st, err := e.ours.BatchWriteFeatures(ctx)
			if err != nil {
				return err
			}
			if err := st.Send(&pb.BatchWriteFeaturesRequest{FeatureSet: "b10", Rows: rowsOf("b")}); err != nil {
				return err
			}
			res, err := st.CloseAndRecv()
			if err == nil && res.GetRowsWritten() != 100 {
				err = fmt.Errorf("batch wrote %d of 100", res.GetRowsWritten())
			}
			return err
		}, base: rawBatch})
	out = append(out, scenario{name: "StreamWriteFeatures 100 rows x 10", baseline: "raw BatchWriteItem 4x25", unit: "rows", perOp: 100, workers: 4,
		ours: func(ctx context.Context, _ int, _ *rand.Rand) error {
			st, err := e.ours.StreamWriteFeatures(ctx)
			if err != nil {
				return err
			}
			rows := rowsOf("s")
			for i := 0; i < 2; i++ {
				if err := st.Send(&pb.StreamWriteFeaturesRequest{Sequence: int64(i), FeatureSet: "b10", Rows: rows[i*50 : (i+1)*50]}); err != nil {
					return err
				}
			}
			for i := 0; i < 2; i++ {
				if _, err := st.Recv(); err != nil {
					return err
				}
			}
			return st.CloseSend()
		}, base: rawBatch})
	return out
}
