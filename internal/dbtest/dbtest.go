// Package dbtest is the contract every database of the feature store must meet, as a test
// suite in the style of trillian's storage conformance tests: featurestore/dynamo runs it
// against DynamoDB Local, internal/memdb in memory, so the in-memory store the fast tests
// rely on behaves as the real one does.
package dbtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// DB is what the feature store needs from a database.
type DB interface {
	writethrough.Database
	featurestore.Registry
	KeysBySubject(ctx context.Context, subject string) ([]writethrough.Key, error)
}

// Run runs the contract against fresh databases made by newDB (one per subtest).
func Run(t *testing.T, newDB func(t *testing.T) DB) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db DB)
	}{
		{"AbsentKeys", testAbsent},
		{"CreateOnlyOnce", testCreate},
		{"ConditionalUpdate", testConditional},
		{"RoundTrip", testRoundTrip},
		{"ManyKeysAndDuplicates", testMany},
		{"TransactionAllOrNothing", testTransaction},
		{"SizeLimits", testSizeLimits},
		{"LongKeysRefused", testLongKeys},
		{"TablesAreSeparate", testTables},
		{"SubjectIndex", testIndex},
		{"ListPages", testList},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newDB(t)) })
	}
}

func row(pk string) writethrough.Key { return writethrough.Key{Table: featurestore.RowsTable, PK: pk} }

func item(pk string, version int64, data string) writethrough.Item {
	return writethrough.Item{Key: row(pk), Version: version, Data: []byte(data)}
}

func get(t *testing.T, db DB, k writethrough.Key) (writethrough.Item, bool) {
	t.Helper()
	got, err := db.GetItems(context.Background(), []writethrough.Key{k})
	if err != nil {
		t.Fatalf("GetItems(%s): %v", k.PK, err)
	}
	it, ok := got[k]
	return it, ok
}

func testAbsent(t *testing.T, db DB) {
	got, err := db.GetItems(context.Background(), []writethrough.Key{row("a"), row("b")})
	if err != nil || len(got) != 0 {
		t.Fatalf("GetItems of absent keys = %v, %v; want an empty map", got, err)
	}
}

func testCreate(t *testing.T, db DB) {
	ctx := context.Background()
	if err := db.PutItem(ctx, item("a", 10, "x"), 0); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := db.PutItem(ctx, item("a", 11, "y"), 0); !errors.Is(err, writethrough.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	if it, _ := get(t, db, row("a")); it.Version != 10 || string(it.Data) != "x" {
		t.Fatalf("after a refused create: %+v, want version 10 data x", it)
	}
}

func testConditional(t *testing.T, db DB) {
	ctx := context.Background()
	if err := db.PutItem(ctx, item("a", 10, "x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := db.PutItem(ctx, item("a", 12, "z"), 11); !errors.Is(err, writethrough.ErrConflict) {
		t.Fatalf("put after the wrong version: %v, want ErrConflict", err)
	}
	if err := db.PutItem(ctx, item("a", 20, "y"), 10); err != nil {
		t.Fatalf("put after the right version: %v", err)
	}
	if it, _ := get(t, db, row("a")); it.Version != 20 || string(it.Data) != "y" {
		t.Fatalf("stored %+v, want version 20 data y", it)
	}
	if err := db.PutItem(ctx, item("a", 21, "w"), 10); !errors.Is(err, writethrough.ErrConflict) {
		t.Fatalf("put after a superseded version: %v, want ErrConflict", err)
	}
}

func testRoundTrip(t *testing.T, db DB) {
	ctx := context.Background()
	want := writethrough.Item{Key: row("set#entity:é"), Version: 1795515881280902, Data: []byte{1, 0, 255, 7}, Subject: "subject-1", ExpiresAt: 1_900_000_000}
	if err := db.PutItem(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	got, ok := get(t, db, want.Key)
	if !ok {
		t.Fatal("stored item not found")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	// A tombstone: no data, no subject, no expiry.
	tomb := writethrough.Item{Key: want.Key, Version: want.Version + 1}
	if err := db.PutItem(ctx, tomb, want.Version); err != nil {
		t.Fatal(err)
	}
	if got, ok := get(t, db, want.Key); !ok || got.Version != tomb.Version || len(got.Data) != 0 || got.Subject != "" || got.ExpiresAt != 0 {
		t.Fatalf("tombstone read back as %+v (found %v)", got, ok)
	}
}

func testMany(t *testing.T, db DB) {
	ctx := context.Background()
	var keys []writethrough.Key
	for i := 0; i < 250; i++ {
		k := row(fmt.Sprintf("k%03d", i))
		if i%2 == 0 {
			if err := db.PutItem(ctx, writethrough.Item{Key: k, Version: int64(i + 1), Data: []byte{byte(i)}}, 0); err != nil {
				t.Fatal(err)
			}
		}
		keys = append(keys, k, k) // every key twice
	}
	got, err := db.GetItems(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 125 {
		t.Fatalf("GetItems returned %d items, want 125", len(got))
	}
	for k, it := range got {
		var i int
		fmt.Sscanf(k.PK, "k%03d", &i)
		if it.Key != k || it.Version != int64(i+1) || !bytes.Equal(it.Data, []byte{byte(i)}) {
			t.Fatalf("item %s = %+v", k.PK, it)
		}
	}
}

func testTransaction(t *testing.T, db DB) {
	ctx := context.Background()
	if err := db.PutItem(ctx, item("b", 5, "old"), 0); err != nil {
		t.Fatal(err)
	}
	// One wrong condition: nothing is stored.
	err := db.PutItems(ctx, []writethrough.Item{item("a", 1, "a1"), item("b", 6, "b6")}, []int64{0, 4})
	if !errors.Is(err, writethrough.ErrConflict) {
		t.Fatalf("transaction with a stale condition: %v, want ErrConflict", err)
	}
	if _, ok := get(t, db, row("a")); ok {
		t.Fatal("a transaction that failed its condition stored an item")
	}
	if err := db.PutItems(ctx, []writethrough.Item{item("a", 1, "a1"), item("b", 6, "b6")}, []int64{0, 5}); err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if a, _ := get(t, db, row("a")); string(a.Data) != "a1" {
		t.Fatalf("a = %+v", a)
	}
	if b, _ := get(t, db, row("b")); string(b.Data) != "b6" || b.Version != 6 {
		t.Fatalf("b = %+v", b)
	}
}

func testSizeLimits(t *testing.T, db DB) {
	ctx := context.Background()
	big := writethrough.Item{Key: row("big"), Version: 1, Data: bytes.Repeat([]byte{'x'}, writethrough.MaxItemBytes)}
	if err := db.PutItem(ctx, big, 0); !errors.Is(err, writethrough.ErrItemTooLarge) {
		t.Fatalf("put of an item over the limit: %v, want ErrItemTooLarge", err)
	}
	fits := writethrough.Item{Key: row("fits"), Version: 1, Data: bytes.Repeat([]byte{'x'}, writethrough.MaxItemBytes-200)}
	if fits.Size() > writethrough.MaxItemBytes {
		t.Fatalf("test item of %d bytes does not fit", fits.Size())
	}
	if err := db.PutItem(ctx, fits, 0); err != nil {
		t.Fatalf("put of an item just under the limit: %v", err)
	}
	if err := db.PutItems(ctx, []writethrough.Item{item("small", 1, "s"), big}, []int64{0, 0}); !errors.Is(err, writethrough.ErrItemTooLarge) {
		t.Fatalf("transaction with an item over the limit: %v, want ErrItemTooLarge", err)
	}
	var many []writethrough.Item
	var prevs []int64
	for i := 0; i <= writethrough.MaxGroupItems; i++ {
		many = append(many, item(fmt.Sprintf("m%d", i), 1, "m"))
		prevs = append(prevs, 0)
	}
	if err := db.PutItems(ctx, many, prevs); !errors.Is(err, writethrough.ErrItemTooLarge) {
		t.Fatalf("transaction of %d items: %v, want ErrItemTooLarge", len(many), err)
	}
	var heavy []writethrough.Item
	for i := 0; i < writethrough.MaxGroupBytes/(writethrough.MaxItemBytes-200)+1; i++ {
		it := fits
		it.Key = row(fmt.Sprintf("h%d", i))
		heavy = append(heavy, it)
	}
	if err := db.PutItems(ctx, heavy, make([]int64, len(heavy))); !errors.Is(err, writethrough.ErrItemTooLarge) {
		t.Fatalf("transaction over %d bytes: %v, want ErrItemTooLarge", writethrough.MaxGroupBytes, err)
	}
	for _, pk := range []string{"big", "small", "m0", "h0"} {
		if _, ok := get(t, db, row(pk)); ok {
			t.Fatalf("%s was stored by a refused write", pk)
		}
	}
}

// testLongKeys: a key over DynamoDB's limit is refused as invalid, never as an outage.
func testLongKeys(t *testing.T, db DB) {
	ctx := context.Background()
	long := strings.Repeat("k", writethrough.MaxKeyBytes+1)
	if _, err := db.GetItems(ctx, []writethrough.Key{row("short"), row(long)}); !errors.Is(err, writethrough.ErrRefused) {
		t.Errorf("get of a %d-byte key: %v, want ErrRefused", len(long), err)
	}
	if err := db.PutItem(ctx, item(long, 1, "x"), 0); !errors.Is(err, writethrough.ErrRefused) {
		t.Errorf("put of a %d-byte key: %v, want ErrRefused", len(long), err)
	}
	if err := db.PutItems(ctx, []writethrough.Item{item("fine", 1, "x"), item(long, 1, "x")}, []int64{0, 0}); !errors.Is(err, writethrough.ErrRefused) {
		t.Errorf("transaction with a %d-byte key: %v, want ErrRefused", len(long), err)
	}
	if _, ok := get(t, db, row("fine")); ok {
		t.Error("fine was stored by a refused transaction")
	}
}

func testTables(t *testing.T, db DB) {
	ctx := context.Background()
	set := writethrough.Item{Key: writethrough.Key{Table: featurestore.SetsTable, PK: "same"}, Version: 1, Data: []byte("set")}
	if err := db.PutItem(ctx, set, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.PutItem(ctx, item("same", 7, "row"), 0); err != nil {
		t.Fatalf("the same pk in another table: %v", err)
	}
	if got, _ := get(t, db, set.Key); string(got.Data) != "set" {
		t.Fatalf("sets table item = %+v", got)
	}
	got, err := db.GetItems(ctx, []writethrough.Key{set.Key, row("same")})
	if err != nil || len(got) != 2 || string(got[row("same")].Data) != "row" {
		t.Fatalf("mixed-table GetItems = %v, %v", got, err)
	}
}

// eventually polls the index until it lists want for subject.
func eventually(t *testing.T, db DB, subject string, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys, err := db.KeysBySubject(context.Background(), subject)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range keys {
			if k.Table != featurestore.RowsTable {
				t.Fatalf("index listed %v, a key outside the rows table", k)
			}
			got = append(got, k.PK)
		}
		sort.Strings(got)
		if strings.Join(got, ",") == strings.Join(want, ",") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("index for %q lists %v, want %v", subject, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testIndex(t *testing.T, db DB) {
	ctx := context.Background()
	for _, it := range []writethrough.Item{
		{Key: row("s#1"), Version: 1, Data: []byte("x"), Subject: "alice"},
		{Key: row("s#2"), Version: 1, Data: []byte("x"), Subject: "alice"},
		{Key: row("s#3"), Version: 1, Data: []byte("x"), Subject: "bob"},
		{Key: row("s#4"), Version: 1, Data: []byte("x")},
	} {
		if err := db.PutItem(ctx, it, 0); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, db, "alice", []string{"s#1", "s#2"})
	eventually(t, db, "bob", []string{"s#3"})
	// A tombstone has no subject, so the index drops it.
	if err := db.PutItem(ctx, writethrough.Item{Key: row("s#1"), Version: 2}, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, db, "alice", []string{"s#2"})
	eventually(t, db, "nobody", nil)
}

func testList(t *testing.T, db DB) {
	ctx := context.Background()
	want := map[string]bool{}
	for i := 0; i < 23; i++ {
		pk := fmt.Sprintf("set%02d", i)
		want[pk] = true
		if err := db.PutItem(ctx, writethrough.Item{Key: writethrough.Key{Table: featurestore.SetsTable, PK: pk}, Version: 1, Data: []byte("{}")}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutItem(ctx, item("not-a-set", 1, "x"), 0); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	start, pages := "", 0
	for {
		items, next, err := db.ListItems(ctx, featurestore.SetsTable, start, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) > 5 {
			t.Fatalf("page of %d items, limit 5", len(items))
		}
		for _, it := range items {
			if seen[it.Key.PK] || !want[it.Key.PK] {
				t.Fatalf("listed %q twice or from another table", it.Key.PK)
			}
			seen[it.Key.PK] = true
		}
		pages++
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("listing does not end")
		}
		start = next
	}
	if len(seen) != len(want) || pages < 5 {
		t.Fatalf("listed %d of %d sets in %d pages", len(seen), len(want), pages)
	}
}
