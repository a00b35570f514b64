// Package dynamo implements the feature store's storage on DynamoDB: the write-through
// items (writethrough.Database: one item per feature set and entity, a version for
// conditional writes, a keys-only GSI on the data subject, a TTL attribute, the
// registry, and one freshness item per feature set), and the GDPR deletion records (jobs, subject tombstones, the audit trail).
// It is the only package that talks to DynamoDB.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sync/errgroup"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
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
	// Freshness holds one item per feature set: its newest event time, last write and
	// rows written per minute over the last hour, added up from every replica.
	Freshness string
}

// TablesWithPrefix returns the default table names with prefix prepended.
func TablesWithPrefix(prefix string) Tables {
	return Tables{Rows: prefix + "featurestore_rows", Sets: prefix + "featurestore_sets", Deletions: prefix + "featurestore_deletions",
		Freshness: prefix + "featurestore_freshness"}
}

// Store is the write-through Database, the registry listing and the by_subject index on
// a DynamoDB client.
type Store struct {
	client *dynamodb.Client
	tables Tables
}

var (
	_ writethrough.Database = (*Store)(nil)
	_ featurestore.Registry = (*Store)(nil)
)

// New returns a Store. It does not create tables; see EnsureTables.
func New(client *dynamodb.Client, tables Tables) *Store {
	return &Store{client: client, tables: tables}
}

// Client returns the underlying client, for tests and tools.
func (s *Store) Client() *dynamodb.Client { return s.client }

// Tables returns the table names.
func (s *Store) Tables() Tables { return s.tables }

func (s *Store) table(t writethrough.Table) string {
	switch t {
	case featurestore.SetsTable:
		return s.tables.Sets
	case featurestore.FreshnessTable:
		return s.tables.Freshness
	}
	return s.tables.Rows
}

func (s *Store) tableOf(name string) writethrough.Table {
	switch name {
	case s.tables.Sets:
		return featurestore.SetsTable
	case s.tables.Freshness:
		return featurestore.FreshnessTable
	}
	return featurestore.RowsTable
}

// record is an item as stored; attributevalue marshals it.
type record struct {
	PK        string `dynamodbav:"pk"`
	Version   int64  `dynamodbav:"version"`
	Data      []byte `dynamodbav:"row,omitempty"`
	Subject   string `dynamodbav:"subject,omitempty"` // the GSI is sparse: no subject, not indexed
	ExpiresAt int64  `dynamodbav:"expires_at,omitempty"`
}

func encodeItem(it writethrough.Item) (map[string]types.AttributeValue, error) {
	return attributevalue.MarshalMap(record{PK: it.Key.PK, Version: it.Version, Data: it.Data, Subject: it.Subject, ExpiresAt: it.ExpiresAt})
}

func decodeItem(t writethrough.Table, m map[string]types.AttributeValue) (writethrough.Item, error) {
	var r record
	if err := attributevalue.UnmarshalMap(m, &r); err != nil {
		return writethrough.Item{}, fmt.Errorf("dynamodb item: %w", err)
	}
	if r.PK == "" {
		return writethrough.Item{}, errors.New("dynamodb item without pk")
	}
	return writethrough.Item{Key: writethrough.Key{Table: t, PK: r.PK}, Version: r.Version, Data: r.Data, Subject: r.Subject, ExpiresAt: r.ExpiresAt}, nil
}

func keyAttr(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrPK: &types.AttributeValueMemberS{Value: pk}}
}

// maxBatchGet is DynamoDB's limit of keys per BatchGetItem.
const maxBatchGet = 100

// GetItems reads keys with strongly consistent reads: GetItem for one key, otherwise
// BatchGetItem calls of up to 100 keys, all issued at once (one wave), retrying
// unprocessed keys with backoff.
func (s *Store) GetItems(ctx context.Context, keys []writethrough.Key) (map[writethrough.Key]writethrough.Item, error) {
	out := make(map[writethrough.Key]writethrough.Item, len(keys))
	if len(keys) == 1 {
		resp, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table(keys[0].Table)), Key: keyAttr(keys[0].PK), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("dynamodb get %s: %w", s.table(keys[0].Table), err)
		}
		if resp.Item != nil {
			it, err := decodeItem(keys[0].Table, resp.Item)
			if err != nil {
				return nil, err
			}
			out[it.Key] = it
		}
		return out, nil
	}
	// BatchGetItem refuses duplicate keys.
	uniq := make([]writethrough.Key, 0, len(keys))
	seen := make(map[writethrough.Key]bool, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	chunks := (len(uniq) + maxBatchGet - 1) / maxBatchGet
	results := make([][]writethrough.Item, chunks)
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

// errUnprocessed makes backoff retry a batch with keys left over.
var errUnprocessed = errors.New("unprocessed keys")

func (s *Store) batchGet(ctx context.Context, keys []writethrough.Key) ([]writethrough.Item, error) {
	req := map[string]types.KeysAndAttributes{}
	for _, k := range keys {
		name := s.table(k.Table)
		ka := req[name]
		ka.ConsistentRead = aws.Bool(true)
		ka.Keys = append(ka.Keys, keyAttr(k.PK))
		req[name] = ka
	}
	var items []writethrough.Item
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 10*time.Millisecond, time.Second
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		out, err := s.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			return struct{}{}, backoff.Permanent(fmt.Errorf("dynamodb batch get: %w", err))
		}
		for name, rows := range out.Responses {
			for _, row := range rows {
				it, err := decodeItem(s.tableOf(name), row)
				if err != nil {
					return struct{}{}, backoff.Permanent(err)
				}
				items = append(items, it)
			}
		}
		if req = out.UnprocessedKeys; len(req) > 0 {
			return struct{}{}, errUnprocessed
		}
		return struct{}{}, nil
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return nil, err
	}
	return items, nil
}

// ErrAmbiguous is writethrough.ErrAmbiguous, kept under this package's name for callers
// that match on it.
var ErrAmbiguous = writethrough.ErrAmbiguous

// condition returns the condition expression of a put after prevVersion (0: absent).
func condition(prevVersion int64) (*string, map[string]types.AttributeValue) {
	if prevVersion == 0 {
		return aws.String("attribute_not_exists(" + AttrPK + ")"), nil
	}
	return aws.String(AttrVersion + " = :v"), map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(prevVersion, 10)}}
}

// PutItem writes item if the stored version is prevVersion (0: absent). It returns
// writethrough.ErrConflict when another writer got there first, an error wrapping
// ErrAmbiguous when that cannot be told apart from its own lost earlier attempt, and
// writethrough.ErrItemTooLarge (nothing written) for an item over DynamoDB's limit.
func (s *Store) PutItem(ctx context.Context, item writethrough.Item, prevVersion int64) error {
	if item.Size() > writethrough.MaxItemBytes {
		return writethrough.ErrItemTooLarge
	}
	av, err := encodeItem(item)
	if err != nil {
		return err
	}
	in := &dynamodb.PutItemInput{
		TableName: aws.String(s.table(item.Key.Table)),
		Item:      av,
		// On a retry, the stored item tells whether the first attempt applied.
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	in.ConditionExpression, in.ExpressionAttributeValues = condition(prevVersion)
	var attempts int
	_, err = s.client.PutItem(ctx, in, countAttempts(&attempts))
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		if attempts <= 1 {
			return writethrough.ErrConflict
		}
		// Our version and data stored means the lost attempt applied (or an identical
		// write did, which leaves the same state) and nothing has overwritten it.
		if stored, derr := decodeItem(item.Key.Table, ccf.Item); derr == nil && stored.Version == item.Version && string(stored.Data) == string(item.Data) {
			return nil
		}
		return fmt.Errorf("dynamodb put %s: %w", s.table(item.Key.Table), ErrAmbiguous)
	}
	if tooLarge(err) {
		return fmt.Errorf("dynamodb put %s: %w", s.table(item.Key.Table), writethrough.ErrItemTooLarge)
	}
	if err != nil {
		return fmt.Errorf("dynamodb put %s: %w", s.table(item.Key.Table), err)
	}
	return nil
}

// tooLarge recognises DynamoDB's refusal of an item or transaction over its size limits,
// which no retry can fix.
func tooLarge(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "ValidationException" {
		return false
	}
	msg := strings.ToLower(api.ErrorMessage())
	return strings.Contains(msg, "size") && (strings.Contains(msg, "exceed") || strings.Contains(msg, "maximum"))
}

// PutItems writes items in one TransactWriteItems call, each conditional on its version.
// The SDK fills the client request token, so DynamoDB answers a retry of a transaction that
// committed with success. A retry canceled anyway (a store that ignores the token) is
// reported as ErrAmbiguous, never as a conflict, for the reason PutItem gives.
func (s *Store) PutItems(ctx context.Context, items []writethrough.Item, prevVersions []int64) error {
	if len(items) > writethrough.MaxGroupItems {
		return fmt.Errorf("dynamodb: %d items in one transaction, limit %d: %w", len(items), writethrough.MaxGroupItems, writethrough.ErrItemTooLarge)
	}
	total := 0
	tx := make([]types.TransactWriteItem, len(items))
	for i, it := range items {
		if sz := it.Size(); sz > writethrough.MaxItemBytes {
			return writethrough.ErrItemTooLarge
		} else {
			total += sz
		}
		av, err := encodeItem(it)
		if err != nil {
			return err
		}
		put := &types.Put{TableName: aws.String(s.table(it.Key.Table)), Item: av}
		put.ConditionExpression, put.ExpressionAttributeValues = condition(prevVersions[i])
		tx[i] = types.TransactWriteItem{Put: put}
	}
	if total > writethrough.MaxGroupBytes {
		return fmt.Errorf("dynamodb: a transaction of %d bytes, limit %d: %w", total, writethrough.MaxGroupBytes, writethrough.ErrItemTooLarge)
	}
	var attempts int
	_, err := s.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: tx}, countAttempts(&attempts))
	var canceled *types.TransactionCanceledException
	var inProgress *types.TransactionInProgressException
	var conflict *types.TransactionConflictException
	if errors.As(err, &canceled) {
		// A cancellation for an item DynamoDB refuses is no conflict: retrying cannot help.
		for _, r := range canceled.CancellationReasons {
			if aws.ToString(r.Code) == "ValidationError" {
				msg := strings.ToLower(aws.ToString(r.Message))
				if strings.Contains(msg, "size") && (strings.Contains(msg, "exceed") || strings.Contains(msg, "maximum")) {
					return fmt.Errorf("dynamodb transact write: %s: %w", aws.ToString(r.Message), writethrough.ErrItemTooLarge)
				}
				return fmt.Errorf("dynamodb transact write: %s: %w", aws.ToString(r.Message), writethrough.ErrRefused)
			}
		}
	}
	if errors.As(err, &canceled) || errors.As(err, &conflict) || errors.As(err, &inProgress) {
		if attempts > 1 {
			return fmt.Errorf("dynamodb transact write: %w", ErrAmbiguous)
		}
		return writethrough.ErrConflict
	}
	if tooLarge(err) {
		return fmt.Errorf("dynamodb transact write: %w", writethrough.ErrItemTooLarge)
	}
	if err != nil {
		return fmt.Errorf("dynamodb transact write: %w", err)
	}
	return nil
}

// KeysBySubject queries the keys-only by_subject GSI. The index is eventually
// consistent: it may miss rows written a moment ago and list rows erased a moment ago,
// so callers re-query until it is empty.
func (s *Store) KeysBySubject(ctx context.Context, subject string) ([]writethrough.Key, error) {
	var out []writethrough.Key
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
				out = append(out, writethrough.Key{Table: featurestore.RowsTable, PK: pk.Value})
			}
		}
	}
	return out, nil
}

// ListItems returns up to limit items of a table after the item with key start ("": from
// the beginning), with consistent reads, and the key to start the next page from (""
// after the last page). The order is DynamoDB's: stable, not sorted.
func (s *Store) ListItems(ctx context.Context, t writethrough.Table, start string, limit int) ([]writethrough.Item, string, error) {
	var out []writethrough.Item
	var startKey map[string]types.AttributeValue
	if start != "" {
		startKey = keyAttr(start)
	}
	for len(out) < limit {
		page, err := s.client.Scan(ctx, &dynamodb.ScanInput{
			TableName:         aws.String(s.table(t)),
			ConsistentRead:    aws.Bool(true),
			Limit:             aws.Int32(int32(limit - len(out))),
			ExclusiveStartKey: startKey,
		})
		if err != nil {
			return nil, "", fmt.Errorf("dynamodb scan %s: %w", s.table(t), err)
		}
		for _, row := range page.Items {
			it, err := decodeItem(t, row)
			if err != nil {
				return nil, "", err
			}
			out = append(out, it)
		}
		startKey = page.LastEvaluatedKey
		if len(startKey) == 0 {
			return out, "", nil
		}
	}
	pk, _ := startKey[AttrPK].(*types.AttributeValueMemberS)
	if pk == nil {
		return out, "", nil
	}
	return out, pk.Value, nil
}
