package gdpr_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/gdpr"
	"github.com/dsfeatures/featurestore/internal/devstack"
)

var shared *devstack.Shared

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, func(s *devstack.Shared) { shared = s }))
}

var fsCfg = writethrough.Config{WriteTimeout: time.Second, Lease: 1500 * time.Millisecond}

// testKey is the GDPR hash key of the tests.
var testKey = []byte("a test key that is at least 32 bytes long")

type env struct {
	*devstack.Stack
	keyer *gdpr.Keyer
	store *dynamo.Deletions
	svc   *featurestore.Service
	ops   *opRecorder
}

// opRecorder records the DynamoDB operations a client sends.
type opRecorder struct {
	mu  sync.Mutex
	ops map[string]int
}

func (r *opRecorder) count(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[op]
}

func (r *opRecorder) option(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("recordOps",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				r.mu.Lock()
				r.ops[awsmiddleware.GetOperationName(ctx)]++
				r.mu.Unlock()
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	})
}

func newEnv(t testing.TB) *env {
	st := shared.NewStack(t, fsCfg.Lease, devstack.ValkeyOptions{})
	keyer, err := gdpr.NewKeyer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	ops := &opRecorder{ops: map[string]int{}}
	// The deletion records go through a client that records its operations.
	ddb := dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint, ops.option)
	store := dynamo.NewDeletions(ddb, st.Dynamo.Tables().Deletions, keyer.SubjectKey)
	svc, _, err := devstack.NewService(st.DB, st.Cache, store, fsCfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return &env{Stack: st, keyer: keyer, store: store, svc: svc, ops: ops}
}

// worker starts a deletion worker (a replica's); stop kills it without cleanup.
func (e *env) worker(t testing.TB, cfg gdpr.Config) (*gdpr.Service, context.CancelFunc) {
	return e.workerOn(t, e.svc, e.Dynamo, cfg)
}

// workerOn starts a worker that erases through rows and finds them through index.
func (e *env) workerOn(t testing.TB, rows gdpr.Rows, index gdpr.Index, cfg gdpr.Config) (*gdpr.Service, context.CancelFunc) {
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Settle == 0 {
		cfg.Settle = 200 * time.Millisecond
	}
	cfg.WriteTimeout = fsCfg.WriteTimeout
	g := gdpr.New(e.store, e.keyer, rows, index, featurestore.SystemClock{}, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return g, stop
}

// waitEnd waits until job id is DONE or FAILED.
func waitEnd(t *testing.T, g *gdpr.Service, id string, within time.Duration) gdpr.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j, err := g.GetDeletion(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == gdpr.Done || j.State == gdpr.Failed {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s with %d items deleted", id, j.State, j.ItemsDeleted)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func apply(t *testing.T, svc *featurestore.Service, name string) {
	t.Helper()
	if _, err := svc.ApplyFeatureSet(context.Background(), featurestore.FeatureSet{Name: name, EntityType: "user", PersonalData: true,
		Features: []featurestore.FeatureSpec{{Name: "n", Type: featurestore.TypeInt64}}}); err != nil {
		t.Fatal(err)
	}
}

func row(entity, subject string, n int64, at time.Time) featurestore.WriteRow {
	return featurestore.WriteRow{EntityID: entity, SubjectID: subject, EventTime: at, Values: map[string]featurestore.Value{"n": {Type: featurestore.TypeInt64, Int: n}}}
}

// write writes rows as a client should: UNAVAILABLE means the outcome is unknown, and
// retrying is safe because merge is idempotent (a loaded DynamoDB Local can miss the
// tests' short write deadline).
func write(t *testing.T, svc *featurestore.Service, set string, rows ...featurestore.WriteRow) []featurestore.RowResult {
	t.Helper()
	for attempt := 1; ; attempt++ {
		res, err := svc.WriteFeatures(context.Background(), set, rows)
		if err == nil {
			return res
		}
		if featurestore.ErrorKind(err) != featurestore.KindUnavailable || attempt == 5 {
			t.Fatalf("write: %v", err)
		}
		time.Sleep(fsCfg.Lease)
	}
}

func TestDeleteSubjectErasesEveryCopy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	apply(t, e.svc, "profile")
	apply(t, e.svc, "activity")
	before := time.Now().Add(-time.Minute)
	write(t, e.svc, "profile", row("u1", "alice", 1, before), row("u2", "alice", 2, before), row("u4", "alice", 5, time.Now().Add(5*time.Minute)))
	write(t, e.svc, "activity", row("u1", "alice", 3, before))
	write(t, e.svc, "profile", row("u3", "bob", 4, before))
	time.Sleep(fsCfg.Lease + 100*time.Millisecond)
	// Cache some: profile/u1 and activity/u1 are read into the cache; profile/u2 is evicted.
	if _, err := e.svc.GetFeatures(ctx, []string{"profile:n"}, []string{"u1", "u2", "u3", "u4"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.GetFeatures(ctx, []string{"activity:n"}, []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	cl := e.Cache.Client()
	cl.Do(ctx, cl.B().Del().Key(featurestore.RowKey("profile", "u2").CacheKey()).Build())

	g, _ := e.worker(t, gdpr.Config{Rate: 1000})
	j, err := g.DeleteSubject(ctx, "alice", "user request #42", "privacy-team")
	if err != nil {
		t.Fatal(err)
	}
	done := waitEnd(t, g, j.ID, 30*time.Second)
	if done.State != gdpr.Done || done.ItemsDeleted != 4 || done.CompletedAt.IsZero() || done.Subject != "" {
		t.Fatalf("job %+v, want DONE, 4 items deleted (the future-dated one too), a completion time and no subject id", done)
	}
	for _, ref := range []struct{ set, entity string }{{"profile", "u1"}, {"profile", "u2"}, {"profile", "u4"}, {"activity", "u1"}} {
		res, err := e.svc.GetFeatures(ctx, []string{ref.set + ":n"}, []string{ref.entity})
		if err != nil || res.Cells[0].Status != featurestore.NotFoundStatus {
			t.Fatalf("%s/%s after deletion: %+v %v, want NOT_FOUND", ref.set, ref.entity, res.Cells, err)
		}
		key := featurestore.RowKey(ref.set, ref.entity)
		b, err := cl.Do(ctx, cl.B().Get().Key(key.CacheKey()).Build()).AsBytes()
		if err == nil {
			env, derr := valkey.DecodeEnvelope(b)
			if derr != nil || len(env.Payload) != 0 {
				t.Fatalf("cache still holds a value for %s: %+v", key.PK, env)
			}
			pttl, _ := cl.Do(ctx, cl.B().Pttl().Key(key.CacheKey()).Build()).AsInt64()
			if !env.Dirty && pttl > int64(5*time.Minute/time.Millisecond) {
				t.Fatalf("the empty fence of %s lives %dms, want at most 300 s", key.PK, pttl)
			}
		}
	}
	if res, _ := e.svc.GetFeatures(ctx, []string{"profile:n"}, []string{"u3"}); res.Cells[0].Value.Int != 4 {
		t.Fatalf("another subject's row was touched: %+v", res.Cells[0])
	}
	if keys, err := e.Dynamo.KeysBySubject(ctx, "alice"); err != nil || len(keys) != 0 {
		t.Fatalf("by_subject still lists %v (err %v)", keys, err)
	}
	byJob, err := e.store.AuditTrail(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	bySubject, err := e.store.AuditTrailBySubject(ctx, e.keyer.SubjectKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	for _, trail := range [][]gdpr.AuditEvent{byJob, bySubject} {
		var events []string
		for _, ev := range trail {
			events = append(events, ev.Event)
			if strings.Contains(fmt.Sprintf("%+v", ev), "alice") {
				t.Fatalf("the audit trail names the subject: %+v", ev)
			}
			if ev.SubjectKey != e.keyer.SubjectKey("alice") {
				t.Fatalf("audit event keyed %q, want the subject's keyed hash", ev.SubjectKey)
			}
		}
		if got := strings.Join(events, ","); got != "requested,claimed,done" || trail[0].By != "privacy-team" || trail[2].ItemsDeleted != 4 {
			t.Fatalf("audit trail %+v", trail)
		}
	}
	// Late rows: older than the deletion are refused; newer are accepted.
	if r := write(t, e.svc, "profile", row("u1", "alice", 9, before)); r[0].Status != featurestore.Rejected || r[0].Reason != featurestore.ReasonSubjectErased {
		t.Fatalf("late row: %+v, want REJECTED (SUBJECT_ERASED)", r)
	}
	res, err := e.svc.WriteRowsLenient(ctx, "profile", "rows", 0, []featurestore.WriteRow{row("u1", "alice", 9, before), row("u9", "alice", 10, time.Now())})
	if err != nil || res[0].Status != featurestore.Rejected || res[1].Status != featurestore.Written {
		t.Fatalf("lane rows: %+v %v, want [REJECTED WRITTEN]", res, err)
	}
}

// trail reads a job's audit trail.
func (e *env) trail(t *testing.T, id string) []gdpr.AuditEvent {
	t.Helper()
	trail, err := e.store.AuditTrail(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return trail
}

// TestWritesRefusedWhileErasing: while a deletion is pending or running, every row of the
// subject is refused, whatever its event time, so nothing is written under the subject
// during the erasure; rows of other subjects are not.
func TestWritesRefusedWhileErasing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	apply(t, e.svc, "profile")
	g := gdpr.New(e.store, e.keyer, e.svc, e.Dynamo, featurestore.SystemClock{}, gdpr.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	j, err := g.DeleteSubject(ctx, "erin", "", "test") // no worker runs: it stays pending
	if err != nil {
		t.Fatal(err)
	}
	res := write(t, e.svc, "profile", row("u1", "erin", 1, time.Now().Add(time.Hour)), row("u2", "frank", 2, time.Now()))
	if res[0].Status != featurestore.Rejected || res[0].Reason != featurestore.ReasonSubjectErasureInProgress || res[1].Status != featurestore.Written {
		t.Fatalf("rows while erin's deletion is pending: %+v", res)
	}
	e.worker(t, gdpr.Config{Rate: 1000})
	if d := waitEnd(t, g, j.ID, 30*time.Second); d.State != gdpr.Done {
		t.Fatalf("job %+v", d)
	}
	if res := write(t, e.svc, "profile", row("u1", "erin", 1, time.Now().Add(time.Minute))); res[0].Status != featurestore.Written {
		t.Fatalf("a newer row after DONE: %+v, want WRITTEN", res)
	}
}

// TestWorkerKilledMidJobAnotherFinishes kills one replica's worker in the middle of a job;
// another replica's worker takes the job over when the lease ends and finishes it.
func TestWorkerKilledMidJobAnotherFinishes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	apply(t, e.svc, "profile")
	const n = 30
	rows := make([]featurestore.WriteRow, n)
	for i := range rows {
		rows[i] = row(fmt.Sprintf("u%d", i), "dave", int64(i), time.Now().Add(-time.Minute))
	}
	write(t, e.svc, "profile", rows...)
	a, killA := e.worker(t, gdpr.Config{Rate: 5, Lease: time.Second})
	j, err := a.DeleteSubject(ctx, "dave", "", "test")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		cur, _ := a.GetDeletion(ctx, j.ID)
		if cur.ItemsDeleted >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker A made no progress: %+v", cur)
		}
		time.Sleep(50 * time.Millisecond)
	}
	killA()
	mid, _ := a.GetDeletion(ctx, j.ID)
	if mid.State != gdpr.Running || mid.ItemsDeleted >= n || mid.Subject != "dave" {
		t.Fatalf("after killing A: %+v, want a running, unfinished job that still names its subject", mid)
	}
	b, _ := e.worker(t, gdpr.Config{Rate: 1000, Lease: time.Second})
	done := waitEnd(t, b, j.ID, 30*time.Second)
	if done.State != gdpr.Done || done.ItemsDeleted != n {
		t.Fatalf("job %+v, want DONE with %d items deleted", done, n)
	}
	owners := map[string]bool{}
	for _, ev := range e.trail(t, j.ID) {
		if ev.Event == "claimed" {
			owners[ev.By] = true
		}
	}
	if len(owners) != 2 {
		t.Fatalf("claims by %v, want two workers", owners)
	}
	if keys, _ := e.Dynamo.KeysBySubject(ctx, "dave"); len(keys) != 0 {
		t.Fatalf("by_subject still lists %d rows", len(keys))
	}
}

// failingRows fails every erase, as a store that keeps failing does.
type failingRows struct{ calls int }

func (f *failingRows) Erase(context.Context, writethrough.Key, string) (bool, error) {
	f.calls++
	return false, featurestore.Unavailable("database unavailable", errors.New("connection refused"))
}

// TestFailingStoreEndsFailed: a job whose store keeps failing is retried a bounded number
// of times and then ends FAILED with a reason, in the job and the audit trail; filing the
// deletion again retries it. The claim path sends no Scan.
func TestFailingStoreEndsFailed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	apply(t, e.svc, "profile")
	write(t, e.svc, "profile", row("u1", "gina", 1, time.Now().Add(-time.Minute)))
	failing := &failingRows{}
	g, stop := e.workerOn(t, failing, e.Dynamo, gdpr.Config{Rate: 1000, MaxAttempts: 3, RetryBackoff: 50 * time.Millisecond})
	j, err := g.DeleteSubject(ctx, "gina", "ticket 9", "test")
	if err != nil {
		t.Fatal(err)
	}
	failed := waitEnd(t, g, j.ID, 30*time.Second)
	stop()
	if failed.State != gdpr.Failed || failed.Attempts != 3 || !strings.HasPrefix(failed.Failure, "STORE_UNAVAILABLE after 3 attempts") || failed.Subject != "" {
		t.Fatalf("job %+v, want FAILED after 3 attempts with a reason and no subject id", failed)
	}
	var events []string
	for _, ev := range e.trail(t, j.ID) {
		events = append(events, ev.Event)
		if ev.Event == "failed" && ev.Detail != failed.Failure {
			t.Fatalf("failed event %+v, want the job's reason", ev)
		}
	}
	if got := strings.Join(events, ","); got != "requested,claimed,retry,claimed,retry,claimed,failed" {
		t.Fatalf("audit events %s", got)
	}
	if e.ops.count("Scan") != 0 || e.ops.count("Query") == 0 {
		t.Fatalf("deletion store operations %v: want the claim path to query its index and never scan", e.ops.ops)
	}
	// Filing again retries it, and a working store finishes it.
	g2, _ := e.worker(t, gdpr.Config{Rate: 1000})
	j2, err := g2.DeleteSubject(ctx, "gina", "ticket 9, again", "test")
	if err != nil || j2.ID == j.ID {
		t.Fatalf("filing again: %+v %v, want a new job", j2, err)
	}
	if d := waitEnd(t, g2, j2.ID, 30*time.Second); d.State != gdpr.Done || d.ItemsDeleted != 1 {
		t.Fatalf("retried job %+v, want DONE with 1 item", d)
	}
}

func TestDeleteSubjectValidatesAndReturnsOneJob(t *testing.T) {
	e := newEnv(t)
	g := gdpr.New(e.store, e.keyer, e.svc, e.Dynamo, featurestore.SystemClock{}, gdpr.Config{Retention: 24 * time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	const callers = 6
	ids := make([]string, callers)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := g.DeleteSubject(context.Background(), "carol", "", "test")
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = j.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent requests got different jobs: %v", ids)
		}
	}
	j, err := g.GetDeletion(context.Background(), ids[0])
	if err != nil || j.Subject != "carol" {
		t.Fatalf("a pending job: %+v %v, want its subject id", j, err)
	}
	if d := time.Until(j.ExpiresAt); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("job expires in %v, want the configured retention of 24h", d)
	}
	for _, tc := range []struct {
		name string
		call func() error
		want featurestore.Kind
	}{
		{"empty subject", func() error { _, err := g.DeleteSubject(context.Background(), "", "", "test"); return err }, featurestore.KindInvalid},
		{"unknown job", func() error { _, err := g.GetDeletion(context.Background(), "del-0000000000000000"); return err }, featurestore.KindNotFound},
		{"malformed id", func() error { _, err := g.GetDeletion(context.Background(), strings.Repeat("x", 3000)); return err }, featurestore.KindInvalid},
	} {
		if err := tc.call(); featurestore.ErrorKind(err) != tc.want {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// laggingIndex shows each key in the by_subject index only from a given time on, as
// DynamoDB's eventually consistent GSI may for rows written just before a deletion.
type laggingIndex struct {
	gdpr.Index
	mu          sync.Mutex
	visibleFrom map[writethrough.Key]time.Time
}

func (l *laggingIndex) KeysBySubject(ctx context.Context, subject string) ([]writethrough.Key, error) {
	keys, err := l.Index.KeysBySubject(ctx, subject)
	l.mu.Lock()
	defer l.mu.Unlock()
	out := keys[:0]
	for _, k := range keys {
		if at, ok := l.visibleFrom[k]; !ok || !time.Now().Before(at) {
			out = append(out, k)
		}
	}
	return out, err
}

// The worker calls a job done only after the index stayed empty for Settle past the
// moment writes in flight at the deletion have committed. Rows that reach the index later
// than that are missed, which the control case shows; rows that arrive within it are found
// and erased.
func TestIndexLagWithinSettleIsCovered(t *testing.T) {
	tests := []struct {
		name      string
		settle    time.Duration
		wantFound bool // rows that appear in the index late are still there after DONE
	}{
		{"settle longer than the lag", 3 * time.Second, false},
		{"control: settle shorter than the lag", 20 * time.Millisecond, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			apply(t, e.svc, "profile")
			before := time.Now().Add(-time.Minute)
			write(t, e.svc, "profile", row("u1", "carol", 0, before), row("u2", "carol", 1, before), row("u3", "carol", 2, before))
			late := []writethrough.Key{featurestore.RowKey("profile", "u2"), featurestore.RowKey("profile", "u3")}
			idx := &laggingIndex{Index: e.Dynamo, visibleFrom: map[writethrough.Key]time.Time{}}
			far := time.Now().Add(time.Hour)
			for _, k := range late {
				idx.visibleFrom[k] = far
			}
			g, _ := e.workerOn(t, e.svc, idx, gdpr.Config{Rate: 1000, Settle: tc.settle})
			j, err := g.DeleteSubject(ctx, "carol", "lag test", "privacy-team")
			if err != nil {
				t.Fatal(err)
			}
			// The worker's first empty look comes WriteTimeout + 1s after the deletion;
			// the late rows appear 1.2 s after that: before a 3 s settle's second look,
			// long after a 20 ms settle's.
			idx.mu.Lock()
			for _, k := range late {
				idx.visibleFrom[k] = time.UnixMicro(j.DeletedAt).Add(fsCfg.WriteTimeout + time.Second + 1200*time.Millisecond)
			}
			idx.mu.Unlock()
			done := waitEnd(t, g, j.ID, 30*time.Second)
			res, err := e.svc.GetFeatures(ctx, []string{"profile:n"}, []string{"u1", "u2", "u3"})
			if err != nil {
				t.Fatal(err)
			}
			vals := res.Cells
			if vals[0].Status != featurestore.NotFoundStatus {
				t.Fatalf("u1, visible in the index from the start, survived: %+v", vals[0])
			}
			found := vals[1].Status == featurestore.Present || vals[2].Status == featurestore.Present
			if found != tc.wantFound {
				t.Fatalf("late rows still present = %v, want %v (job deleted %d items)", found, tc.wantFound, done.ItemsDeleted)
			}
			if !tc.wantFound {
				if keys, err := e.Dynamo.KeysBySubject(ctx, "carol"); err != nil || len(keys) != 0 {
					t.Fatalf("index after DONE: %v %v, want empty", keys, err)
				}
			}
		})
	}
}

// TestNoPlaintextSubjectLeftOver scans every table and every cache entry after DONE: no
// item, attribute or cached value may hold the subject id.
func TestNoPlaintextSubjectLeftOver(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	apply(t, e.svc, "profile")
	const subject = "subject-7f3a9c-plaintext"
	write(t, e.svc, "profile", row("u1", subject, 1, time.Now().Add(-time.Minute)), row("u2", subject, 2, time.Now().Add(time.Hour)))
	if _, err := e.svc.GetFeatures(ctx, []string{"profile:n"}, []string{"u1", "u2"}); err != nil {
		t.Fatal(err)
	}
	g, _ := e.worker(t, gdpr.Config{Rate: 1000})
	j, err := g.DeleteSubject(ctx, subject, "ticket 12", "privacy-team")
	if err != nil {
		t.Fatal(err)
	}
	if d := waitEnd(t, g, j.ID, 30*time.Second); d.State != gdpr.Done || d.ItemsDeleted != 2 {
		t.Fatalf("job %+v", d)
	}
	tables := e.Dynamo.Tables()
	for _, table := range []string{tables.Rows, tables.Sets, tables.Deletions} {
		p := dynamodb.NewScanPaginator(e.Dynamo.Client(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
		items := 0
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range page.Items {
				items++
				if s := fmt.Sprintf("%v", it); strings.Contains(s, subject) {
					t.Fatalf("table %s holds the subject id after DONE: %s", table, s)
				}
			}
		}
		if items == 0 {
			t.Fatalf("table %s is empty: the scan proves nothing", table)
		}
	}
	cl := e.Cache.Client()
	keys, err := cl.Do(ctx, cl.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil || len(keys) == 0 {
		t.Fatalf("cache keys %v %v", keys, err)
	}
	for _, k := range keys {
		v, _ := cl.Do(ctx, cl.B().Get().Key(k).Build()).ToString()
		if strings.Contains(k+v, subject) {
			t.Fatalf("cache entry %s holds the subject id", k)
		}
	}
}
