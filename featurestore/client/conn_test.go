package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/testpki"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

func TestParseTarget(t *testing.T) {
	type result struct {
		Target, Host string
		Local        bool
	}
	tests := []struct {
		in      string
		want    result
		wantErr bool
	}{
		{in: "featurestore.prod.svc:50051", want: result{"dns:///featurestore.prod.svc:50051", "featurestore.prod.svc", false}},
		{in: "10.0.0.7:50051", want: result{"dns:///10.0.0.7:50051", "10.0.0.7", false}},
		{in: "127.0.0.1:50051", want: result{"dns:///127.0.0.1:50051", "127.0.0.1", true}},
		{in: "localhost:6000", want: result{"dns:///localhost:6000", "localhost", true}},
		{in: "[::1]:6000", want: result{"dns:///[::1]:6000", "::1", true}},
		{in: "dns:///fs.example:443", want: result{"dns:///fs.example:443", "fs.example", false}},
		{in: "dns://10.0.0.2:53/fs.example:443", want: result{"dns://10.0.0.2:53/fs.example:443", "fs.example", false}},
		{in: "unix:///run/fs.sock", want: result{"unix:///run/fs.sock", "localhost", true}},
		{in: "featurestore", wantErr: true},
		{in: ":50051", wantErr: true},
		{in: "dns:///noport", wantErr: true},
	}
	for _, tc := range tests {
		target, host, local, err := parseTarget(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, result{target, host, local}); !tc.wantErr && diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestTransportChoice(t *testing.T) {
	p := testpki.New(t)
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := p.Issue(t, "admin", x509.ExtKeyUsageClientAuth)
	tests := []struct {
		name    string
		host    string
		local   bool
		opts    Options
		want    string // the credentials' security protocol
		wantErr string
	}{
		{name: "loopback defaults to plaintext", host: "127.0.0.1", local: true, want: "insecure"},
		{name: "remote defaults to TLS", host: "fs.example", want: "tls"},
		{name: "remote plaintext needs insecure", host: "fs.example", opts: Options{Insecure: true}, want: "insecure"},
		{name: "a CA turns TLS on for loopback", host: "localhost", local: true, opts: Options{CAFile: p.CAFile}, want: "tls"},
		{name: "client certificate", host: "fs.example", opts: Options{CAFile: p.CAFile, CertFile: certFile, KeyFile: keyFile}, want: "tls"},
		{name: "tls.Config", host: "127.0.0.1", local: true, opts: Options{TLSConfig: &tls.Config{RootCAs: p.Pool}}, want: "tls"},
		{name: "insecure with TLS options", host: "fs.example", opts: Options{Insecure: true, CAFile: p.CAFile}, wantErr: "cannot be combined"},
		{name: "certificate without key", host: "fs.example", opts: Options{CertFile: certFile}, wantErr: "both the certificate and the key"},
		{name: "missing CA file", host: "fs.example", opts: Options{CAFile: filepath.Join(t.TempDir(), "nope.pem")}, wantErr: "no such file"},
		{name: "CA file without certificates", host: "fs.example", opts: Options{CAFile: notPEM}, wantErr: "no PEM certificates"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			creds, err := transportCredentials(tc.opts, tc.host, tc.local)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := creds.Info().SecurityProtocol; got != tc.want {
				t.Errorf("security protocol %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTokenNeverInPlaintextToRemote(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		opts    Options
		wantErr bool
	}{
		{"TLS", "fs.example:443", Options{Token: "t"}, false},
		{"loopback plaintext", "127.0.0.1:50051", Options{Token: "t"}, false},
		{"explicit insecure", "fs.example:50051", Options{Token: "t", Insecure: true}, false},
		{"plaintext credentials swapped in", "fs.example:50051", Options{Token: "t", DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}}, true},
		{"token with a newline", "fs.example:443", Options{Token: "t\n"}, true},
	}
	for _, tc := range tests {
		c, err := Dial(tc.target, tc.opts)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v, want error %v", tc.name, err, tc.wantErr)
		}
		if c != nil {
			c.Close()
		}
	}
}

func TestServiceConfig(t *testing.T) {
	sc, err := serviceConfig(Options{MaxAttempts: 4, BaseBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		LoadBalancingConfig []map[string]any
		MethodConfig        []struct {
			Name        []map[string]string
			RetryPolicy map[string]any
		}
	}
	if err := json.Unmarshal([]byte(sc), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]map[string]any{{"round_robin": map[string]any{}}}, got.LoadBalancingConfig); diff != "" {
		t.Errorf("balancing (-want +got):\n%s", diff)
	}
	wantPolicy := map[string]any{"maxAttempts": 4.0, "initialBackoff": "0.05s", "maxBackoff": "2s", "backoffMultiplier": 2.0, "retryableStatusCodes": []any{"UNAVAILABLE"}}
	if len(got.MethodConfig) != 1 {
		t.Fatalf("method configs %+v", got.MethodConfig)
	}
	if diff := cmp.Diff(wantPolicy, got.MethodConfig[0].RetryPolicy); diff != "" {
		t.Errorf("retry policy (-want +got):\n%s", diff)
	}
	var methods []string
	for _, n := range got.MethodConfig[0].Name {
		methods = append(methods, n["method"])
	}
	// Writes must not be among them: their retries are explicit, so ambiguity is reported.
	if diff := cmp.Diff([]string{"GetFeatures", "GetFeatureColumns", "GetFeatureSet", "ListFeatureSets", "GetDeletion"}, methods); diff != "" {
		t.Errorf("retried methods (-want +got):\n%s", diff)
	}
	one, err := serviceConfig(Options{MaxAttempts: 1})
	if err != nil || strings.Contains(one, "retryPolicy") {
		t.Errorf("MaxAttempts 1 still has a retry policy: %s %v", one, err)
	}
}

// A DNS name is dialled through the dns resolver.
func TestDialUsesDNSResolver(t *testing.T) {
	c, err := Dial("featurestore.example:50051", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Target(); got != "dns:///featurestore.example:50051" {
		t.Errorf("target %q, want dns:///featurestore.example:50051", got)
	}
}

// TestTLSTokenAndClientCertificate runs the server with TLS, client certificates and an
// access policy, as deploy/kubernetes does, and checks each way in.
func TestTLSTokenAndClientCertificate(t *testing.T) {
	p := testpki.New(t)
	policy := server.Policy{TokenHashes: map[string]string{server.HashToken("read-token"): "reader"},
		Certificates: map[string]bool{"admin": true},
		Rules:        map[string]server.Rule{"reader": {Read: []string{"*"}}, "admin": {Read: []string{"*"}, Write: []string{"*"}, Apply: true}}}
	opts := append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(p.ServerTLS(t)))}, server.NewAuth(policy, slog.New(slog.NewTextHandler(io.Discard, nil))).ServerOptions()...)
	addr := startServer(t, opts...)
	ctx := testCtx(t)
	set := &pb.FeatureSet{Name: "s", EntityType: "e", Features: []*pb.FeatureSpec{{Name: "n", Type: pb.ValueType_VALUE_TYPE_INT64}}}

	certFile, keyFile := p.Issue(t, "admin", x509.ExtKeyUsageClientAuth)
	admin := dial(t, addr, Options{CAFile: p.CAFile, CertFile: certFile, KeyFile: keyFile})
	if _, err := admin.ApplyFeatureSet(ctx, set); err != nil {
		t.Fatalf("apply with the admin certificate: %v", err)
	}
	reader := dial(t, addr, Options{CAFile: p.CAFile, Token: "read-token"})
	if got, err := reader.GetFeatureSet(ctx, "s"); err != nil || got.GetName() != "s" {
		t.Fatalf("get with the reader token: %v %v", got, err)
	}
	// The token identified the caller as reader, who may not apply.
	if _, err := reader.ApplyFeatureSet(ctx, set); status.Code(err) != codes.PermissionDenied {
		t.Errorf("apply with the reader token: %v, want PermissionDenied", err)
	}
	anonymous := dial(t, addr, Options{CAFile: p.CAFile})
	if _, err := anonymous.GetFeatureSet(ctx, "s"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without credentials: %v, want Unauthenticated", err)
	}
	// A certificate from another CA is not trusted.
	other := testpki.New(t)
	if _, err := dial(t, addr, Options{CAFile: other.CAFile}).GetFeatureSet(ctx, "s"); status.Code(err) != codes.Unavailable {
		t.Errorf("server certificate from an untrusted CA: %v, want Unavailable", err)
	}
}

// TestTokenOverLoopbackPlaintext: a token may travel in plaintext on loopback (a sidecar
// or a port-forward), and the server receives it.
func TestTokenOverLoopbackPlaintext(t *testing.T) {
	policy := server.Policy{TokenHashes: map[string]string{server.HashToken("read-token"): "reader"}, Rules: map[string]server.Rule{"reader": {Read: []string{"*"}}}}
	addr := startServer(t, server.NewAuth(policy, slog.New(slog.NewTextHandler(io.Discard, nil))).ServerOptions()...)
	ctx := testCtx(t)
	if _, err := dial(t, addr, Options{Token: "read-token"}).ListFeatureSetsPage(ctx, 0, ""); err != nil {
		t.Fatalf("list with a token over loopback: %v", err)
	}
	if _, err := dial(t, addr, Options{}).ListFeatureSetsPage(ctx, 0, ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("list without a token: %v, want Unauthenticated", err)
	}
}

// TestRoundRobin: with two replicas behind one name, calls reach both. Under grpc's
// default pick_first every call would go to one of them.
func TestRoundRobin(t *testing.T) {
	st := shared.NewStack(t, 1500*time.Millisecond, devstack.ValkeyOptions{})
	var seen [2]calls
	addrs := make([]string, 2)
	for i := range addrs {
		count := &seen[i]
		addrs[i] = serve(t, newService(t, st), grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			count.add(info.FullMethod)
			return h(ctx, req)
		}))
	}
	// A manual resolver stands in for DNS answering with both pods' addresses.
	r := manual.NewBuilderWithScheme("fstest")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: addrs[0]}, {Addr: addrs[1]}}})
	// The name is not loopback, so plaintext needs the explicit opt-in.
	c := dial(t, "fstest:///featurestore:50051", Options{Insecure: true, DialOptions: []grpc.DialOption{grpc.WithResolvers(r)}})
	ctx := testCtx(t)
	for range 20 {
		if _, err := c.ListFeatureSetsPage(ctx, 0, ""); err != nil {
			t.Fatal(err)
		}
	}
	m := pb.FeatureStoreService_ListFeatureSets_FullMethodName
	if a, b := seen[0].get(m), seen[1].get(m); a+b != 20 || a < 5 || b < 5 {
		t.Errorf("calls per replica: %d and %d, want 20 spread over both", a, b)
	}
}

// TestReadsRetriedByServiceConfig: gRPC itself retries an idempotent read answered
// UNAVAILABLE (the retried attempt carries grpc-previous-rpc-attempts), up to
// MaxAttempts, and writes are not retried by it.
func TestReadsRetriedByServiceConfig(t *testing.T) {
	var seen calls
	var mu sync.Mutex
	failFirst := 2
	var previous []string
	addr := startServer(t, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		n := seen.add(info.FullMethod)
		if info.FullMethod != pb.FeatureStoreService_GetFeatures_FullMethodName {
			return h(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		defer mu.Unlock()
		previous = append(previous, strings.Join(md.Get("grpc-previous-rpc-attempts"), ","))
		if n <= failFirst {
			return nil, status.Error(codes.Unavailable, "injected")
		}
		return h(ctx, req)
	}))
	c := dial(t, addr, Options{BaseBackoff: time.Millisecond})
	applySet(t, c, "s")
	ctx := testCtx(t)
	if _, err := c.GetFeatures(ctx, []string{"s:n"}, []string{"e1"}); err != nil {
		t.Fatalf("GetFeatures after two UNAVAILABLE answers: %v", err)
	}
	if diff := cmp.Diff([]string{"", "1", "2"}, previous); diff != "" {
		t.Errorf("attempts' grpc-previous-rpc-attempts (-want +got):\n%s", diff)
	}
	// MaxAttempts bounds it.
	mu.Lock()
	failFirst, previous = 100, nil
	mu.Unlock()
	before := seen.get(pb.FeatureStoreService_GetFeatures_FullMethodName)
	_, err := dial(t, addr, Options{BaseBackoff: time.Millisecond, MaxAttempts: 3}).GetFeatures(ctx, []string{"s:n"}, []string{"e1"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetFeatures always UNAVAILABLE: %v", err)
	}
	if n := seen.get(pb.FeatureStoreService_GetFeatures_FullMethodName) - before; n != 3 {
		t.Errorf("%d attempts with MaxAttempts 3", n)
	}
}
