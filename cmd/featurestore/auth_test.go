package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

type pki struct {
	dir                   string
	caPool                *x509.CertPool
	caCert                *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	serverCert, serverKey string
	caFile                string
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), caPool: x509.NewCertPool()}
	var err error
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.caPool.AddCert(p.caCert)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	p.serverCert, p.serverKey = p.issue(t, "server", x509.ExtKeyUsageServerAuth)
	return p
}

// issue signs a certificate for cn and returns the cert and key file paths.
func (p *pki) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(p.dir, cn+".pem"), filepath.Join(p.dir, cn+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

const testPolicy = `
tokens:
  - {identity: reader, token: read-token}
  - {identity: writer, sha256: %s}
  - {identity: slow, token: slow-token}
certificates: [admin]
stream_opens: {rate: 1, burst: 3}
rules:
  reader: {read: ["*"]}
  writer: {read: ["counts"], write: ["counts"]}
  admin:  {read: ["*"], write: ["*"], delete: ["*"], apply: true, retire: true, gdpr: true}
  slow:   {read: ["*"], rate: 0.5, burst: 2}
`

// testGdprKey is the GDPR hash key of servers that run with authentication.
const testGdprKey = "a test GDPR hash key of at least 32 bytes"

func TestAuthentication(t *testing.T) {
	p := newPKI(t)
	policy := filepath.Join(p.dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(strings.Replace(testPolicy, "%s", server.HashToken("write-token"), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := startServerAt(t, map[string]string{"FS_AUTH_POLICY": policy, "FS_TLS_CERT": p.serverCert, "FS_TLS_KEY": p.serverKey, "FS_TLS_CLIENT_CA": p.caFile,
		"FS_GDPR_HASH_KEY": testGdprKey}).addr

	dial := func(clientCert ...tls.Certificate) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.caPool, Certificates: clientCert})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	certFile, keyFile := p.issue(t, "admin", x509.ExtKeyUsageClientAuth)
	adminCert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	admin := pb.NewFeatureStoreServiceClient(dial(adminCert))
	anon := dial()
	c := pb.NewFeatureStoreServiceClient(anon)
	token := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	ctx := context.Background()

	// mTLS: the certificate's CN "admin" may apply.
	for _, name := range []string{"counts", "other"} {
		if _, err := admin.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{Name: name, EntityType: "user",
			Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}}}}); err != nil {
			t.Fatalf("admin apply %s: %v", name, err)
		}
	}
	row := func(set string) *pb.WriteFeaturesRequest {
		return &pb.WriteFeaturesRequest{FeatureSet: set, Rows: []*pb.FeatureRow{{EntityId: "e", EventTime: timestamppb.Now(),
			Values: map[string]*pb.Value{"n": {Kind: &pb.Value_Int64Value{Int64Value: 1}}}}}}
	}
	read := func(set string) *pb.GetFeaturesRequest {
		return &pb.GetFeaturesRequest{Features: []string{set + ":n"}, EntityIds: []string{"e"}}
	}
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"no credentials", func() error { _, err := c.GetFeatures(ctx, read("counts")); return err }, codes.Unauthenticated},
		{"unknown token", func() error { _, err := c.GetFeatures(token("nope"), read("counts")); return err }, codes.Unauthenticated},
		{"reader reads", func() error { _, err := c.GetFeatures(token("read-token"), read("other")); return err }, codes.OK},
		{"reader may not write", func() error { _, err := c.WriteFeatures(token("read-token"), row("counts")); return err }, codes.PermissionDenied},
		{"reader may not apply", func() error {
			_, err := c.ApplyFeatureSet(token("read-token"), &pb.ApplyFeatureSetRequest{FeatureSet: &pb.FeatureSet{Name: "x"}})
			return err
		}, codes.PermissionDenied},
		{"reader may not delete subjects", func() error {
			_, err := pb.NewGdprServiceClient(anon).DeleteSubject(token("read-token"), &pb.DeleteSubjectRequest{SubjectId: "s"})
			return err
		}, codes.PermissionDenied},
		{"writer writes its set", func() error { _, err := c.WriteFeatures(token("write-token"), row("counts")); return err }, codes.OK},
		{"writer may not write another set", func() error { _, err := c.WriteFeatures(token("write-token"), row("other")); return err }, codes.PermissionDenied},
		{"writer may not read another set", func() error { _, err := c.GetFeatures(token("write-token"), read("other")); return err }, codes.PermissionDenied},
		{"writer may not stream to another set", func() error {
			st, err := c.StreamWriteFeatures(token("write-token"))
			if err != nil {
				return err
			}
			_ = st.Send(&pb.StreamWriteFeaturesRequest{Sequence: 1, FeatureSet: "other", Rows: row("other").GetRows()})
			_, err = st.Recv() // a refused stream's Send may fail with io.EOF; Recv has the status
			return err
		}, codes.PermissionDenied},
		{"writer may not batch to another set", func() error {
			st, err := c.BatchWriteFeatures(token("write-token"))
			if err != nil {
				return err
			}
			_ = st.Send(&pb.BatchWriteFeaturesRequest{FeatureSet: "other", Rows: row("other").GetRows()})
			_, err = st.CloseAndRecv()
			return err
		}, codes.PermissionDenied},
		{"writer may not delete entities", func() error {
			_, err := c.DeleteEntities(token("write-token"), &pb.DeleteEntitiesRequest{FeatureSet: "counts", EntityIds: []string{"e"}})
			return err
		}, codes.PermissionDenied},
		{"writer may not retire sets", func() error {
			_, err := c.DeleteFeatureSet(token("write-token"), &pb.DeleteFeatureSetRequest{Name: "counts"})
			return err
		}, codes.PermissionDenied},
		{"reader reads columns", func() error {
			_, err := c.GetFeatureColumns(token("read-token"), &pb.GetFeatureColumnsRequest{Features: []string{"other:n"}, EntityIds: []string{"e"}})
			return err
		}, codes.OK},
		{"writer may not read another set's columns", func() error {
			_, err := c.GetFeatureColumns(token("write-token"), &pb.GetFeatureColumnsRequest{Features: []string{"other:n"}, EntityIds: []string{"e"}})
			return err
		}, codes.PermissionDenied},
		{"admin deletes entities", func() error {
			_, err := admin.DeleteEntities(ctx, &pb.DeleteEntitiesRequest{FeatureSet: "other", EntityIds: []string{"e"}})
			return err
		}, codes.OK},
		{"the registry lists only readable sets", func() error {
			list, err := c.ListFeatureSets(token("write-token"), &pb.ListFeatureSetsRequest{})
			if err == nil && (len(list.GetFeatureSets()) != 1 || list.GetFeatureSets()[0].GetName() != "counts") {
				return fmt.Errorf("writer lists %v, want only counts", list.GetFeatureSets())
			}
			return err
		}, codes.OK},
		{"writer may not read another set's definition", func() error {
			_, err := c.GetFeatureSet(token("write-token"), &pb.GetFeatureSetRequest{Name: "other"})
			return err
		}, codes.PermissionDenied},
		{"reflection needs credentials", func() error {
			rs, err := reflectionpb.NewServerReflectionClient(anon).ServerReflectionInfo(ctx)
			if err != nil {
				return err
			}
			_ = rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			_, err = rs.Recv() // a refused stream's Send may fail with io.EOF; Recv has the status
			return err
		}, codes.Unauthenticated},
		{"reflection works for an identity", func() error {
			rs, err := reflectionpb.NewServerReflectionClient(anon).ServerReflectionInfo(token("read-token"))
			if err != nil {
				return err
			}
			_ = rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			_, err = rs.Recv() // a refused stream's Send may fail with io.EOF; Recv has the status
			return err
		}, codes.OK},
		{"admin deletes subjects", func() error {
			_, err := pb.NewGdprServiceClient(dial(adminCert)).DeleteSubject(ctx, &pb.DeleteSubjectRequest{SubjectId: "s", Reason: "test"})
			return err
		}, codes.OK},
		{"health needs no credentials", func() error {
			_, err := healthpb.NewHealthClient(anon).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}, codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.call()); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// Rate limit: burst 2, then ResourceExhausted.
	var codesSeen []codes.Code
	for i := 0; i < 4; i++ {
		_, err := c.GetFeatures(token("slow-token"), read("counts"))
		codesSeen = append(codesSeen, status.Code(err))
	}
	if codesSeen[0] != codes.OK || codesSeen[1] != codes.OK || codesSeen[3] != codes.ResourceExhausted {
		t.Fatalf("rate-limited calls: %v, want OK OK ... ResourceExhausted", codesSeen)
	}
}

func TestRefusesUnauthenticatedNonLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := map[string]string{"FS_LISTEN": "0.0.0.0:0", "FS_DYNAMODB_ENDPOINT": shared.DynamoDB.Endpoint}
	err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "refusing to serve without authentication") {
		t.Fatalf("run: %v, want a refusal", err)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	conn, _, _ := startServer(t, map[string]string{"FS_MAX_MESSAGE_BYTES": "4096"})
	ids := make([]string, 400)
	for i := range ids {
		ids[i] = strings.Repeat("x", 20)
	}
	_, err := pb.NewFeatureStoreServiceClient(conn).GetFeatures(context.Background(), &pb.GetFeaturesRequest{Features: []string{"s:n"}, EntityIds: ids})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("an 8 KB request to a 4 KB limit: %v, want ResourceExhausted", err)
	}
}

// TestPolicyIsStrict: a policy with a mistake is refused at start-up, naming the line.
func TestPolicyIsStrict(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{"bad hash", "tokens:\n  - {identity: a, sha256: not-hex}\n", ":2: tokens[0].sha256"},
		{"short hash", "tokens:\n  - {identity: a, sha256: abcd}\n", "64 hex digits"},
		{"duplicate token", "tokens:\n  - {identity: a, token: t}\n  - {identity: b, token: t}\n", ":3: tokens[1]: the same token as on line 2"},
		{"rule for nobody", "tokens:\n  - {identity: a, token: t}\nrules:\n  a: {read: [\"*\"]}\n  ghost: {read: [\"*\"]}\n", ":5: rules.ghost: no token or certificate names this identity"},
		{"unknown field", "tokens:\n  - {identity: a, token: t, role: admin}\n", "field role not found"},
		{"negative rate", "certificates: [a]\nrules:\n  a: {rate: -1}\n", "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writePolicy(t, tc.policy)
			_, err := loadPolicy(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("loadPolicy: %v, want an error naming %s and containing %q", err, path, tc.want)
			}
		})
	}
	ok := writePolicy(t, "tokens:\n  - {identity: a, sha256: "+strings.Repeat("ab", 32)+"}\ncertificates: [b]\nrules:\n  a: {read: [x]}\n  b: {gdpr: true}\n")
	if p, err := loadPolicy(ok); err != nil || len(p.TokenHashes) != 1 || !p.Certificates["b"] || !p.Rules["b"].Gdpr {
		t.Fatalf("a good policy: %+v %v", p, err)
	}
}

// TestPlaintextTokensRefused: bearer tokens over plaintext are refused on a non-loopback
// address unless explicitly allowed.
func TestPlaintextTokensRefused(t *testing.T) {
	policy := writePolicy(t, "tokens:\n  - {identity: a, token: t}\n")
	env := map[string]string{"FS_LISTEN": "0.0.0.0:0", "FS_AUTH_POLICY": policy, "FS_GDPR_HASH_KEY": testGdprKey, "FS_DYNAMODB_ENDPOINT": shared.DynamoDB.Endpoint}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "refusing bearer tokens over plaintext") {
		t.Fatalf("run: %v, want a refusal", err)
	}
}

// TestAuthFailuresLogged: a refused authentication is logged with the peer and reason,
// and the token never reaches the log.
func TestAuthFailuresLogged(t *testing.T) {
	policy := writePolicy(t, "tokens:\n  - {identity: a, token: the-right-token}\nrules:\n  a: {read: [\"*\"]}\n")
	var logs syncBuffer
	ts := startServerLogging(t, map[string]string{"FS_AUTH_POLICY": policy, "FS_GDPR_HASH_KEY": testGdprKey}, &logs)
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer a-wrong-secret-token")
	_, err = pb.NewFeatureStoreServiceClient(conn).GetFeatures(ctx, &pb.GetFeaturesRequest{Features: []string{"s:f"}, EntityIds: []string{"e"}})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "authentication failed") || !strings.Contains(out, "peer=127.0.0.1:") || !strings.Contains(out, "unknown bearer token") {
		t.Fatalf("log lacks the refusal, its peer or its reason:\n%s", out)
	}
	if strings.Contains(out, "a-wrong-secret-token") || strings.Contains(out, "the-right-token") {
		t.Fatalf("a token reached the log:\n%s", out)
	}
}
