package memdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/dbtest"
	"github.com/dsfeatures/featurestore/internal/memdb"
)

func TestContract(t *testing.T) {
	dbtest.Run(t, func(*testing.T) dbtest.DB { return memdb.New(memdb.Options{}) })
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// TestIndexLag: a change reaches KeysBySubject only once the configured lag has passed,
// as it reaches DynamoDB's eventually consistent GSI.
func TestIndexLag(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	db := memdb.New(memdb.Options{Clock: clock, IndexLag: time.Second})
	ctx := context.Background()
	k := writethrough.Key{Table: "f", PK: "s#1"}
	if err := db.PutItem(ctx, writethrough.Item{Key: k, Version: 1, Data: []byte("x"), Subject: "alice"}, 0); err != nil {
		t.Fatal(err)
	}
	if keys, _ := db.KeysBySubject(ctx, "alice"); len(keys) != 0 {
		t.Fatalf("index lists %v before the lag passed", keys)
	}
	clock.now = clock.now.Add(time.Second)
	if keys, _ := db.KeysBySubject(ctx, "alice"); len(keys) != 1 || keys[0] != k {
		t.Fatalf("index lists %v after the lag, want [%v]", keys, k)
	}
	if err := db.PutItem(ctx, writethrough.Item{Key: k, Version: 2}, 1); err != nil {
		t.Fatal(err)
	}
	if keys, _ := db.KeysBySubject(ctx, "alice"); len(keys) != 1 {
		t.Fatalf("index dropped the erased row before the lag: %v", keys)
	}
	clock.now = clock.now.Add(time.Second)
	if keys, _ := db.KeysBySubject(ctx, "alice"); len(keys) != 0 {
		t.Fatalf("index lists %v after the erasure's lag", keys)
	}
}

func TestExpire(t *testing.T) {
	db := memdb.New(memdb.Options{})
	ctx := context.Background()
	k := writethrough.Key{Table: "f", PK: "s#1"}
	if err := db.PutItem(ctx, writethrough.Item{Key: k, Version: 1, ExpiresAt: 100}, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.GetItems(ctx, []writethrough.Key{k}); len(got) != 1 {
		t.Fatal("an expired item vanished before the sweep; DynamoDB deletes lazily")
	}
	if n := db.Expire(time.Unix(101, 0)); n != 1 {
		t.Fatalf("Expire removed %d items, want 1", n)
	}
	if got, _ := db.GetItems(ctx, []writethrough.Key{k}); len(got) != 0 {
		t.Fatal("an expired item survived the sweep")
	}
}
