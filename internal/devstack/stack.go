package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/memdb"
)

// Shared is what a test binary starts once in TestMain: one DynamoDB Local (tests use
// their own table prefix) and the path of valkey-server (tests start their own, cheaply).
type Shared struct {
	DynamoDB  *DynamoDB
	ValkeyBin string
}

// StartShared starts DynamoDB Local for a test binary. It fails with instructions when
// the stack is not installed; `make test` installs it first.
func StartShared(ctx context.Context) (*Shared, error) {
	dir, err := FindDynamoDBLocal(os.Getenv)
	if err != nil {
		return nil, err
	}
	bin, err := FindValkeyServer(os.Getenv)
	if err != nil {
		return nil, err
	}
	ddb, err := StartDynamoDB(ctx, dir, 0, nil)
	if err != nil {
		return nil, err
	}
	return &Shared{DynamoDB: ddb, ValkeyBin: bin}, nil
}

// Stop stops DynamoDB Local.
func (s *Shared) Stop() { s.DynamoDB.Stop() }

// Stack is one test's backends: its own valkey-server and its own DynamoDB tables (or,
// from NewMemoryStack, an in-memory database).
type Stack struct {
	Valkey *Valkey
	DB     Database
	// Dynamo is DB when it is DynamoDB Local (NewStack), for tests that need its tables.
	Dynamo *dynamo.Store
	Cache  *valkey.Cache
	Prefix string
}

// startCache starts a valkey-server for t and dials it.
func startCache(t testing.TB, ctx context.Context, bin string, horizon time.Duration, vo ValkeyOptions) (*Valkey, *valkey.Cache) {
	t.Helper()
	vk, err := StartValkey(ctx, bin, vo)
	if err != nil {
		t.Fatalf("start valkey: %v", err)
	}
	t.Cleanup(vk.Stop)
	cache, err := valkey.Dial(ctx, []string{vk.Addr}, valkey.Options{Horizon: horizon})
	if err != nil {
		t.Fatalf("dial valkey: %v", err)
	}
	t.Cleanup(cache.Close)
	return vk, cache
}

// NewMemoryStack starts a valkey-server for t (milliseconds) over an in-memory database
// with DynamoDB's semantics (internal/memdb), for tests that need no JVM.
func NewMemoryStack(t testing.TB, horizon time.Duration, vo ValkeyOptions, mo memdb.Options) *Stack {
	t.Helper()
	bin, err := FindValkeyServer(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vk, cache := startCache(t, ctx, bin, horizon, vo)
	return &Stack{Valkey: vk, DB: memdb.New(mo), Cache: cache}
}

// NewStack starts a valkey-server for t, creates tables under a fresh prefix, and stops
// everything when t ends. horizon is the cache horizon (the services' lease).
func (s *Shared) NewStack(t testing.TB, horizon time.Duration, vo ValkeyOptions) *Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vk, cache := startCache(t, ctx, s.ValkeyBin, horizon, vo)
	prefix := UniquePrefix(t.Name())
	db := dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), s.DynamoDB.Endpoint), dynamo.TablesWithPrefix(prefix))
	if err := db.EnsureTables(ctx); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	return &Stack{Valkey: vk, DB: db, Dynamo: db, Cache: cache, Prefix: prefix}
}

// UniquePrefix makes a table prefix from a test name that no other run shares.
func UniquePrefix(name string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
	if len(clean) > 40 {
		clean = clean[:40]
	}
	return fmt.Sprintf("t_%s_%s_", clean, hex.EncodeToString(b[:]))
}

// RunTests is a TestMain body for packages that test against the real stack: it starts
// the shared stack, hands it to use, runs the tests, stops the stack and returns the exit
// code. Usage: func TestMain(m *testing.M) { os.Exit(devstack.RunTests(m, func(s *devstack.Shared) { shared = s })) }
func RunTests(m *testing.M, use func(*Shared)) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := StartShared(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration stack:", err)
		return 1
	}
	defer s.Stop()
	use(s)
	return m.Run()
}

// Database is what a harness's Service needs from a database: dynamo.Store and
// memdb.DB both are.
type Database interface {
	writethrough.Database
	featurestore.Registry
}

// NewService wires a write-through store and a feature store Service on db and cache, as
// cmd/featurestore does, for tests, benchmarks and the chaos harness. erasures may be nil.
func NewService(db Database, cache writethrough.Cache, erasures featurestore.Erasures, cfg writethrough.Config, logger *slog.Logger) (*featurestore.Service, *writethrough.Store, error) {
	store, err := writethrough.New(db, cache, featurestore.SystemClock{}, cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	return featurestore.New(store, db, erasures, featurestore.SystemClock{}, featurestore.Config{}, logger), store, nil
}
