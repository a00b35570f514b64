package gdpr

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
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
	ID string
	// Subject is the subject id in plaintext; stores keep it only until the job ends.
	Subject string
	// SubjectKey is the keyed hash of the subject id (see Keyer), which outlives the job.
	SubjectKey   string
	Reason       string
	RequestedBy  string
	State        State
	RequestedAt  time.Time
	CompletedAt  time.Time
	ItemsDeleted int64
	// DeletedAt is the deletion time T in microseconds (the request time): rows of the
	// subject with event_time <= T are refused for good after the job.
	DeletedAt  int64
	LeaseOwner string
	LeaseUntil time.Time
	// Attempts counts the claims of the job; Failure is why the last attempt, or the job,
	// failed (a stable reason and a message that never names the subject).
	Attempts int64
	Failure  string
	// ExpiresAt is when the store may delete the job's records (its retention).
	ExpiresAt time.Time
}

// AuditEvent is one line of the audit trail. It never holds feature values or the
// subject id (only its keyed hash).
type AuditEvent struct {
	JobID        string
	At           time.Time
	Event        string // requested, claimed, retry, failed, done
	By           string // the caller (requested) or the worker
	SubjectKey   string
	ItemsDeleted int64
	Detail       string
}

// Errors of a JobStore.
var (
	// ErrNotFound is returned for an unknown job id.
	ErrNotFound = errors.New("deletion job not found")
	// ErrLeaseLost is returned when another worker took over a job.
	ErrLeaseLost = errors.New("deletion job lease lost")
)

// JobStore keeps jobs, subject tombstones and the audit trail durably; featurestore/dynamo
// implements it. Nothing in it lists a table: claiming costs O(claimable jobs).
type JobStore interface {
	// Create records j and the subject's tombstone (deletion time j.DeletedAt, in
	// progress) atomically, unless a job for the subject is pending or running: then it
	// returns that job and existing=true. A new deletion never moves T backwards.
	Create(ctx context.Context, j Job) (out Job, existing bool, err error)
	// Get reads a job (ErrNotFound).
	Get(ctx context.Context, id string) (Job, error)
	// Claimable lists up to limit ids of jobs that are pending, or running with a lease
	// that ended before now, through an index of claimable jobs.
	Claimable(ctx context.Context, now time.Time, limit int) ([]string, error)
	// Claim takes a claimable job for owner until until and counts the attempt; ok is
	// false when the job is not claimable any more.
	Claim(ctx context.Context, id, owner string, now, until time.Time) (j Job, ok bool, err error)
	// Progress records the count and extends the lease, if owner still holds it
	// (ErrLeaseLost).
	Progress(ctx context.Context, id, owner string, deleted int64, until time.Time) error
	// Release gives a job back after a failed attempt: any worker may claim it from at.
	Release(ctx context.Context, id, owner string, deleted int64, failure string, at time.Time) error
	// Finish ends job e.JobID DONE or FAILED at e.At, if owner holds it: it records the
	// count (e.ItemsDeleted) and the failure, drops the plaintext subject id from the job,
	// ends the tombstone's in-progress state and appends e to the audit trail, atomically.
	Finish(ctx context.Context, owner string, state State, failure string, e AuditEvent) error
	// Audit appends an event to the job's audit trail.
	Audit(ctx context.Context, e AuditEvent) error
	// AuditTrail returns a job's events in time order.
	AuditTrail(ctx context.Context, jobID string) ([]AuditEvent, error)
	// AuditTrailBySubject returns the events of every job filed for the subject with
	// that keyed hash, in time order.
	AuditTrailBySubject(ctx context.Context, subjectKey string) ([]AuditEvent, error)
}

// Keyer hashes subject ids with a secret key (HMAC-SHA256), so that tombstones and the
// audit trail find a subject again without storing its id, and a dictionary of ids does
// not reverse them.
type Keyer struct {
	key []byte
}

// MinKeyBytes is the shortest secret a Keyer accepts.
const MinKeyBytes = 32

// NewKeyer returns a Keyer for secret, which must be at least MinKeyBytes long.
func NewKeyer(secret []byte) (*Keyer, error) {
	if len(secret) < MinKeyBytes {
		return nil, errors.New("the GDPR hash key must be at least 32 bytes")
	}
	return &Keyer{key: append([]byte(nil), secret...)}, nil
}

// SubjectKey is the hex keyed hash of subject.
func (k *Keyer) SubjectKey(subject string) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(subject))
	return hex.EncodeToString(m.Sum(nil))
}
