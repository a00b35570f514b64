package devstack

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dsfeatures/featurestore/featurestore/dynamo"
)

// TestStartDynamoDBWarmsUpWithoutLeavingTables: the warm-up runs each kind of request
// (it fails if one is answered wrongly) on tables of its own, and drops them,
// so a fresh stack lists no tables; warming a server that does not answer is an error.
func TestStartDynamoDBWarmsUpWithoutLeavingTables(t *testing.T) {
	dir, err := FindDynamoDBLocal(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ddb, err := StartDynamoDB(ctx, dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ddb.Stop)
	// StartDynamoDB goes on without a failed warm-up; the warm-up itself must succeed.
	if err := warm(ctx, ddb.Endpoint); err != nil {
		t.Fatalf("a second warm-up: %v", err)
	}
	out, err := dynamo.NewClient(dynamo.LocalConfig(), ddb.Endpoint).ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.TableNames) != 0 {
		t.Errorf("tables after the warm-up: %v, want none", out.TableNames)
	}
	ddb.Stop()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := warm(wctx, ddb.Endpoint); err == nil {
		t.Error("warming a stopped DynamoDB Local succeeded")
	}
}
