package dynamo_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/dbtest"
	"github.com/dsfeatures/featurestore/internal/devstack"
)

var shared *devstack.Shared

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, func(s *devstack.Shared) { shared = s }))
}

// loseResponses lets matching requests reach DynamoDB and then loses their responses, as
// a reset connection does, so the SDK retries a request that has already applied.
type loseResponses struct {
	inner   *http.Client
	target  string       // operation, e.g. "PutItem"
	lose    atomic.Int32 // responses still to lose
	between func()       // runs after a lost response, before the SDK's retry
}

func (l *loseResponses) Do(r *http.Request) (*http.Response, error) {
	resp, err := l.inner.Do(r)
	if err != nil || !strings.HasSuffix(r.Header.Get("X-Amz-Target"), "."+l.target) || l.lose.Add(-1) < 0 {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if l.between != nil {
		l.between()
	}
	return nil, errors.New("read tcp 127.0.0.1: connection reset by peer")
}

func newStores(t *testing.T, lossy *loseResponses) (plain, faulty *dynamo.Store) {
	t.Helper()
	tables := dynamo.TablesWithPrefix(devstack.UniquePrefix("dyn"))
	plain = dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint), tables)
	if err := plain.EnsureTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	lossy.inner = &http.Client{}
	faulty = dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint, func(o *dynamodb.Options) { o.HTTPClient = lossy }), tables)
	return plain, faulty
}

func item(pk string, version int64, data string) writethrough.Item {
	return writethrough.Item{Key: writethrough.Key{Table: featurestore.RowsTable, PK: pk}, Version: version, Data: []byte(data)}
}

// TestContract runs the database contract against DynamoDB Local.
func TestContract(t *testing.T) {
	dbtest.Run(t, func(t *testing.T) dbtest.DB {
		db := dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint), dynamo.TablesWithPrefix(devstack.UniquePrefix(t.Name())))
		if err := db.EnsureTables(context.Background()); err != nil {
			t.Fatal(err)
		}
		return db
	})
}

// A conditional write whose response was lost is retried by the SDK, and the retry fails
// its condition because the first attempt applied. That must read as written when the
// item is still ours, and as unknown (never as a lost race) once someone overwrote it:
// callers report a lost race as STALE, which would deny a write readers may have seen.
func TestRetriedConditionalWrites(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		op         string
		lose       int32
		overwrite  bool // another writer overwrites between the lost response and the retry
		want       error
		wantStored int64 // version stored afterwards
	}{
		{name: "put, first answer conflicts", op: "PutItem", lose: 0, want: writethrough.ErrConflict, wantStored: 5},
		{name: "put, lost answer, retry finds it applied", op: "PutItem", lose: 1, want: nil, wantStored: 20},
		{name: "put, lost answer, overwritten before the retry", op: "PutItem", lose: 1, overwrite: true, want: dynamo.ErrAmbiguous, wantStored: 30},
		{name: "transaction, first answer conflicts", op: "TransactWriteItems", lose: 0, want: writethrough.ErrConflict, wantStored: 5},
		// The client request token makes DynamoDB answer the retry with the first attempt's
		// success, which is the truth: it applied.
		{name: "transaction, lost answer, overwritten before the retry", op: "TransactWriteItems", lose: 1, overwrite: true, want: nil, wantStored: 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lossy := &loseResponses{target: tc.op}
			plain, faulty := newStores(t, lossy)
			pk := "set#e1"
			if err := plain.PutItem(ctx, item(pk, 10, "old"), 0); err != nil {
				t.Fatal(err)
			}
			prev := int64(10)
			if tc.lose == 0 {
				// Someone else wrote version 5 over 10 first: a plain lost race.
				if err := plain.PutItem(ctx, item(pk, 5, "theirs"), 10); err != nil {
					t.Fatal(err)
				}
			}
			if tc.overwrite {
				lossy.between = func() {
					if err := plain.PutItem(ctx, item(pk, 30, "newer"), 20); err != nil {
						t.Errorf("overwrite: %v", err)
					}
				}
			}
			lossy.lose.Store(tc.lose)
			var err error
			if tc.op == "PutItem" {
				err = faulty.PutItem(ctx, item(pk, 20, "ours"), prev)
			} else {
				err = faulty.PutItems(ctx, []writethrough.Item{item(pk, 20, "ours")}, []int64{prev})
			}
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.lose > 0 && lossy.lose.Load() >= 0 {
				t.Fatal("no response was lost: the test did not exercise a retry")
			}
			got, err := plain.GetItems(ctx, []writethrough.Key{item(pk, 0, "").Key})
			if err != nil {
				t.Fatal(err)
			}
			if v := got[item(pk, 0, "").Key].Version; v != tc.wantStored {
				t.Fatalf("stored version %d, want %d", v, tc.wantStored)
			}
		})
	}
}

// Freshness items live in their own table, so the registry's listing (a scan of the sets
// table) and the rows' subject index never see them.
func TestFreshnessItemsHaveTheirOwnTable(t *testing.T) {
	ctx := context.Background()
	tables := dynamo.TablesWithPrefix(devstack.UniquePrefix(t.Name()))
	db := dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint), tables)
	if err := db.EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	key := featurestore.FreshnessKey("drivers")
	if err := db.PutItem(ctx, writethrough.Item{Key: key, Version: 1, Data: []byte(`{"newest_event_us":1}`)}, 0); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetItems(ctx, []writethrough.Key{key, featurestore.SetKey("drivers"), featurestore.RowKey("drivers", "x")})
	if err != nil {
		t.Fatal(err)
	}
	if it, ok := got[key]; !ok || string(it.Data) != `{"newest_event_us":1}` || len(got) != 1 {
		t.Fatalf("read back %v, want only the freshness item", got)
	}
	for _, table := range []string{tables.Rows, tables.Sets} {
		out, err := db.Client().Scan(ctx, &dynamodb.ScanInput{TableName: &table})
		if err != nil || len(out.Items) != 0 {
			t.Fatalf("table %s holds %d items (%v), want none", table, len(out.Items), err)
		}
	}
	out, err := db.Client().Scan(ctx, &dynamodb.ScanInput{TableName: &tables.Freshness})
	if err != nil || len(out.Items) != 1 {
		t.Fatalf("freshness table holds %d items (%v), want 1", len(out.Items), err)
	}
}
