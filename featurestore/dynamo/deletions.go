package dynamo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/cenkalti/backoff/v5"
	"golang.org/x/sync/errgroup"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/gdpr"
)

// The deletions table holds three kinds of item, by pk:
//
//	job#<id>             a deletion job; while it is pending or running it carries "claim",
//	                     which puts it in the sparse by_claim index (sort key lease_until),
//	                     and the plaintext subject id, which Finish removes
//	subject#<keyed hash> the subject's tombstone: deletion time, in progress, its job ids
//	audit#<id>           the job's audit trail, one list of events
//
// Jobs and audit items carry the retention TTL; tombstones are kept for good, because
// they refuse late rows with event times at or before the deletion.
const (
	IndexClaim     = "by_claim"
	attrClaim      = "claim"
	attrLeaseUntil = "lease_until"
	claimPending   = "1"
)

// Deletions is the GDPR deletion records on DynamoDB: gdpr.JobStore for the workers and
// featurestore.Erasures for the write lanes.
type Deletions struct {
	client *dynamodb.Client
	table  string
	// subjectKey hashes subject ids (gdpr.Keyer.SubjectKey).
	subjectKey func(string) string
}

var (
	_ gdpr.JobStore         = (*Deletions)(nil)
	_ featurestore.Erasures = (*Deletions)(nil)
)

// NewDeletions returns the deletion records on table (created by Store.EnsureTables),
// keying subjects with subjectKey.
func NewDeletions(client *dynamodb.Client, table string, subjectKey func(string) string) *Deletions {
	return &Deletions{client: client, table: table, subjectKey: subjectKey}
}

// jobRecord is a job as stored.
type jobRecord struct {
	PK           string `dynamodbav:"pk"`
	ID           string `dynamodbav:"id"`
	Subject      string `dynamodbav:"subject,omitempty"`
	SubjectKey   string `dynamodbav:"subject_key"`
	Reason       string `dynamodbav:"reason,omitempty"`
	RequestedBy  string `dynamodbav:"requested_by"`
	State        string `dynamodbav:"state"`
	RequestedAt  int64  `dynamodbav:"requested_at"`
	CompletedAt  int64  `dynamodbav:"completed_at,omitempty"`
	DeletedAt    int64  `dynamodbav:"deleted_at"`
	ItemsDeleted int64  `dynamodbav:"items_deleted"`
	LeaseOwner   string `dynamodbav:"lease_owner,omitempty"`
	LeaseUntil   int64  `dynamodbav:"lease_until"`
	Claim        string `dynamodbav:"claim,omitempty"`
	Attempts     int64  `dynamodbav:"attempts"`
	Failure      string `dynamodbav:"failure,omitempty"`
	ExpiresAt    int64  `dynamodbav:"expires_at,omitempty"`
}

func (r jobRecord) job() gdpr.Job {
	j := gdpr.Job{ID: r.ID, Subject: r.Subject, SubjectKey: r.SubjectKey, Reason: r.Reason, RequestedBy: r.RequestedBy, State: gdpr.State(r.State),
		RequestedAt: time.UnixMicro(r.RequestedAt), DeletedAt: r.DeletedAt, ItemsDeleted: r.ItemsDeleted, LeaseOwner: r.LeaseOwner,
		LeaseUntil: time.UnixMilli(r.LeaseUntil), Attempts: r.Attempts, Failure: r.Failure}
	if r.CompletedAt > 0 {
		j.CompletedAt = time.UnixMicro(r.CompletedAt)
	}
	if r.ExpiresAt > 0 {
		j.ExpiresAt = time.Unix(r.ExpiresAt, 0)
	}
	return j
}

// tombstoneRecord is a subject's tombstone as stored.
type tombstoneRecord struct {
	PK         string   `dynamodbav:"pk"`
	JobID      string   `dynamodbav:"job_id"`
	DeletedAt  int64    `dynamodbav:"deleted_at"`
	InProgress bool     `dynamodbav:"in_progress"`
	Jobs       []string `dynamodbav:"jobs,stringset,omitempty"`
}

// auditRecord is one event of a job's audit trail.
type auditRecord struct {
	At           int64  `dynamodbav:"at"`
	Event        string `dynamodbav:"event"`
	By           string `dynamodbav:"by"`
	SubjectKey   string `dynamodbav:"subject_key"`
	ItemsDeleted int64  `dynamodbav:"items_deleted"`
	Detail       string `dynamodbav:"detail,omitempty"`
}

func sAttr(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func nAttr(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func pkOf(v string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrPK: sAttr(v)}
}

func (d *Deletions) get(ctx context.Context, pk string, out any) (bool, error) {
	resp, err := d.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(d.table), Key: pkOf(pk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return false, err
	}
	if resp.Item == nil {
		return false, nil
	}
	return true, attributevalue.UnmarshalMap(resp.Item, out)
}

// Create implements gdpr.JobStore.
func (d *Deletions) Create(ctx context.Context, j gdpr.Job) (gdpr.Job, bool, error) {
	tpk := "subject#" + j.SubjectKey
	for attempt := 0; attempt < 5; attempt++ {
		var tomb tombstoneRecord
		found, err := d.get(ctx, tpk, &tomb)
		if err != nil {
			return gdpr.Job{}, false, fmt.Errorf("read tombstone: %w", err)
		}
		if found && tomb.InProgress {
			if prev, err := d.Get(ctx, tomb.JobID); err == nil && (prev.State == gdpr.Pending || prev.State == gdpr.Running) {
				return prev, true, nil
			}
		}
		j.DeletedAt = max(j.DeletedAt, tomb.DeletedAt) // a later deletion never moves T backwards
		job, err := attributevalue.MarshalMap(jobRecord{PK: "job#" + j.ID, ID: j.ID, Subject: j.Subject, SubjectKey: j.SubjectKey, Reason: j.Reason,
			RequestedBy: j.RequestedBy, State: string(gdpr.Pending), RequestedAt: j.RequestedAt.UnixMicro(), DeletedAt: j.DeletedAt,
			Claim: claimPending, ExpiresAt: j.ExpiresAt.Unix()})
		if err != nil {
			return gdpr.Job{}, false, err
		}
		cond, vals := "attribute_not_exists(pk)", map[string]types.AttributeValue{}
		if found {
			cond, vals[":prev"] = "job_id = :prev", sAttr(tomb.JobID)
		}
		vals[":job"], vals[":t"], vals[":yes"] = sAttr(j.ID), nAttr(j.DeletedAt), &types.AttributeValueMemberBOOL{Value: true}
		vals[":jobs"] = &types.AttributeValueMemberSS{Value: []string{j.ID}}
		_, err = d.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Put: &types.Put{TableName: aws.String(d.table), Item: job, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			{Update: &types.Update{TableName: aws.String(d.table), Key: pkOf(tpk), ConditionExpression: aws.String(cond),
				UpdateExpression:          aws.String("SET job_id = :job, deleted_at = :t, in_progress = :yes ADD jobs :jobs"),
				ExpressionAttributeValues: vals}},
		}})
		var canceled *types.TransactionCanceledException
		if errors.As(err, &canceled) {
			continue // a concurrent request won: read its job
		}
		if err != nil {
			return gdpr.Job{}, false, fmt.Errorf("create deletion job: %w", err)
		}
		j.State = gdpr.Pending
		return j, false, nil
	}
	return gdpr.Job{}, false, errors.New("create deletion job: too much contention")
}

// Get implements gdpr.JobStore.
func (d *Deletions) Get(ctx context.Context, id string) (gdpr.Job, error) {
	var r jobRecord
	found, err := d.get(ctx, "job#"+id, &r)
	if err != nil {
		return gdpr.Job{}, fmt.Errorf("read job: %w", err)
	}
	if !found {
		return gdpr.Job{}, gdpr.ErrNotFound
	}
	return r.job(), nil
}

// Claimable implements gdpr.JobStore with a query of the sparse by_claim index: only
// pending and running jobs carry its key, so the cost follows the claimable jobs, never
// the table. The index is eventually consistent; Claim re-checks on the item.
func (d *Deletions) Claimable(ctx context.Context, now time.Time, limit int) ([]string, error) {
	resp, err := d.client.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(d.table),
		IndexName:                 aws.String(IndexClaim),
		KeyConditionExpression:    aws.String("#c = :c AND #l < :now"),
		ExpressionAttributeNames:  map[string]string{"#c": attrClaim, "#l": attrLeaseUntil},
		ExpressionAttributeValues: map[string]types.AttributeValue{":c": sAttr(claimPending), ":now": nAttr(now.UnixMilli())},
		Limit:                     aws.Int32(int32(limit)),
	})
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", IndexClaim, err)
	}
	ids := make([]string, 0, len(resp.Items))
	for _, it := range resp.Items {
		if pk, ok := it[AttrPK].(*types.AttributeValueMemberS); ok {
			if id, ok := strings.CutPrefix(pk.Value, "job#"); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// Claim implements gdpr.JobStore.
func (d *Deletions) Claim(ctx context.Context, id, owner string, now, until time.Time) (gdpr.Job, bool, error) {
	out, err := d.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(d.table),
		Key:                      pkOf("job#" + id),
		UpdateExpression:         aws.String("SET #st = :running, lease_owner = :owner, lease_until = :until ADD attempts :one"),
		ConditionExpression:      aws.String("#st = :pending OR (#st = :running AND lease_until < :now)"),
		ExpressionAttributeNames: map[string]string{"#st": "state"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":running": sAttr(string(gdpr.Running)), ":pending": sAttr(string(gdpr.Pending)), ":owner": sAttr(owner),
			":until": nAttr(until.UnixMilli()), ":now": nAttr(now.UnixMilli()), ":one": nAttr(1),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return gdpr.Job{}, false, nil
	}
	if err != nil {
		return gdpr.Job{}, false, fmt.Errorf("claim job: %w", err)
	}
	var r jobRecord
	if err := attributevalue.UnmarshalMap(out.Attributes, &r); err != nil {
		return gdpr.Job{}, false, err
	}
	return r.job(), true, nil
}

// ownerUpdate applies update to a job that owner holds, or returns gdpr.ErrLeaseLost.
func (d *Deletions) ownerUpdate(ctx context.Context, id, owner, update string, vals map[string]types.AttributeValue) error {
	_, err := d.client.UpdateItem(ctx, d.ownerUpdateInput(id, owner, update, vals))
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return gdpr.ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("update job: %w", err)
	}
	return nil
}

func (d *Deletions) ownerUpdateInput(id, owner, update string, vals map[string]types.AttributeValue) *dynamodb.UpdateItemInput {
	vals[":owner"] = sAttr(owner)
	vals[":running"] = sAttr(string(gdpr.Running))
	return &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       pkOf("job#" + id),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("lease_owner = :owner AND #st = :running"),
		ExpressionAttributeNames:  map[string]string{"#st": "state"},
		ExpressionAttributeValues: vals,
	}
}

// Progress implements gdpr.JobStore.
func (d *Deletions) Progress(ctx context.Context, id, owner string, deleted int64, until time.Time) error {
	return d.ownerUpdate(ctx, id, owner, "SET items_deleted = :n, lease_until = :until",
		map[string]types.AttributeValue{":n": nAttr(deleted), ":until": nAttr(until.UnixMilli())})
}

// Release implements gdpr.JobStore: the job stays running with a lease that ends at at
// and no owner, so the claim index offers it again then.
func (d *Deletions) Release(ctx context.Context, id, owner string, deleted int64, failure string, at time.Time) error {
	return d.ownerUpdate(ctx, id, owner, "SET items_deleted = :n, lease_until = :until, failure = :f, lease_owner = :none",
		map[string]types.AttributeValue{":n": nAttr(deleted), ":until": nAttr(at.UnixMilli()), ":f": sAttr(failure), ":none": sAttr("")})
}

// Finish implements gdpr.JobStore in one transaction over the job, the tombstone and
// the audit trail.
func (d *Deletions) Finish(ctx context.Context, owner string, state gdpr.State, failure string, e gdpr.AuditEvent) error {
	job, err := d.Get(ctx, e.JobID)
	if err != nil {
		return err
	}
	audit, err := d.auditUpdate(e, job.ExpiresAt)
	if err != nil {
		return err
	}
	vals := map[string]types.AttributeValue{":state": sAttr(string(state)), ":n": nAttr(e.ItemsDeleted), ":at": nAttr(e.At.UnixMicro()), ":f": sAttr(failure)}
	upd := d.ownerUpdateInput(e.JobID, owner, "SET #st = :state, items_deleted = :n, completed_at = :at, failure = :f REMOVE subject, claim", vals)
	_, err = d.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Update: &types.Update{TableName: upd.TableName, Key: upd.Key, UpdateExpression: upd.UpdateExpression, ConditionExpression: upd.ConditionExpression,
			ExpressionAttributeNames: upd.ExpressionAttributeNames, ExpressionAttributeValues: upd.ExpressionAttributeValues}},
		{Update: &types.Update{TableName: aws.String(d.table), Key: pkOf("subject#" + job.SubjectKey),
			UpdateExpression:          aws.String("SET in_progress = :no"),
			ConditionExpression:       aws.String("job_id = :job"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":no": &types.AttributeValueMemberBOOL{Value: false}, ":job": sAttr(e.JobID)}}},
		{Update: audit},
	}})
	var canceled *types.TransactionCanceledException
	if errors.As(err, &canceled) {
		return gdpr.ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("finish job: %w", err)
	}
	return nil
}

// auditUpdate appends e to its job's audit item, which expires with the job.
func (d *Deletions) auditUpdate(e gdpr.AuditEvent, expires time.Time) (*types.Update, error) {
	ev, err := attributevalue.MarshalMap(auditRecord{At: e.At.UnixMicro(), Event: e.Event, By: e.By, SubjectKey: e.SubjectKey, ItemsDeleted: e.ItemsDeleted, Detail: e.Detail})
	if err != nil {
		return nil, err
	}
	return &types.Update{
		TableName:        aws.String(d.table),
		Key:              pkOf("audit#" + e.JobID),
		UpdateExpression: aws.String("SET events = list_append(if_not_exists(events, :empty), :ev), job_id = :job, expires_at = :exp"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":empty": &types.AttributeValueMemberL{}, ":ev": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberM{Value: ev}}},
			":job": sAttr(e.JobID), ":exp": nAttr(expires.Unix()),
		},
	}, nil
}

// Audit implements gdpr.JobStore by appending to the job's audit item.
func (d *Deletions) Audit(ctx context.Context, e gdpr.AuditEvent) error {
	job, err := d.Get(ctx, e.JobID)
	if err != nil {
		return err
	}
	u, err := d.auditUpdate(e, job.ExpiresAt)
	if err != nil {
		return err
	}
	if _, err := d.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: u.TableName, Key: u.Key, UpdateExpression: u.UpdateExpression,
		ExpressionAttributeValues: u.ExpressionAttributeValues}); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AuditTrail implements gdpr.JobStore with one consistent read.
func (d *Deletions) AuditTrail(ctx context.Context, jobID string) ([]gdpr.AuditEvent, error) {
	var rec struct {
		Events []auditRecord `dynamodbav:"events"`
	}
	if _, err := d.get(ctx, "audit#"+jobID, &rec); err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	out := make([]gdpr.AuditEvent, len(rec.Events))
	for i, e := range rec.Events {
		out[i] = gdpr.AuditEvent{JobID: jobID, At: time.UnixMicro(e.At), Event: e.Event, By: e.By, SubjectKey: e.SubjectKey, ItemsDeleted: e.ItemsDeleted, Detail: e.Detail}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}

// AuditTrailBySubject implements gdpr.JobStore through the tombstone's job ids.
func (d *Deletions) AuditTrailBySubject(ctx context.Context, subjectKey string) ([]gdpr.AuditEvent, error) {
	var tomb tombstoneRecord
	if _, err := d.get(ctx, "subject#"+subjectKey, &tomb); err != nil {
		return nil, fmt.Errorf("read tombstone: %w", err)
	}
	var out []gdpr.AuditEvent
	for _, id := range tomb.Jobs {
		trail, err := d.AuditTrail(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, trail...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}

// Erasures implements featurestore.Erasures with consistent batched reads of tombstones.
func (d *Deletions) Erasures(ctx context.Context, subjects []string) (map[string]featurestore.Erasure, error) {
	bySK := make(map[string]string, len(subjects))
	keys := make([]map[string]types.AttributeValue, 0, len(subjects))
	for _, sub := range subjects {
		pk := "subject#" + d.subjectKey(sub)
		if _, dup := bySK[pk]; !dup {
			bySK[pk] = sub
			keys = append(keys, pkOf(pk))
		}
	}
	out := map[string]featurestore.Erasure{}
	results := make([][]map[string]types.AttributeValue, (len(keys)+maxBatchGet-1)/maxBatchGet)
	g, gctx := errgroup.WithContext(ctx)
	for c := range results {
		part := keys[c*maxBatchGet : min((c+1)*maxBatchGet, len(keys))]
		g.Go(func() error {
			req := map[string]types.KeysAndAttributes{d.table: {Keys: part, ConsistentRead: aws.Bool(true)}}
			b := backoff.NewExponentialBackOff()
			b.InitialInterval, b.MaxInterval = 10*time.Millisecond, time.Second
			_, err := backoff.Retry(gctx, func() (struct{}, error) {
				resp, err := d.client.BatchGetItem(gctx, &dynamodb.BatchGetItemInput{RequestItems: req})
				if err != nil {
					return struct{}{}, backoff.Permanent(fmt.Errorf("read tombstones: %w", err))
				}
				results[c] = append(results[c], resp.Responses[d.table]...)
				if req = resp.UnprocessedKeys; len(req) > 0 {
					return struct{}{}, errUnprocessed
				}
				return struct{}{}, nil
			}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, items := range results {
		for _, it := range items {
			var t tombstoneRecord
			if err := attributevalue.UnmarshalMap(it, &t); err != nil {
				return nil, err
			}
			out[bySK[t.PK]] = featurestore.Erasure{At: t.DeletedAt, InProgress: t.InProgress}
		}
	}
	return out, nil
}
