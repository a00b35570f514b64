// Package dynamo implements featurestore.Database on DynamoDB: one item per
// (feature set, entity) with a version for conditional writes, a keys-only GSI on the
// data subject for GDPR deletion, a TTL attribute, and a registry table.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"github.com/dsfeatures/featurestore/featurestore"
)

// Attribute and index names, shared with deploy/ table definitions.
const (
	AttrPK        = "pk"
	AttrVersion   = "version"
	AttrData      = "row"
	AttrSubject   = "subject"
	AttrExpiresAt = "expires_at"
	IndexSubject  = "by_subject"
)

// Tables names the tables. Prefix lets several deployments (or tests) share an account.
type Tables struct {
	Rows string
	Sets string
	// Deletions holds GDPR deletion jobs, subject tombstones and the audit trail.
	Deletions string
}

// TablesWithPrefix returns the default table names with prefix prepended.
func TablesWithPrefix(prefix string) Tables {
	return Tables{Rows: prefix + "featurestore_rows", Sets: prefix + "featurestore_sets", Deletions: prefix + "featurestore_deletions"}
}

// Store is a featurestore.Database on a DynamoDB client.
type Store struct {
	client *dynamodb.Client
	tables Tables
}

var _ featurestore.Database = (*Store)(nil)

// New returns a Store. It does not create tables; see EnsureTables.
func New(client *dynamodb.Client, tables Tables) *Store {
	return &Store{client: client, tables: tables}
}

// Client returns the underlying client, for tests and tools.
func (s *Store) Client() *dynamodb.Client { return s.client }

// Tables returns the table names.
func (s *Store) Tables() Tables { return s.tables }

func (s *Store) table(t featurestore.Table) string {
	if t == featurestore.SetsTable {
		return s.tables.Sets
	}
	return s.tables.Rows
}

func keyAttr(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrPK: &types.AttributeValueMemberS{Value: pk}}
}

// GetItem reads one item with a strongly consistent read.
func (s *Store) GetItem(ctx context.Context, key featurestore.ItemKey) (featurestore.Item, bool, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table(key.Table)),
		Key:            keyAttr(key.PK),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return featurestore.Item{}, false, fmt.Errorf("dynamodb get %s: %w", s.table(key.Table), err)
	}
	if out.Item == nil {
		return featurestore.Item{}, false, nil
	}
	it, err := decodeItem(key.Table, out.Item)
	return it, err == nil, err
}

// maxBatchGet is DynamoDB's limit of keys per BatchGetItem.
const maxBatchGet = 100

// GetItems reads keys with consistent BatchGetItem calls of up to 100 keys, all issued at
// once (one wave), retrying unprocessed keys with backoff.
func (s *Store) GetItems(ctx context.Context, keys []featurestore.ItemKey) (map[featurestore.ItemKey]featurestore.Item, error) {
	out := make(map[featurestore.ItemKey]featurestore.Item, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	// Deduplicate: BatchGetItem refuses duplicate keys.
	uniq := make([]featurestore.ItemKey, 0, len(keys))
	seen := make(map[featurestore.ItemKey]bool, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	chunks := (len(uniq) + maxBatchGet - 1) / maxBatchGet
	results := make([][]featurestore.Item, chunks)
	g, gctx := errgroup.WithContext(ctx)
	for c := 0; c < chunks; c++ {
		part := uniq[c*maxBatchGet : min((c+1)*maxBatchGet, len(uniq))]
		g.Go(func() error {
			items, err := s.batchGet(gctx, part)
			results[c] = items
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, items := range results {
		for _, it := range items {
			out[it.Key] = it
		}
	}
	return out, nil
}

func (s *Store) batchGet(ctx context.Context, keys []featurestore.ItemKey) ([]featurestore.Item, error) {
	req := map[string]types.KeysAndAttributes{}
	for _, k := range keys {
		name := s.table(k.Table)
		ka := req[name]
		ka.ConsistentRead = aws.Bool(true)
		ka.Keys = append(ka.Keys, keyAttr(k.PK))
		req[name] = ka
	}
	var items []featurestore.Item
	backoff := 10 * time.Millisecond
	for len(req) > 0 {
		out, err := s.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			return nil, fmt.Errorf("dynamodb batch get: %w", err)
		}
		for name, rows := range out.Responses {
			t := featurestore.RowsTable
			if name == s.tables.Sets {
				t = featurestore.SetsTable
			}
			for _, row := range rows {
				it, err := decodeItem(t, row)
				if err != nil {
					return nil, err
				}
				items = append(items, it)
			}
		}
		req = out.UnprocessedKeys
		if len(req) > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
	}
	return items, nil
}

// ErrAmbiguous means a conditional write failed its condition on an attempt the SDK
// retried after an earlier attempt's outcome was lost (a reset connection, a timeout): the
// earlier attempt may have applied and been overwritten since, so neither "written" nor
// "lost the race" can be claimed. Callers report an unknown outcome.
var ErrAmbiguous = errors.New("dynamodb: a retried conditional write failed its condition; an earlier attempt may have applied")

// PutItem writes item if the stored version is prevVersion (0: absent). It returns
// featurestore.ErrConflict when another writer got there first, and an error wrapping
// ErrAmbiguous when that cannot be told apart from its own lost earlier attempt.
func (s *Store) PutItem(ctx context.Context, item featurestore.Item, prevVersion int64) error {
	in := &dynamodb.PutItemInput{
		TableName: aws.String(s.table(item.Key.Table)),
		Item:      encodeItem(item),
		// On a retry, the stored item tells whether the first attempt applied.
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if prevVersion == 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(" + AttrPK + ")")
	} else {
		in.ConditionExpression = aws.String(AttrVersion + " = :v")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{
			":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(prevVersion, 10)},
		}
	}
	var attempts int
	_, err := s.client.PutItem(ctx, in, countAttempts(&attempts))
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		if attempts <= 1 {
			return featurestore.ErrConflict
		}
		// Our version and data stored means the lost attempt applied (or an identical
		// write did, which leaves the same state) and nothing has overwritten it.
		if stored, derr := decodeItem(item.Key.Table, ccf.Item); derr == nil && stored.Version == item.Version && string(stored.Data) == string(item.Data) {
			return nil
		}
		return fmt.Errorf("dynamodb put %s: %w", s.table(item.Key.Table), ErrAmbiguous)
	}
	if err != nil {
		return fmt.Errorf("dynamodb put %s: %w", s.table(item.Key.Table), err)
	}
	return nil
}

// PutItems writes items in one TransactWriteItems call, each conditional on its version.
// The SDK fills the client request token, so DynamoDB answers a retry of a transaction that
// committed with success. A retry canceled anyway (a store that ignores the token) is
// reported as ErrAmbiguous, never as a conflict, for the reason PutItem gives.
func (s *Store) PutItems(ctx context.Context, items []featurestore.Item, prevVersions []int64) error {
	if len(items) > featurestore.MaxGroupPut {
		return fmt.Errorf("dynamodb: %d items in one transaction, limit %d", len(items), featurestore.MaxGroupPut)
	}
	tx := make([]types.TransactWriteItem, len(items))
	for i, it := range items {
		put := &types.Put{TableName: aws.String(s.table(it.Key.Table)), Item: encodeItem(it)}
		if prevVersions[i] == 0 {
			put.ConditionExpression = aws.String("attribute_not_exists(" + AttrPK + ")")
		} else {
			put.ConditionExpression = aws.String(AttrVersion + " = :v")
			put.ExpressionAttributeValues = map[string]types.AttributeValue{
				":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(prevVersions[i], 10)},
			}
		}
		tx[i] = types.TransactWriteItem{Put: put}
	}
	var attempts int
	_, err := s.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx}, countAttempts(&attempts))
	var canceled *types.TransactionCanceledException
	var inProgress *types.TransactionInProgressException
	var conflict *types.TransactionConflictException
	if errors.As(err, &canceled) || errors.As(err, &conflict) || errors.As(err, &inProgress) {
		if attempts > 1 {
			return fmt.Errorf("dynamodb transact write: %w", ErrAmbiguous)
		}
		return featurestore.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("dynamodb transact write: %w", err)
	}
	return nil
}

// KeysBySubject queries the keys-only by_subject GSI.
func (s *Store) KeysBySubject(ctx context.Context, subject string) ([]featurestore.ItemKey, error) {
	var out []featurestore.ItemKey
	p := dynamodb.NewQueryPaginator(s.client, &dynamodb.QueryInput{
		TableName:                 aws.String(s.tables.Rows),
		IndexName:                 aws.String(IndexSubject),
		KeyConditionExpression:    aws.String(AttrSubject + " = :s"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: subject}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamodb query %s: %w", IndexSubject, err)
		}
		for _, it := range page.Items {
			if pk, ok := it[AttrPK].(*types.AttributeValueMemberS); ok {
				out = append(out, featurestore.ItemKey{Table: featurestore.RowsTable, PK: pk.Value})
			}
		}
	}
	return out, nil
}

// ListItems scans a table with consistent reads.
func (s *Store) ListItems(ctx context.Context, t featurestore.Table) ([]featurestore.Item, error) {
	var out []featurestore.Item
	p := dynamodb.NewScanPaginator(s.client, &dynamodb.ScanInput{
		TableName:      aws.String(s.table(t)),
		ConsistentRead: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamodb scan %s: %w", s.table(t), err)
		}
		for _, row := range page.Items {
			it, err := decodeItem(t, row)
			if err != nil {
				return nil, err
			}
			out = append(out, it)
		}
	}
	return out, nil
}

func encodeItem(it featurestore.Item) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{
		AttrPK:      &types.AttributeValueMemberS{Value: it.Key.PK},
		AttrVersion: &types.AttributeValueMemberN{Value: strconv.FormatInt(it.Version, 10)},
	}
	if len(it.Data) > 0 {
		m[AttrData] = &types.AttributeValueMemberB{Value: it.Data}
	}
	// The GSI is sparse: items without a subject are not in it.
	if it.Subject != "" {
		m[AttrSubject] = &types.AttributeValueMemberS{Value: it.Subject}
	}
	if it.ExpiresAt > 0 {
		m[AttrExpiresAt] = &types.AttributeValueMemberN{Value: strconv.FormatInt(it.ExpiresAt, 10)}
	}
	return m
}

func decodeItem(t featurestore.Table, m map[string]types.AttributeValue) (featurestore.Item, error) {
	it := featurestore.Item{Key: featurestore.ItemKey{Table: t}}
	pk, ok := m[AttrPK].(*types.AttributeValueMemberS)
	if !ok {
		return featurestore.Item{}, errors.New("dynamodb item without pk")
	}
	it.Key.PK = pk.Value
	if v, ok := m[AttrVersion].(*types.AttributeValueMemberN); ok {
		n, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil {
			return featurestore.Item{}, fmt.Errorf("item %q: version: %w", pk.Value, err)
		}
		it.Version = n
	}
	if v, ok := m[AttrData].(*types.AttributeValueMemberB); ok {
		it.Data = v.Value
	}
	if v, ok := m[AttrSubject].(*types.AttributeValueMemberS); ok {
		it.Subject = v.Value
	}
	if v, ok := m[AttrExpiresAt].(*types.AttributeValueMemberN); ok {
		it.ExpiresAt, _ = strconv.ParseInt(v.Value, 10, 64)
	}
	return it, nil
}
