package gdpr_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
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

type env struct {
	*devstack.Stack
	store *gdpr.Store
	svc   *featurestore.Service
}

func newEnv(t *testing.T) *env { return newEnvB(t) }

func newEnvB(t testing.TB) *env {
	st := shared.NewStack(t, fsCfg.Lease, devstack.ValkeyOptions{})
	store := gdpr.NewStore(st.Dynamo.Client(), st.Dynamo.Tables().Deletions)
	svc, _, err := devstack.NewService(st.DB, st.Cache, store, fsCfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return &env{Stack: st, store: store, svc: svc}
}

// worker starts a deletion worker (a replica's); stop kills it without cleanup.
func (e *env) worker(t testing.TB, cfg gdpr.Config) (*gdpr.Service, context.CancelFunc) {
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Settle == 0 {
		cfg.Settle = 200 * time.Millisecond
	}
	cfg.WriteTimeout = fsCfg.WriteTimeout
	return e.workerOn(t, e.Dynamo, cfg)
}

// workerOn starts a worker that finds the rows through index.
func (e *env) workerOn(t testing.TB, index gdpr.Index, cfg gdpr.Config) (*gdpr.Service, context.CancelFunc) {
	g := gdpr.New(e.store, e.svc, index, featurestore.SystemClock{}, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return g, stop
}

func waitDone(t *testing.T, g *gdpr.Service, id string, within time.Duration) gdpr.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j, err := g.GetDeletion(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == gdpr.Done {
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

func write(t *testing.T, svc *featurestore.Service, set, entity, subject string, n int64, at time.Time) featurestore.RowResult {
	t.Helper()
	res, err := svc.WriteFeatures(context.Background(), set, []featurestore.WriteRow{{EntityID: entity, SubjectID: subject, EventTime: at,
		Values: map[string]featurestore.Value{"n": {Type: featurestore.TypeInt64, Int: n}}}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func TestDeleteSubjectErasesEveryCopy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	apply(t, e.svc, "profile")
	apply(t, e.svc, "activity")
	before := time.Now().Add(-time.Minute)
	write(t, e.svc, "profile", "u1", "alice", 1, before)
	write(t, e.svc, "profile", "u2", "alice", 2, before)
	write(t, e.svc, "activity", "u1", "alice", 3, before)
	write(t, e.svc, "profile", "u3", "bob", 4, before)
	time.Sleep(fsCfg.Lease + 100*time.Millisecond)
	// Cache some: profile/u1 and activity/u1 are read into the cache; profile/u2 is evicted.
	if _, err := e.svc.GetFeatures(ctx, []string{"profile:n"}, []string{"u1", "u2", "u3"}); err != nil {
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
	done := waitDone(t, g, j.ID, 30*time.Second)
	if done.ItemsDeleted != 3 || done.CompletedAt.IsZero() {
		t.Fatalf("job %+v, want 3 items deleted and a completion time", done)
	}
	for _, ref := range []struct{ set, entity string }{{"profile", "u1"}, {"profile", "u2"}, {"activity", "u1"}} {
		res, err := e.svc.GetFeatures(ctx, []string{ref.set + ":n"}, []string{ref.entity})
		vals := res.Cells
		if err != nil || vals[0].Status != featurestore.NotFoundStatus {
			t.Fatalf("%s/%s after deletion: %+v %v, want NOT_FOUND", ref.set, ref.entity, vals, err)
		}
		key := featurestore.RowKey(ref.set, ref.entity)
		b, err := cl.Do(ctx, cl.B().Get().Key(key.CacheKey()).Build()).AsBytes()
		if err == nil {
			env, derr := valkey.DecodeEnvelope(b)
			if derr != nil || len(env.Payload) != 0 {
				t.Fatalf("cache still holds a value for %s: %+v", key.PK, env)
			}
			if !env.Dirty {
				pttl, _ := cl.Do(ctx, cl.B().Pttl().Key(key.CacheKey()).Build()).AsInt64()
				if pttl > int64(time.Minute/time.Millisecond) {
					t.Fatalf("the empty fence of %s lives %dms, want at most a minute", key.PK, pttl)
				}
			}
		}
	}
	if res, _ := e.svc.GetFeatures(ctx, []string{"profile:n"}, []string{"u3"}); res.Cells[0].Value.Int != 4 {
		t.Fatalf("another subject's row was touched: %+v", res.Cells[0])
	}
	if keys, err := e.Dynamo.KeysBySubject(ctx, "alice"); err != nil || len(keys) != 0 {
		t.Fatalf("by_subject still lists %v (err %v)", keys, err)
	}
	trail, err := e.store.AuditTrail(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, ev := range trail {
		events = append(events, ev.Event)
		if strings.Contains(fmt.Sprintf("%+v", ev), "alice") {
			t.Fatalf("the audit trail names the subject: %+v", ev)
		}
	}
	if got := strings.Join(events, ","); got != "requested,claimed,done" || trail[0].By != "privacy-team" || trail[2].ItemsDeleted != 3 {
		t.Fatalf("audit trail %+v", trail)
	}

	// Late rows: older than the deletion are refused; newer are accepted.
	if r := write(t, e.svc, "profile", "u1", "alice", 9, before); r.Status != featurestore.Rejected || r.Error != featurestore.ErasedReason {
		t.Fatalf("late row: %+v, want REJECTED", r)
	}
	res, err := e.svc.WriteRowsLenient(ctx, "profile", "rows", 0, []featurestore.WriteRow{
		{EntityID: "u1", SubjectID: "alice", EventTime: before, Values: map[string]featurestore.Value{"n": {Type: featurestore.TypeInt64, Int: 9}}},
		{EntityID: "u9", SubjectID: "alice", EventTime: time.Now(), Values: map[string]featurestore.Value{"n": {Type: featurestore.TypeInt64, Int: 10}}},
	})
	if err != nil || res[0].Status != featurestore.Rejected || res[1].Status != featurestore.Written {
		t.Fatalf("lane rows: %+v %v, want [REJECTED WRITTEN]", res, err)
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
		rows[i] = featurestore.WriteRow{EntityID: fmt.Sprintf("u%d", i), SubjectID: "dave", EventTime: time.Now().Add(-time.Minute),
			Values: map[string]featurestore.Value{"n": {Type: featurestore.TypeInt64, Int: int64(i)}}}
	}
	for attempt := 1; ; attempt++ { // UNAVAILABLE is an unknown outcome: retrying is safe
		_, err := e.svc.WriteFeatures(ctx, "profile", rows)
		if err == nil {
			break
		}
		if featurestore.ErrorKind(err) != featurestore.KindUnavailable || attempt == 5 {
			t.Fatal(err)
		}
		time.Sleep(fsCfg.Lease)
	}
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
	if mid.State != gdpr.Running || mid.ItemsDeleted >= n {
		t.Fatalf("after killing A: %+v, want a running, unfinished job", mid)
	}
	b, _ := e.worker(t, gdpr.Config{Rate: 1000, Lease: time.Second})
	done := waitDone(t, b, j.ID, 30*time.Second)
	if done.ItemsDeleted != n {
		t.Fatalf("items deleted %d, want %d", done.ItemsDeleted, n)
	}
	trail, _ := e.store.AuditTrail(ctx, j.ID)
	owners := map[string]bool{}
	for _, ev := range trail {
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

func TestConcurrentDeleteSubjectReturnsOneJob(t *testing.T) {
	e := newEnv(t)
	g := gdpr.New(e.store, e.svc, e.Dynamo, featurestore.SystemClock{}, gdpr.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	if _, err := g.DeleteSubject(context.Background(), "", "", "test"); featurestore.ErrorKind(err) != featurestore.KindInvalid {
		t.Fatalf("empty subject: %v, want invalid", err)
	}
	if _, err := g.GetDeletion(context.Background(), "del-nope"); featurestore.ErrorKind(err) != featurestore.KindNotFound {
		t.Fatalf("unknown job: %v, want not found", err)
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
			for i, ent := range []string{"u1", "u2", "u3"} {
				write(t, e.svc, "profile", ent, "carol", int64(i), before)
			}
			late := []writethrough.Key{featurestore.RowKey("profile", "u2"), featurestore.RowKey("profile", "u3")}
			idx := &laggingIndex{Index: e.Dynamo, visibleFrom: map[writethrough.Key]time.Time{}}
			far := time.Now().Add(time.Hour)
			for _, k := range late {
				idx.visibleFrom[k] = far
			}
			g, _ := e.workerOn(t, idx, gdpr.Config{Rate: 1000, Poll: 100 * time.Millisecond, WriteTimeout: fsCfg.WriteTimeout, Settle: tc.settle})
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
			done := waitDone(t, g, j.ID, 30*time.Second)
			res, err := e.svc.GetFeatures(ctx, []string{"profile:n"}, []string{"u1", "u2", "u3"})
			vals := res.Cells
			if err != nil {
				t.Fatal(err)
			}
			if vals[0].Status != featurestore.NotFoundStatus {
				t.Fatalf("u1, visible in the index from the start, survived: %+v", vals[0])
			}
			found := vals[1].Status == featurestore.Present || vals[2].Status == featurestore.Present
			if found != tc.wantFound {
				t.Fatalf("late rows still present = %v, want %v (job deleted %d items)", found, tc.wantFound, done.ItemsDeleted)
			}
			if !tc.wantFound {
				keys, err := e.Dynamo.KeysBySubject(ctx, "carol")
				if err != nil || len(keys) != 0 {
					t.Fatalf("index after DONE: %v %v, want empty", keys, err)
				}
			}
		})
	}
}
