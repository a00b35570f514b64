package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vk "github.com/valkey-io/valkey-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/testpki"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

var scoreSet = &pb.FeatureSet{Name: "score", EntityType: "user", Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}}}

// writeScores applies scoreSet and writes n for each entity.
func writeScores(t *testing.T, c pb.FeatureStoreServiceClient, scores map[string]int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: scoreSet}); err != nil {
		t.Fatal(err)
	}
	for e, n := range scores {
		row := &pb.FeatureRow{EntityId: e, EventTime: timestamppb.New(time.Now().Add(-time.Second)),
			Values: map[string]*pb.Value{"n": {Kind: &pb.Value_Int64Value{Int64Value: n}}}}
		if _, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: "score", Rows: []*pb.FeatureRow{row}}); err != nil {
			t.Fatal(err)
		}
	}
}

// readScore reads entity's score.
func readScore(t *testing.T, c pb.FeatureStoreServiceClient, entity string) int64 {
	t.Helper()
	resp, err := c.GetFeatures(context.Background(), &pb.GetFeaturesRequest{Features: []string{"score:n"}, EntityIds: []string{entity}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetResults()[0].GetValues()[0].GetInt64Value()
}

// TestCachedValueIsBoundToItsKey: whoever can write to ValKey must not be able to make
// one entity serve another's data by copying a cache entry over its key. The moved entry
// is refused, counted, and the read answered from DynamoDB.
func TestCachedValueIsBoundToItsKey(t *testing.T) {
	ts := startServerAt(t, nil)
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewFeatureStoreServiceClient(conn)
	writeScores(t, c, map[string]int64{"alice": 1, "bob": 2})
	// Wait out the horizon of the fresh cache so both keys hold a VALUE, then warm them.
	deadline := time.Now().Add(10 * time.Second)
	alice, bob := featurestore.RowKey("score", "alice").CacheKey(), featurestore.RowKey("score", "bob").CacheKey()
	raw, err := vk.NewClient(vk.ClientOption{InitAddress: []string{ts.valkey.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx := context.Background()
	for {
		if readScore(t, c, "alice") != 1 || readScore(t, c, "bob") != 2 {
			t.Fatal("wrong scores before the copy")
		}
		a, _ := raw.Do(ctx, raw.B().Get().Key(alice).Build()).ToString()
		b, _ := raw.Do(ctx, raw.B().Get().Key(bob).Build()).ToString()
		if strings.HasPrefix(a, "V") && strings.HasPrefix(b, "V") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys never cached as values: %q %q", a, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := raw.Do(ctx, raw.B().Copy().Source(alice).Destination(bob).Replace().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got := readScore(t, c, "bob"); got != 2 {
		t.Fatalf("bob's score after copying alice's cache entry over it = %d, want 2 (served another entity's value)", got)
	}
	if got := scrape(t, ts.metricsURL)("featurestore_cache_misbound_total"); got < 1 {
		t.Errorf("featurestore_cache_misbound_total = %v, want >= 1", got)
	}
	if got := readScore(t, c, "alice"); got != 1 {
		t.Fatalf("alice's score = %d, want 1", got)
	}
}

// valkeyWithACL starts a valkey-server that accepts only TLS, verified against pki, and
// only the users of deploy/valkey/users.acl, with the feature store's password set to
// password. It returns the address.
func valkeyWithACL(t *testing.T, pki *testpki.PKI, password string) string {
	t.Helper()
	acl, err := os.ReadFile("../../deploy/valkey/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(acl), ">CHANGE_ME") {
		t.Fatal("deploy/valkey/users.acl has no CHANGE_ME password placeholder")
	}
	aclFile := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(aclFile, []byte(strings.ReplaceAll(string(acl), "CHANGE_ME", password)), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	v, err := devstack.StartValkey(context.Background(), shared.ValkeyBin, devstack.ValkeyOptions{Port: port, Extra: []string{
		"--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey, "--tls-ca-cert-file", pki.CAFile,
		"--tls-auth-clients", "optional", "--aclfile", aclFile,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	return v.Addr
}

// attachReplica starts a replica of the primary valkeyWithACL started at addr, as
// deploy/valkey configures one (TLS, the replication user of users.acl), and waits until
// the primary reports it connected, as the feature store's start-up check reads it.
func attachReplica(t *testing.T, pki *testpki.PKI, addr, password string) {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	host, pport, _ := strings.Cut(addr, ":")
	// The primary checks a certificate a client presents: the replica's must be for clients.
	clientCert, clientKey := pki.Issue(t, "replica", x509.ExtKeyUsageClientAuth)
	r, err := devstack.StartValkey(context.Background(), shared.ValkeyBin, devstack.ValkeyOptions{Port: port, Extra: []string{
		"--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey, "--tls-ca-cert-file", pki.CAFile,
		"--tls-client-cert-file", clientCert, "--tls-client-key-file", clientKey,
		"--tls-replication", "yes", "--replicaof", host, pport,
		"--masteruser", "replication", "--masterauth", password + "_REPLICATION",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil || !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("read the CA %s: %v", pki.CAFile, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := valkey.Dial(ctx, []string{addr}, valkey.Options{Horizon: time.Second, Username: "featurestore", Password: password,
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		rep, err := c.Replication(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.MinReplicas == 1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the replica did not connect to its primary: %s", rep)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestValkeyOverTLSWithACLUser: the server reaches a ValKey that takes only TLS and the
// ACL user of deploy/valkey/users.acl, through the settings documented for it, and the
// cache is really used (hits), so the ACL allows everything the protocol runs.
// Wrong credentials or no TLS are start-up errors that say so.
func TestValkeyOverTLSWithACLUser(t *testing.T) {
	pki := testpki.New(t)
	var b [16]byte
	_, _ = rand.Read(b[:])
	password := hex.EncodeToString(b[:])
	addr := valkeyWithACL(t, pki, password)
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"FS_VALKEY_ADDRS": addr, "FS_VALKEY_TLS": "true", "FS_VALKEY_TLS_CA": pki.CAFile,
		"FS_VALKEY_USERNAME": "featurestore", "FS_VALKEY_PASSWORD_FILE": pwFile,
	}

	t.Run("refused", func(t *testing.T) {
		for name, change := range map[string]map[string]string{
			"wrong password":  {"FS_VALKEY_PASSWORD_FILE": "", "FS_VALKEY_PASSWORD": "wrong"},
			"default user":    {"FS_VALKEY_USERNAME": "", "FS_VALKEY_PASSWORD_FILE": ""},
			"no TLS":          {"FS_VALKEY_TLS": "", "FS_VALKEY_TLS_CA": ""},
			"untrusted CA":    {"FS_VALKEY_TLS_CA": testpki.New(t).CAFile},
			"CA without TLS":  {"FS_VALKEY_TLS": ""},
			"password twice":  {"FS_VALKEY_PASSWORD": "x"},
			"missing pw file": {"FS_VALKEY_PASSWORD_FILE": filepath.Join(t.TempDir(), "none")},
		} {
			env := map[string]string{"FS_LISTEN": "127.0.0.1:0", "FS_DYNAMODB_ENDPOINT": shared.DynamoDB.Endpoint, "FS_STARTUP_TIMEOUT": "3s"}
			for k, v := range good {
				env[k] = v
			}
			for k, v := range change {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
			cancel()
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "valkey") {
				t.Errorf("%s: run = %v, want a start-up error about ValKey", name, err)
			}
		}
	})

	ts := startServerAt(t, good)
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewFeatureStoreServiceClient(conn)
	writeScores(t, c, map[string]int64{"carol": 7})
	deadline := time.Now().Add(10 * time.Second)
	for scrape(t, ts.metricsURL)("featurestore_cache_lookups_total", `result="hit"`) < 1 {
		if got := readScore(t, c, "carol"); got != 7 {
			t.Fatalf("carol's score = %d, want 7", got)
		}
		if time.Now().After(deadline) {
			t.Fatal("no cache hit through TLS and the ACL user: the cache is not being used")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
