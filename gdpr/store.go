package gdpr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"
)

// State is a job's lifecycle state.
type State string

const (
	Pending State = "PENDING"
	Running State = "RUNNING"
	Done    State = "DONE"
	Failed  State = "FAILED"
)

// Job is a deletion job.
type Job struct {
	ID           string
	Subject      string
	Reason       string
	RequestedBy  string
	State        State
	RequestedAt  time.Time
	CompletedAt  time.Time
	ItemsDeleted int64
	// DeletedAt is the deletion time T: rows of the subject with event_time <= T are erased
	// and refused from then on. It is the request time, in microseconds.
	DeletedAt  int64
	LeaseOwner string
	LeaseUntil time.Time
}

// AuditEvent is one line of the audit trail. It never holds feature values.
type AuditEvent struct {
	JobID        string
	At           time.Time
	Event        string // requested, claimed, progress, done, failed
	By           string // the caller (requested) or the worker (claimed, done)
	SubjectHash  string
	ItemsDeleted int64
	Detail       string
}

// ErrNotFound is returned for an unknown job id.
var ErrNotFound = errors.New("deletion job not found")

// errLeaseLost is returned when another worker took over a job.
var errLeaseLost = errors.New("deletion job lease lost")

// Store keeps jobs, subject tombstones and the audit trail in one DynamoDB table:
// "job#<id>", "subject#<sha256 of the subject id>" and "audit#<job id>#<time>#<event>".
// Tombstones and audit records are keyed by a hash, so neither lists subject ids.
type Store struct {
	client *dynamodb.Client
	table  string
}

// NewStore returns a Store on table (created by dynamo.Store.EnsureTables).
func NewStore(client *dynamodb.Client, table string) *Store {
	return &Store{client: client, table: table}
}

// SubjectHash is how subjects are keyed outside the job itself.
func SubjectHash(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(sum[:])
}

func sAttr(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func nAttr(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

func jobItem(j Job) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{
		"pk": sAttr("job#" + j.ID), "id": sAttr(j.ID), "subject": sAttr(j.Subject), "subject_hash": sAttr(SubjectHash(j.Subject)),
		"reason": sAttr(j.Reason), "requested_by": sAttr(j.RequestedBy), "state": sAttr(string(j.State)),
		"requested_at": nAttr(j.RequestedAt.UnixMicro()), "deleted_at": nAttr(j.DeletedAt), "items_deleted": nAttr(j.ItemsDeleted),
		"lease_until": nAttr(j.LeaseUntil.UnixMilli()), "lease_owner": sAttr(j.LeaseOwner),
	}
	if !j.CompletedAt.IsZero() {
		m["completed_at"] = nAttr(j.CompletedAt.UnixMicro())
	}
	return m
}

func str(m map[string]types.AttributeValue, k string) string {
	if v, ok := m[k].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func num(m map[string]types.AttributeValue, k string) int64 {
	if v, ok := m[k].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func jobFrom(m map[string]types.AttributeValue) Job {
	j := Job{
		ID: str(m, "id"), Subject: str(m, "subject"), Reason: str(m, "reason"), RequestedBy: str(m, "requested_by"),
		State: State(str(m, "state")), RequestedAt: time.UnixMicro(num(m, "requested_at")), DeletedAt: num(m, "deleted_at"),
		ItemsDeleted: num(m, "items_deleted"), LeaseOwner: str(m, "lease_owner"), LeaseUntil: time.UnixMilli(num(m, "lease_until")),
	}
	if c := num(m, "completed_at"); c > 0 {
		j.CompletedAt = time.UnixMicro(c)
	}
	return j
}

// Create durably records a new job and the subject's tombstone (deletion time
// j.DeletedAt) in one transaction, unless a job for the subject is still pending or
// running: then it returns that job and existing=true.
func (s *Store) Create(ctx context.Context, j Job) (out Job, existing bool, err error) {
	hash := SubjectHash(j.Subject)
	for attempt := 0; attempt < 5; attempt++ {
		tomb, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: map[string]types.AttributeValue{"pk": sAttr("subject#" + hash)}, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return Job{}, false, fmt.Errorf("read tombstone: %w", err)
		}
		prevJob := ""
		prevAt := int64(0)
		if tomb.Item != nil {
			prevJob = str(tomb.Item, "job_id")
			prevAt = num(tomb.Item, "deleted_at")
			if prev, err := s.Get(ctx, prevJob); err == nil && (prev.State == Pending || prev.State == Running) {
				return prev, true, nil
			}
		}
		j.DeletedAt = max(j.DeletedAt, prevAt) // a later deletion never moves T backwards
		cond := "attribute_not_exists(pk)"
		vals := map[string]types.AttributeValue(nil)
		if tomb.Item != nil {
			cond = "job_id = :prev"
			vals = map[string]types.AttributeValue{":prev": sAttr(prevJob)}
		}
		_, err = s.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Put: &types.Put{TableName: aws.String(s.table), Item: jobItem(j), ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			{Put: &types.Put{TableName: aws.String(s.table), Item: map[string]types.AttributeValue{
				"pk": sAttr("subject#" + hash), "job_id": sAttr(j.ID), "deleted_at": nAttr(j.DeletedAt),
			}, ConditionExpression: aws.String(cond), ExpressionAttributeValues: vals}},
		}})
		var canceled *types.TransactionCanceledException
		if errors.As(err, &canceled) {
			continue // a concurrent request won: read its job
		}
		if err != nil {
			return Job{}, false, fmt.Errorf("create deletion job: %w", err)
		}
		return j, false, nil
	}
	return Job{}, false, errors.New("create deletion job: too much contention")
}

// Get reads a job.
func (s *Store) Get(ctx context.Context, id string) (Job, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: map[string]types.AttributeValue{"pk": sAttr("job#" + id)}, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Job{}, fmt.Errorf("read job: %w", err)
	}
	if out.Item == nil {
		return Job{}, ErrNotFound
	}
	return jobFrom(out.Item), nil
}

// Claimable lists jobs that are pending, or running under an expired lease.
func (s *Store) Claimable(ctx context.Context, now time.Time) ([]Job, error) {
	var out []Job
	p := dynamodb.NewScanPaginator(s.client, &dynamodb.ScanInput{
		TableName:                aws.String(s.table),
		ConsistentRead:           aws.Bool(true),
		FilterExpression:         aws.String("begins_with(pk, :job) AND (#st = :pending OR (#st = :running AND lease_until < :now))"),
		ExpressionAttributeNames: map[string]string{"#st": "state"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":job": sAttr("job#"), ":pending": sAttr(string(Pending)), ":running": sAttr(string(Running)), ":now": nAttr(now.UnixMilli()),
		},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("scan jobs: %w", err)
		}
		for _, it := range page.Items {
			out = append(out, jobFrom(it))
		}
	}
	return out, nil
}

// Claim takes a job for owner until until, if it is still pending or its lease expired.
func (s *Store) Claim(ctx context.Context, id, owner string, now, until time.Time) (Job, bool, error) {
	out, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.table),
		Key:                      map[string]types.AttributeValue{"pk": sAttr("job#" + id)},
		UpdateExpression:         aws.String("SET #st = :running, lease_owner = :owner, lease_until = :until"),
		ConditionExpression:      aws.String("#st = :pending OR (#st = :running AND lease_until < :now)"),
		ExpressionAttributeNames: map[string]string{"#st": "state"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":running": sAttr(string(Running)), ":pending": sAttr(string(Pending)), ":owner": sAttr(owner),
			":until": nAttr(until.UnixMilli()), ":now": nAttr(now.UnixMilli()),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("claim job: %w", err)
	}
	return jobFrom(out.Attributes), true, nil
}

// Progress records the count and extends the lease, if owner still holds it.
func (s *Store) Progress(ctx context.Context, id, owner string, deleted int64, until time.Time) error {
	return s.ownerUpdate(ctx, id, owner, "SET items_deleted = :n, lease_until = :until",
		map[string]types.AttributeValue{":n": nAttr(deleted), ":until": nAttr(until.UnixMilli())})
}

// Finish ends a job in state (Done or Failed), if owner still holds it.
func (s *Store) Finish(ctx context.Context, id, owner string, state State, deleted int64, at time.Time) error {
	return s.ownerUpdate(ctx, id, owner, "SET #st = :state, items_deleted = :n, completed_at = :at",
		map[string]types.AttributeValue{":state": sAttr(string(state)), ":n": nAttr(deleted), ":at": nAttr(at.UnixMicro())})
}

func (s *Store) ownerUpdate(ctx context.Context, id, owner, update string, vals map[string]types.AttributeValue) error {
	vals[":owner"] = sAttr(owner)
	vals[":running"] = sAttr(string(Running))
	_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       map[string]types.AttributeValue{"pk": sAttr("job#" + id)},
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("lease_owner = :owner AND #st = :running"),
		ExpressionAttributeNames:  map[string]string{"#st": "state"},
		ExpressionAttributeValues: vals,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return errLeaseLost
	}
	if err != nil {
		return fmt.Errorf("update job: %w", err)
	}
	return nil
}

// Audit appends an event to the audit trail.
func (s *Store) Audit(ctx context.Context, e AuditEvent) error {
	_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: map[string]types.AttributeValue{
		"pk":            sAttr(fmt.Sprintf("audit#%s#%020d#%s", e.JobID, e.At.UnixNano(), e.Event)),
		"job_id":        sAttr(e.JobID),
		"at":            nAttr(e.At.UnixMicro()),
		"event":         sAttr(e.Event),
		"by":            sAttr(e.By),
		"subject_hash":  sAttr(e.SubjectHash),
		"items_deleted": nAttr(e.ItemsDeleted),
		"detail":        sAttr(e.Detail),
	}})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AuditTrail returns a job's audit events in time order.
func (s *Store) AuditTrail(ctx context.Context, jobID string) ([]AuditEvent, error) {
	var out []AuditEvent
	p := dynamodb.NewScanPaginator(s.client, &dynamodb.ScanInput{
		TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
		FilterExpression:          aws.String("begins_with(pk, :p)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": sAttr("audit#" + jobID + "#")},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("scan audit: %w", err)
		}
		for _, it := range page.Items {
			out = append(out, AuditEvent{JobID: str(it, "job_id"), At: time.UnixMicro(num(it, "at")), Event: str(it, "event"), By: str(it, "by"),
				SubjectHash: str(it, "subject_hash"), ItemsDeleted: num(it, "items_deleted"), Detail: str(it, "detail")})
		}
	}
	for i := 1; i < len(out); i++ { // few events: insertion sort by time
		for k := i; k > 0 && out[k].At.Before(out[k-1].At); k-- {
			out[k], out[k-1] = out[k-1], out[k]
		}
	}
	return out, nil
}

// ErasedAt implements featurestore.Erasures with consistent batched reads of tombstones.
func (s *Store) ErasedAt(ctx context.Context, subjects []string) (map[string]int64, error) {
	out := map[string]int64{}
	byHash := make(map[string]string, len(subjects))
	for _, sub := range subjects {
		byHash["subject#"+SubjectHash(sub)] = sub
	}
	var keys []map[string]types.AttributeValue
	for pk := range byHash {
		keys = append(keys, map[string]types.AttributeValue{"pk": sAttr(pk)})
	}
	g, gctx := errgroup.WithContext(ctx)
	results := make([][]map[string]types.AttributeValue, (len(keys)+99)/100)
	for c := 0; c*100 < len(keys); c++ {
		part := keys[c*100 : min((c+1)*100, len(keys))]
		g.Go(func() error {
			req := map[string]types.KeysAndAttributes{s.table: {Keys: part, ConsistentRead: aws.Bool(true)}}
			for len(req) > 0 {
				resp, err := s.client.BatchGetItem(gctx, &dynamodb.BatchGetItemInput{RequestItems: req})
				if err != nil {
					return fmt.Errorf("read tombstones: %w", err)
				}
				results[c] = append(results[c], resp.Responses[s.table]...)
				req = resp.UnprocessedKeys
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, items := range results {
		for _, it := range items {
			out[byHash[str(it, "pk")]] = num(it, "deleted_at")
		}
	}
	return out, nil
}
