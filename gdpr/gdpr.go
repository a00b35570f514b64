// Package gdpr erases a data subject's feature values on request. DeleteSubject durably
// records a job and a subject tombstone (deletion time T) before it returns; from then on
// every write lane refuses rows of the subject with event_time <= T. A worker in every
// replica claims pending jobs under a lease, finds the subject's rows through the
// by_subject index (re-querying until it is empty, since the index is eventually
// consistent), erases each through the write-through protocol so no cached copy survives,
// records progress so that another replica resumes a job whose worker died, and writes an
// audit trail that holds no feature values.
package gdpr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// Rows is what the worker needs from the feature store; *featurestore.Service implements it.
type Rows interface {
	Erase(ctx context.Context, key writethrough.Key, subject string, before int64) (featurestore.EraseOutcome, error)
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
	// Metrics, if set, counts jobs by outcome.
	Metrics Metrics
	// Settle is how long the index must stay empty (over two queries) to call a job done.
	// It must exceed the index's propagation delay: a row that reaches the GSI later than
	// that after the deletion's writes in flight have committed is missed. DynamoDB's is
	// usually well under a second; the default, 5s, leaves a margin and only delays DONE.
	Settle time.Duration
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
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	return c
}

// Metrics receives job outcomes: "requested", "done", "failed".
type Metrics interface {
	GdprJobs(ctx context.Context, event string)
}

type nopMetrics struct{}

func (nopMetrics) GdprJobs(context.Context, string) {}

// Service files and runs deletions.
type Service struct {
	store  *Store
	rows   Rows
	index  Index
	clock  featurestore.Clock
	cfg    Config
	logger *slog.Logger
	owner  string
}

// New returns a Service. Call Run to start its worker.
func New(store *Store, rows Rows, index Index, clock featurestore.Clock, cfg Config, logger *slog.Logger) *Service {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Service{store: store, rows: rows, index: index, clock: clock, cfg: cfg.withDefaults(), logger: logger, owner: "worker-" + hex.EncodeToString(b[:])}
}

// DeleteSubject files a deletion of subject requested by (the caller's identity) for
// reason. It returns once the job and the tombstone are durable. While a job for the
// subject is pending or running, it returns that job instead of a new one.
// Errors: KindInvalid (empty subject), KindUnavailable.
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
	j := Job{ID: "del-" + hex.EncodeToString(b[:]), Subject: subject, Reason: reason, RequestedBy: by, State: Pending, RequestedAt: now, DeletedAt: now.UnixMicro()}
	out, existing, err := s.store.Create(ctx, j)
	if err != nil {
		return Job{}, featurestore.Unavailable("database unavailable; the deletion may not be filed, retrying is safe", err)
	}
	if !existing {
		if err := s.store.Audit(ctx, AuditEvent{JobID: out.ID, At: now, Event: "requested", By: by, SubjectHash: SubjectHash(subject), Detail: reason}); err != nil {
			s.logger.Warn("audit write failed", "job", out.ID, "err", err)
		}
		s.logger.Info("deletion requested", "job", out.ID, "by", by)
		s.cfg.Metrics.GdprJobs(ctx, "requested")
	}
	return out, nil
}

// GetDeletion returns a job. Errors: KindNotFound, KindInvalid, KindUnavailable.
func (s *Service) GetDeletion(ctx context.Context, id string) (Job, error) {
	if id == "" {
		return Job{}, featurestore.Invalid("id", "is required")
	}
	j, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Job{}, featurestore.NotFound("id", "deletion %q not found", id)
	}
	if err != nil {
		return Job{}, featurestore.Unavailable("database unavailable", err)
	}
	return j, nil
}

// Run is the worker: it claims and runs jobs until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	for {
		if err := s.runOnce(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("deletion worker", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.Poll):
		}
	}
}

// runOnce claims and runs every claimable job.
func (s *Service) runOnce(ctx context.Context) error {
	jobs, err := s.store.Claimable(ctx, s.clock.Now())
	if err != nil {
		return err
	}
	for _, j := range jobs {
		now := s.clock.Now()
		claimed, ok, err := s.store.Claim(ctx, j.ID, s.owner, now, now.Add(s.cfg.Lease))
		if err != nil {
			return err
		}
		if !ok {
			continue // another replica has it
		}
		_ = s.store.Audit(ctx, AuditEvent{JobID: claimed.ID, At: now, Event: "claimed", By: s.owner, SubjectHash: SubjectHash(claimed.Subject), ItemsDeleted: claimed.ItemsDeleted})
		if err := s.runJob(ctx, claimed); err != nil {
			if errors.Is(err, errLeaseLost) || ctx.Err() != nil {
				continue // someone else resumes it
			}
			s.logger.Warn("deletion job failed; it will be retried after its lease", "job", claimed.ID, "err", err)
			s.cfg.Metrics.GdprJobs(ctx, "failed")
		}
	}
	return nil
}

// runJob erases the subject's rows. Progress is recorded as it goes, so a job resumed by
// another worker continues from the index's current contents, and the count carries on.
func (s *Service) runJob(ctx context.Context, j Job) error {
	deleted := j.ItemsDeleted
	kept := map[writethrough.Key]bool{}
	interval := time.Duration(float64(time.Second) / s.cfg.Rate)
	next := s.clock.Now()
	renew := func() error {
		return s.store.Progress(ctx, j.ID, s.owner, deleted, s.clock.Now().Add(s.cfg.Lease))
	}
	// Writes that checked for tombstones before this job's existed commit within the
	// write timeout; the final look must come after them.
	quietFrom := time.UnixMicro(j.DeletedAt).Add(s.cfg.WriteTimeout + time.Second)
	empties := 0
	for {
		keys, err := s.index.KeysBySubject(ctx, j.Subject)
		if err != nil {
			return featurestore.Unavailable("database unavailable", err)
		}
		var todo []writethrough.Key
		for _, k := range keys {
			if !kept[k] {
				todo = append(todo, k)
			}
		}
		if len(todo) == 0 {
			if s.clock.Now().After(quietFrom) {
				empties++
				if empties >= 2 {
					break
				}
			}
			if err := renew(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(s.cfg.Settle / 2):
			}
			continue
		}
		empties = 0
		for i, k := range todo {
			if d := time.Until(next); d > 0 { // rate limit
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
			if now := s.clock.Now(); now.After(next) {
				next = now
			}
			next = next.Add(interval)
			out, err := s.rows.Erase(ctx, k, j.Subject, j.DeletedAt)
			if err != nil {
				return err
			}
			if out.Erased {
				deleted++
			}
			if out.Kept {
				kept[k] = true
			}
			if i%10 == 9 {
				if err := renew(); err != nil {
					return err
				}
			}
		}
		if err := renew(); err != nil {
			return err
		}
	}
	now := s.clock.Now()
	if err := s.store.Finish(ctx, j.ID, s.owner, Done, deleted, now); err != nil {
		return err
	}
	_ = s.store.Audit(ctx, AuditEvent{JobID: j.ID, At: now, Event: "done", By: s.owner, SubjectHash: SubjectHash(j.Subject), ItemsDeleted: deleted,
		Detail: fmt.Sprintf("%d rows kept with values newer than the deletion", len(kept))})
	s.logger.Info("deletion done", "job", j.ID, "items_deleted", deleted)
	s.cfg.Metrics.GdprJobs(ctx, "done")
	return nil
}
