package server_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"google.golang.org/grpc"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/client"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

// ingestParallelism is the concurrency of both the lanes (sub-chunks in flight) and the
// raw baseline (BatchWriteItem calls in flight), so the ratio compares like with like.
const ingestParallelism = 4

// BenchmarkIngest writes rowsPerRun rows of 10 features through the batch lane and the
// streaming lane, and the same items with raw BatchWriteItem (25 items a call,
// ingestParallelism calls in flight, no cache, no read, no merge) as the baseline, in
// one run. Metrics are rows/s and the ratio to the baseline (higher is better), plus the
// protocol's DynamoDB floor (a consistent read and a conditional transaction per 100 rows)
// and the lanes' ratio to it.
func BenchmarkIngest(b *testing.B) {
	const rowsPerRun = 4000
	cfg := writethrough.Config{WriteTimeout: 2 * time.Second, Lease: 3 * time.Second}
	be := newBenchEnv(b, cfg, "ingest", "f", 10)
	shared, st, svc, logger := be.shared, be.st, be.svc, be.logger
	ctx := context.Background()
	g := server.NewGRPC(server.New(svc, logger, server.Options{StreamInFlight: ingestParallelism, BatchInFlight: ingestParallelism}), nil, logger, grpc.MaxRecvMsgSize(64<<20))
	addr, _ := serveAt(b, g.Server)
	c, err := client.Dial(addr, client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ddb := dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint)
	rawTable := st.Prefix + "raw"
	if _, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(rawTable), BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	}); err != nil {
		b.Fatal(err)
	}

	run := 0
	rows := func() []*pb.FeatureRow {
		run++
		out := make([]*pb.FeatureRow, rowsPerRun)
		at := time.Now()
		for i := range out {
			vals := make(map[string]*pb.Value, 10)
			for f := 0; f < 10; f++ {
				vals["f"+strconv.Itoa(f)] = client.Double(float64(i + f))
			}
			out[i] = client.Row(fmt.Sprintf("r%d-%d", run, i), at, vals)
		}
		return out
	}
	rowsTable := st.Dynamo.Tables().Rows
	encode := func(r *pb.FeatureRow) map[string]types.AttributeValue {
		row := featurestore.Row{}
		for name, v := range r.GetValues() {
			row.Cells = append(row.Cells, featurestore.Cell{Name: name, EventTime: r.GetEventTime().AsTime().UnixMicro(), Value: featurestore.Value{Type: featurestore.TypeDouble, Float: v.GetDoubleValue()}})
		}
		return map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "ingest#" + r.GetEntityId()}, "version": &types.AttributeValueMemberN{Value: "1"},
			"row": &types.AttributeValueMemberB{Value: featurestore.AppendRow(nil, row)},
		}
	}
	var rawRate, floorRate, batchRate, streamRate []float64
	for i := 0; i < b.N; i++ {
		// The protocol's DynamoDB floor: per 100 rows, one consistent BatchGetItem and one
		// TransactWriteItems of conditional puts, as the lanes do, with no cache and no
		// server, into the lanes' own table (with its GSI). It tells how much of the gap to
		// raw BatchWriteItem is DynamoDB work the protocol needs rather than our overhead.
		data := rows()
		start := time.Now()
		chunks := make(chan []*pb.FeatureRow)
		var fwg sync.WaitGroup
		for w := 0; w < ingestParallelism; w++ {
			fwg.Add(1)
			go func() {
				defer fwg.Done()
				for chunk := range chunks {
					keys := make([]map[string]types.AttributeValue, len(chunk))
					tx := make([]types.TransactWriteItem, len(chunk))
					for j, r := range chunk {
						item := encode(r)
						item["pk"] = &types.AttributeValueMemberS{Value: "floor#" + r.GetEntityId()}
						keys[j] = map[string]types.AttributeValue{"pk": item["pk"]}
						tx[j] = types.TransactWriteItem{Put: &types.Put{TableName: aws.String(rowsTable), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}}
					}
					in := &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{rowsTable: {Keys: keys, ConsistentRead: aws.Bool(true)}}}
					for len(in.RequestItems) > 0 {
						out, err := ddb.BatchGetItem(ctx, in)
						if err != nil {
							b.Error(err)
							return
						}
						in.RequestItems = out.UnprocessedKeys
					}
					if _, err := ddb.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		for s := 0; s < len(data); s += 100 {
			chunks <- data[s:min(s+100, len(data))]
		}
		close(chunks)
		fwg.Wait()
		floorRate = append(floorRate, rowsPerRun/time.Since(start).Seconds())

		// Raw BatchWriteItem baseline: the encoded row as it would be stored.
		data = rows()
		start = time.Now()
		work := make(chan []types.WriteRequest)
		var wg sync.WaitGroup
		for w := 0; w < ingestParallelism; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for reqs := range work {
					in := &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{rawTable: reqs}}
					for len(in.RequestItems) > 0 {
						out, err := ddb.BatchWriteItem(ctx, in)
						if err != nil {
							b.Error(err)
							return
						}
						in.RequestItems = out.UnprocessedItems
					}
				}
			}()
		}
		for s := 0; s < len(data); s += 25 {
			reqs := make([]types.WriteRequest, 0, 25)
			for _, r := range data[s:min(s+25, len(data))] {
				reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: encode(r)}})
			}
			work <- reqs
		}
		close(work)
		wg.Wait()
		rawRate = append(rawRate, rowsPerRun/time.Since(start).Seconds())

		data = rows()
		start = time.Now()
		sum, err := c.BatchWrite(ctx, "ingest", 500, client.RowsFrom(data))
		if err != nil || sum.GetRowsWritten() != rowsPerRun {
			b.Fatalf("batch: %v %v", sum, err)
		}
		batchRate = append(batchRate, rowsPerRun/time.Since(start).Seconds())

		data = rows()
		start = time.Now()
		sw, err := c.NewStreamWriter(ctx, client.StreamOptions{MaxUnacked: 2 * ingestParallelism})
		if err != nil {
			b.Fatal(err)
		}
		for s := 0; s < len(data); s += 50 {
			if _, err := sw.Send("ingest", data[s:min(s+50, len(data))]...); err != nil {
				b.Fatal(err)
			}
		}
		if err := sw.Close(); err != nil {
			b.Fatal(err)
		}
		streamRate = append(streamRate, rowsPerRun/time.Since(start).Seconds())
	}
	raw, floor, batch, stream := median(rawRate), median(floorRate), median(batchRate), median(streamRate)
	b.ReportMetric(raw, "raw-rows/s")
	b.ReportMetric(floor, "floor-rows/s")
	b.ReportMetric(floor/raw, "floor-ratio")
	b.ReportMetric(batch/floor, "batch-vs-floor")
	b.ReportMetric(batch, "batch-rows/s")
	b.ReportMetric(stream, "stream-rows/s")
	b.ReportMetric(batch/raw, "batch-ratio")
	b.ReportMetric(stream/raw, "stream-ratio")
}

func median(xs []float64) float64 {
	p50, _ := quantiles(xs)
	return p50
}
