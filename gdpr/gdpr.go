// Package gdpr erases a data subject's feature values on request.
//
// DeleteSubject durably records a job and a subject tombstone (deletion time T, in
// progress) before it returns. While the job is pending or running every write lane
// refuses every row of the subject, so nothing is written under it during the erasure;
// afterwards rows with event_time <= T stay refused for good. A worker in every replica
// claims jobs through an index of claimable jobs under a lease, finds the subject's rows
// through the by_subject index (re-querying until it has stayed empty past the moment
// writes in flight at T have committed, since the index is eventually consistent), and
// erases each row whole through the write-through protocol, so no cached copy survives:
// an entity's values all belong to the subject that wrote them (the domain refuses to mix
// subjects on one entity), whatever their event times. A job whose attempts keep failing
// ends FAILED with a reason; filing the deletion again retries it. The audit trail and the
// tombstone hold only a keyed hash of the subject id, and the job drops the plaintext id
// when it ends.
package gdpr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"golang.org/x/time/rate"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// Rows is what the worker needs from the feature store; *featurestore.Service implements it.
type Rows interface {
	// Erase deletes the row at key if it holds values of subject, and reports whether it did.
	Erase(ctx context.Context, key writethrough.Key, subject string) (bool, error)
}

// Index finds a subject's rows; *dynamo.Store implements it. It is eventually
// consistent: it may miss rows written a moment ago and list rows erased a moment ago.
type Index interface {
	KeysBySubject(ctx context.Context, subject string) ([]writethrough.Key, error)
}

// Config tunes deletion.
type Config struct {
	// Rate bounds items erased per second per worker, so deletion does not starve serving
	// (default 100).
	Rate float64
	// Lease is how long a claimed job is the worker's without renewal (default 15s).
	Lease time.Duration
	// Poll is how often an idle worker looks for jobs (default 1s).
	Poll time.Duration
	// WriteTimeout is the feature store's: writes that checked for tombstones before this
	// job's existed commit within it, so the final index query waits that long past T.
	WriteTimeout time.Duration
	// Settle is how long the index must stay empty (over two queries) to call a job done.
	// It must exceed the index's propagation delay: a row that reaches the GSI later than
	// that after the deletion's writes in flight have committed is missed. DynamoDB's is
	// usually well under a second; the default, 5s, leaves a margin and only delays DONE.
	Settle time.Duration
	// MaxAttempts bounds the attempts of a job whose store keeps failing; the last failure
	// ends it FAILED (default 5). Retries back off from RetryBackoff (default 1s).
	MaxAttempts  int64
	RetryBackoff time.Duration
	// Retention is how long job and audit records are kept (default 3 years), by the
	// store's TTL.
	Retention time.Duration
	// Metrics, if set, counts jobs by outcome.
	Metrics Metrics
}

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Lease <= 0 {
		c.Lease = 15 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 2 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 5 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = time.Second
	}
	if c.Retention <= 0 {
		c.Retention = 3 * 365 * 24 * time.Hour
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	return c
}

// Metrics receives job outcomes: "requested", "done", "failed", "retried".
type Metrics interface {
	GdprJobs(ctx context.Context, event string)
}

type nopMetrics struct{}

func (nopMetrics) GdprJobs(context.Context, string) {}

// Service files and runs deletions.
type Service struct {
	store  JobStore
	keyer  *Keyer
	rows   Rows
	index  Index
	clock  featurestore.Clock
	cfg    Config
	logger *slog.Logger
	owner  string
}

// New returns a Service. Call Run to start its worker.
func New(store JobStore, keyer *Keyer, rows Rows, index Index, clock featurestore.Clock, cfg Config, logger *slog.Logger) *Service {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Service{store: store, keyer: keyer, rows: rows, index: index, clock: clock, cfg: cfg.withDefaults(), logger: logger, owner: "worker-" + hex.EncodeToString(b[:])}
}

// jobID is the form of the ids DeleteSubject hands out.
var jobID = regexp.MustCompile(`^del-[0-9a-f]{16}$`)

// DeleteSubject files a deletion of subject requested by (the caller's identity) for
// reason. It returns once the job and the tombstone are durable. While a job for the
// subject is pending or running, it returns that job instead of a new one; after a FAILED
// job it files a new one, which retries it.
// Errors: KindInvalid (empty or overlong subject or reason), KindUnavailable.
func (s *Service) DeleteSubject(ctx context.Context, subject, reason, by string) (Job, error) {
	if subject == "" {
		return Job{}, featurestore.Invalid("subject_id", "is required")
	}
	if len(subject) > featurestore.MaxSubjectLen {
		return Job{}, featurestore.Invalid("subject_id", "at most %d bytes", featurestore.MaxSubjectLen)
	}
	if len(reason) > 1024 {
		return Job{}, featurestore.Invalid("reason", "at most 1024 bytes")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	now := s.clock.Now()
	j := Job{ID: "del-" + hex.EncodeToString(b[:]), Subject: subject, SubjectKey: s.keyer.SubjectKey(subject), Reason: reason, RequestedBy: by,
		State: Pending, RequestedAt: now, DeletedAt: now.UnixMicro(), ExpiresAt: now.Add(s.cfg.Retention)}
	out, existing, err := s.store.Create(ctx, j)
	if err != nil {
		return Job{}, featurestore.Unavailable("database unavailable; the deletion may not be filed, retrying is safe", err)
	}
	if !existing {
		s.audit(ctx, AuditEvent{JobID: out.ID, At: now, Event: "requested", By: by, SubjectKey: j.SubjectKey, Detail: reason})
		s.logger.InfoContext(ctx, "deletion requested", "job", out.ID, "by", by)
		s.cfg.Metrics.GdprJobs(ctx, "requested")
	}
	return out, nil
}

// GetDeletion returns a job; its Subject is empty once the job has ended.
// Errors: KindNotFound, KindInvalid (not an id DeleteSubject hands out), KindUnavailable.
func (s *Service) GetDeletion(ctx context.Context, id string) (Job, error) {
	if !jobID.MatchString(id) {
		return Job{}, featurestore.Invalid("id", "want a deletion id such as del-5f0c9e2a7d41b6e3")
	}
	j, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Job{}, featurestore.NotFound("id", "deletion %q not found", id)
	}
	if err != nil {
		return Job{}, featurestore.Unavailable("database unavailable", err)
	}
	if j.State == Done || j.State == Failed {
		j.Subject = ""
	}
	return j, nil
}

func (s *Service) audit(ctx context.Context, e AuditEvent) {
	if err := s.store.Audit(ctx, e); err != nil {
		s.logger.WarnContext(ctx, "audit write failed", "job", e.JobID, "event", e.Event, "reason", featurestore.ErrorReason(err))
	}
}

// Run is the worker: it claims and runs jobs until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	for {
		if err := s.runOnce(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "deletion worker could not look for jobs", "reason", featurestore.ErrorReason(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.Poll):
		}
	}
}

// claimBatch bounds the jobs one look claims.
const claimBatch = 10

// runOnce claims and runs the claimable jobs.
func (s *Service) runOnce(ctx context.Context) error {
	ids, err := s.store.Claimable(ctx, s.clock.Now(), claimBatch)
	if err != nil {
		return featurestore.Unavailable("database unavailable", err)
	}
	for _, id := range ids {
		now := s.clock.Now()
		j, ok, err := s.store.Claim(ctx, id, s.owner, now, now.Add(s.cfg.Lease))
		if err != nil {
			return featurestore.Unavailable("database unavailable", err)
		}
		if !ok {
			continue // another replica has it
		}
		s.audit(ctx, AuditEvent{JobID: j.ID, At: now, Event: "claimed", By: s.owner, SubjectKey: j.SubjectKey, ItemsDeleted: j.ItemsDeleted,
			Detail: fmt.Sprintf("attempt %d", j.Attempts)})
		deleted, err := s.runJob(ctx, j)
		switch {
		case err == nil:
		case errors.Is(err, ErrLeaseLost) || ctx.Err() != nil:
			// Someone else resumes it.
		case j.Attempts >= s.cfg.MaxAttempts || permanent(err):
			s.end(ctx, j, Failed, deleted, failure(err, j.Attempts))
		default:
			at := s.clock.Now().Add(s.cfg.RetryBackoff << min(j.Attempts-1, 6))
			why := failure(err, j.Attempts)
			if rerr := s.store.Release(ctx, j.ID, s.owner, deleted, why, at); rerr != nil {
				s.logger.WarnContext(ctx, "could not release a failed deletion job; it is resumed after its lease", "job", j.ID)
			}
			s.audit(ctx, AuditEvent{JobID: j.ID, At: s.clock.Now(), Event: "retry", By: s.owner, SubjectKey: j.SubjectKey, ItemsDeleted: deleted, Detail: why})
			s.logger.WarnContext(ctx, "deletion attempt failed; it will be retried", "job", j.ID, "attempt", j.Attempts, "reason", featurestore.ErrorReason(err))
			s.cfg.Metrics.GdprJobs(ctx, "retried")
		}
	}
	return nil
}

// permanent reports errors that no retry can fix.
func permanent(err error) bool {
	switch featurestore.ErrorKind(err) {
	case featurestore.KindUnavailable, featurestore.KindAborted:
		return false
	}
	return true
}

// failure describes err for the job and the audit trail: its stable reason and, for the
// domain's errors, their message, which never holds subject ids or feature values. Causes
// (which may quote keys) are not recorded.
func failure(err error, attempt int64) string {
	msg := "an internal error; see the server log"
	var fe *featurestore.Error
	if errors.As(err, &fe) && fe.Kind != featurestore.KindInternal {
		msg = fe.Message
	}
	return fmt.Sprintf("%s after %d attempts: %s", featurestore.ErrorReason(err), attempt, msg)
}

// end finishes a job as DONE or FAILED and records it.
func (s *Service) end(ctx context.Context, j Job, state State, deleted int64, why string) {
	ev := AuditEvent{JobID: j.ID, At: s.clock.Now(), Event: "done", By: s.owner, SubjectKey: j.SubjectKey, ItemsDeleted: deleted}
	if state == Failed {
		ev.Event, ev.Detail = "failed", why
	}
	if err := s.store.Finish(ctx, s.owner, state, why, ev); err != nil {
		if !errors.Is(err, ErrLeaseLost) {
			s.logger.WarnContext(ctx, "could not finish a deletion job; it is resumed after its lease", "job", j.ID, "state", state)
		}
		return
	}
	if state == Failed {
		s.logger.ErrorContext(ctx, "deletion failed", "job", j.ID, "items_deleted", deleted, "failure", why)
	} else {
		s.logger.InfoContext(ctx, "deletion done", "job", j.ID, "items_deleted", deleted)
	}
	s.cfg.Metrics.GdprJobs(ctx, ev.Event)
}

// runJob erases the subject's rows and ends the job DONE, returning the running count.
// Progress is recorded as it goes, so a job resumed by another worker continues from the
// index's current contents, and the count carries on.
func (s *Service) runJob(ctx context.Context, j Job) (int64, error) {
	deleted := j.ItemsDeleted
	limiter := rate.NewLimiter(rate.Limit(s.cfg.Rate), 1)
	renew := func() error {
		err := s.store.Progress(ctx, j.ID, s.owner, deleted, s.clock.Now().Add(s.cfg.Lease))
		if err != nil && !errors.Is(err, ErrLeaseLost) {
			return featurestore.Unavailable("database unavailable", err)
		}
		return err
	}
	// Writes that checked for tombstones before this job's existed commit within the
	// write timeout; the final look must come after them.
	quietFrom := time.UnixMicro(j.DeletedAt).Add(s.cfg.WriteTimeout + time.Second)
	quiet := 0
	for quiet < 2 {
		keys, err := s.index.KeysBySubject(ctx, j.Subject)
		if err != nil {
			return deleted, featurestore.Unavailable("database unavailable", err)
		}
		found := 0
		for i, k := range keys {
			if err := limiter.Wait(ctx); err != nil {
				return deleted, err
			}
			erased, err := s.rows.Erase(ctx, k, j.Subject)
			if err != nil {
				return deleted, err
			}
			if erased {
				deleted++
				found++
			}
			if i%10 == 9 {
				if err := renew(); err != nil {
					return deleted, err
				}
			}
		}
		// A look that erased nothing (an empty index, or rows the index still lists but
		// that hold no values of the subject any more) counts towards done once writes in
		// flight at T have committed.
		if found == 0 && s.clock.Now().After(quietFrom) {
			quiet++
		} else {
			quiet = 0
		}
		if err := renew(); err != nil {
			return deleted, err
		}
		if quiet < 2 && found == 0 {
			select {
			case <-ctx.Done():
				return deleted, ctx.Err()
			case <-time.After(s.cfg.Settle / 2):
			}
		}
	}
	s.end(ctx, j, Done, deleted, "")
	return deleted, nil
}
