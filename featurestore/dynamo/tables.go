package dynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// EnsureTables creates the tables, the by_subject GSI and the TTL setting if they are
// missing, and waits until they are active. It is idempotent and safe to run from
// several replicas at once.
func (s *Store) EnsureTables(ctx context.Context) error {
	for _, d := range TableDefinitions(s.tables) {
		if err := s.ensureTable(ctx, d.Input); err != nil {
			return err
		}
		if d.TTLAttribute != "" {
			if err := s.ensureTTL(ctx, aws.ToString(d.Input.TableName)); err != nil {
				return err
			}
		}
	}
	return nil
}

// TableDefinition is one table as EnsureTables creates it.
type TableDefinition struct {
	Input *dynamodb.CreateTableInput
	// TTLAttribute is the attribute DynamoDB's TTL is enabled on, or "" for none.
	TTLAttribute string
}

// TableDefinitions returns the tables EnsureTables creates for t, with their keys,
// indexes and TTL, so that deployment files (deploy/cloudformation) can be checked
// against the code.
func TableDefinitions(t Tables) []TableDefinition {
	return []TableDefinition{
		{Input: rowsTableInput(t.Rows), TTLAttribute: AttrExpiresAt},
		{Input: setsTableInput(t.Sets)},
		{Input: deletionsTableInput(t.Deletions), TTLAttribute: AttrExpiresAt},
		// Freshness items are keyed by set name like the registry's, and kept for good.
		{Input: setsTableInput(t.Freshness)},
	}
}

func rowsTableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrSubject), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String(IndexSubject),
			KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String(AttrSubject), KeyType: types.KeyTypeHash}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		}},
	}
}

func setsTableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash}},
	}
}

// deletionsTableInput is the GDPR records' table: a sparse by_claim index over the jobs
// that are pending or running, so that workers find work without scanning.
func deletionsTableInput(name string) *dynamodb.CreateTableInput {
	in := setsTableInput(name)
	in.AttributeDefinitions = append(in.AttributeDefinitions,
		types.AttributeDefinition{AttributeName: aws.String(attrClaim), AttributeType: types.ScalarAttributeTypeS},
		types.AttributeDefinition{AttributeName: aws.String(attrLeaseUntil), AttributeType: types.ScalarAttributeTypeN})
	in.GlobalSecondaryIndexes = []types.GlobalSecondaryIndex{{
		IndexName: aws.String(IndexClaim),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrClaim), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrLeaseUntil), KeyType: types.KeyTypeRange},
		},
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
	}}
	return in
}

func (s *Store) ensureTable(ctx context.Context, in *dynamodb.CreateTableInput) error {
	name := aws.ToString(in.TableName)
	_, err := s.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		_, err = s.client.CreateTable(ctx, in)
		var inUse *types.ResourceInUseException
		if errors.As(err, &inUse) {
			err = nil // another replica created it
		}
		if err != nil {
			return fmt.Errorf("create table %s: %w", name, err)
		}
	} else if err != nil {
		return fmt.Errorf("describe table %s: %w", name, err)
	}
	w := dynamodb.NewTableExistsWaiter(s.client)
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, 2*time.Minute); err != nil {
		return fmt.Errorf("wait for table %s: %w", name, err)
	}
	return nil
}

func (s *Store) ensureTTL(ctx context.Context, table string) error {
	d, err := s.client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("describe ttl of %s: %w", table, err)
	}
	if d.TimeToLiveDescription != nil && (d.TimeToLiveDescription.TimeToLiveStatus == types.TimeToLiveStatusEnabled ||
		d.TimeToLiveDescription.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		return nil
	}
	_, err = s.client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(AttrExpiresAt),
			Enabled:       aws.Bool(true),
		},
	})
	if err != nil {
		// A concurrent replica may have enabled it first.
		if d2, err2 := s.client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)}); err2 == nil &&
			d2.TimeToLiveDescription != nil && d2.TimeToLiveDescription.TimeToLiveStatus == types.TimeToLiveStatusEnabled {
			return nil
		}
		return fmt.Errorf("enable ttl on %s: %w", table, err)
	}
	return nil
}
