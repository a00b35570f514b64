package devstack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/gdpr"
)

// warmRounds is how many times warm runs each kind of request. A fresh DynamoDB Local
// answered its first conditional put and read in 280 ms on an idle machine and 460-545 ms
// with both cores busy, then 50-90 ms for the next ten rounds and 20-40 ms after
// that (measured by a probe like warm). The first round is the cliff that matters:
// the server abandons a put that takes longer than its 500 ms put window.
const warmRounds = 10

// warmPrefix names the tables warm creates and drops again.
const warmPrefix = "devstack_warmup_"

// warm sends DynamoDB Local at endpoint each kind of request the feature store makes,
// on tables of its own that it drops afterwards, so that the JVM has loaded and
// compiled their code paths before the first real request. Without it, whoever writes
// first to a fresh stack (a test, or a user of `make run`) could be answered
// "outcome unknown" although nothing is wrong.
func warm(ctx context.Context, endpoint string) (err error) {
	client := dynamo.NewClient(dynamo.LocalConfig(), endpoint)
	tables := dynamo.TablesWithPrefix(warmPrefix)
	db := dynamo.New(client, tables)
	if err := db.EnsureTables(ctx); err != nil {
		return fmt.Errorf("warm up DynamoDB Local: %w", err)
	}
	defer func() {
		for _, d := range dynamo.TableDefinitions(tables) {
			if _, derr := client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: d.Input.TableName}); derr != nil {
				err = errors.Join(err, fmt.Errorf("warm up DynamoDB Local: drop %s: %w", aws.ToString(d.Input.TableName), derr))
			}
		}
	}()
	jobs := dynamo.NewDeletions(client, tables.Deletions, func(s string) string { return s })
	for i := range warmRounds {
		if err := warmRound(ctx, db, jobs, i); err != nil {
			return fmt.Errorf("warm up DynamoDB Local, round %d: %w", i+1, err)
		}
	}
	return nil
}

// warmRound makes one of each request: conditional puts that succeed and one that
// loses its condition, a transaction, a one-key read (GetItem, as a write's commit reads)
// and a batched consistent read, a query of the subject index, a scan, and the deletion
// jobs' transaction, reads, index query and conditional update.
func warmRound(ctx context.Context, db *dynamo.Store, jobs *dynamo.Deletions, i int) error {
	a := writethrough.Key{Table: featurestore.RowsTable, PK: fmt.Sprintf("a%d", i)}
	b := writethrough.Key{Table: featurestore.RowsTable, PK: fmt.Sprintf("b%d", i)}
	set := writethrough.Key{Table: featurestore.SetsTable, PK: fmt.Sprintf("s%d", i)}
	if err := db.PutItem(ctx, writethrough.Item{Key: a, Version: 1, Data: []byte("1"), Subject: "s"}, 0); err != nil {
		return err
	}
	if err := db.PutItem(ctx, writethrough.Item{Key: a, Version: 2, Data: []byte("2"), Subject: "s"}, 1); err != nil {
		return err
	}
	// A retried attempt (a loaded JVM's 5xx) reports ErrAmbiguous instead of the conflict.
	if err := db.PutItem(ctx, writethrough.Item{Key: a, Version: 3, Data: []byte("3")}, 1); !errors.Is(err, writethrough.ErrConflict) && !errors.Is(err, writethrough.ErrAmbiguous) {
		return fmt.Errorf("a put on a stale version: %v, want a conflict", err)
	}
	if err := db.PutItems(ctx, []writethrough.Item{{Key: set, Version: 1, Data: []byte("1")}, {Key: b, Version: 1, Data: []byte("1")}}, []int64{0, 0}); err != nil {
		return err
	}
	if _, err := db.GetItems(ctx, []writethrough.Key{set}); err != nil {
		return err
	}
	if _, err := db.GetItems(ctx, []writethrough.Key{a, b}); err != nil {
		return err
	}
	if _, err := db.KeysBySubject(ctx, "s"); err != nil {
		return err
	}
	if _, _, err := db.ListItems(ctx, featurestore.RowsTable, "", 10); err != nil {
		return err
	}
	now := time.Now()
	job, _, err := jobs.Create(ctx, gdpr.Job{ID: fmt.Sprintf("j%d", i), Subject: "s", SubjectKey: fmt.Sprintf("k%d", i), RequestedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		return err
	}
	if _, err := jobs.Get(ctx, job.ID); err != nil {
		return err
	}
	if _, err := jobs.Claimable(ctx, now, 10); err != nil {
		return err
	}
	_, _, err = jobs.Claim(ctx, job.ID, "warm-up", now, now.Add(time.Minute))
	return err
}
