package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/testpki"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// manifest is what the probe test reads from deploy/kubernetes/featurestore.yaml.
type manifest struct {
	config map[string]string
	probes map[string]struct {
		port    int
		service string
	}
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	b, err := os.ReadFile("../../deploy/kubernetes/featurestore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := manifest{probes: map[string]struct {
		port    int
		service string
	}{}}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []map[string]any `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "ConfigMap":
			m.config = doc.Data
		case "Deployment":
			for _, name := range []string{"readinessProbe", "livenessProbe"} {
				probe, _ := doc.Spec.Template.Spec.Containers[0][name].(map[string]any)
				g, ok := probe["grpc"].(map[string]any)
				if !ok {
					t.Fatalf("%s is not a gRPC probe: %v", name, probe)
				}
				svc, _ := g["service"].(string)
				m.probes[name] = struct {
					port    int
					service string
				}{g["port"].(int), svc}
			}
		}
	}
	if m.config == nil || len(m.probes) != 2 {
		t.Fatalf("manifest without a ConfigMap or probes: %+v", m)
	}
	return m
}

// TestKubernetesProbes starts the server with exactly the ConfigMap's settings (TLS with
// client certificates, an access policy, tables that must already exist), with only
// paths mapped to test files, ports to free ones and endpoints to the test stack, and
// performs both probes the way the Deployment declares them: kubelet's gRPC probe,
// which speaks plaintext and presents no certificate.
func TestKubernetesProbes(t *testing.T) {
	m := readManifest(t)
	p := newPKI(t)
	dir := t.TempDir()
	// ValKey as deploy/valkey configures it: TLS only, and the ACL user of users.acl.
	vkPKI := testpki.New(t)
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	vkAddr := valkeyWithACL(t, vkPKI, hex.EncodeToString(secret[:]))
	// With a replica, as the ConfigMap's FS_VALKEY_REPLICAS says (checked at start).
	attachReplica(t, vkPKI, vkAddr, hex.EncodeToString(secret[:]))
	files := map[string]string{
		"FS_AUTH_POLICY":          writeTestFile(t, dir, "policy.yaml", "rules: {}\n"),
		"FS_TLS_CERT":             p.serverCert,
		"FS_TLS_KEY":              p.serverKey,
		"FS_TLS_CLIENT_CA":        p.caFile,
		"FS_GDPR_HASH_KEY_FILE":   writeTestFile(t, dir, "hash-key", testGdprKey+"\n"),
		"FS_VALKEY_TLS_CA":        vkPKI.CAFile,
		"FS_VALKEY_PASSWORD_FILE": writeTestFile(t, dir, "valkey-password", hex.EncodeToString(secret[:])+"\n"),
	}
	env := map[string]string{}
	ports := map[int]int{} // container port -> the test's port
	for k, v := range m.config {
		switch {
		case files[k] != "":
			if !strings.HasPrefix(v, "/etc/featurestore/") {
				t.Fatalf("%s = %q: expected a mounted path", k, v)
			}
			v = files[k]
		case strings.HasSuffix(k, "_LISTEN"):
			_, port, err := net.SplitHostPort(v)
			if err != nil {
				t.Fatalf("%s = %q: %v", k, v, err)
			}
			free, err := devstack.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			cport, _ := strconv.Atoi(port)
			ports[cport] = free
			v = "127.0.0.1:" + strconv.Itoa(free)
		}
		env[k] = v
	}
	for k := range files {
		if _, ok := m.config[k]; !ok {
			t.Fatalf("the ConfigMap does not set %s", k)
		}
	}
	// The test stack, and a table prefix of our own: the ConfigMap says the tables come
	// from CloudFormation (FS_CREATE_TABLES=false), so they are created first.
	env["FS_DYNAMODB_ENDPOINT"], env["FS_VALKEY_ADDRS"] = shared.DynamoDB.Endpoint, vkAddr
	env["FS_TABLE_PREFIX"] = devstack.UniquePrefix(t.Name())
	env["FS_METRICS_LISTEN"] = "127.0.0.1:0" // not in the ConfigMap; its default port may be taken
	if env["FS_CREATE_TABLES"] != "false" {
		t.Fatalf("FS_CREATE_TABLES = %q; the test expects the manifest's tables to come from CloudFormation", env["FS_CREATE_TABLES"])
	}
	if err := dynamo.New(dynamo.NewClient(dynamo.LocalConfig(), shared.DynamoDB.Endpoint), dynamo.TablesWithPrefix(env["FS_TABLE_PREFIX"])).EnsureTables(context.Background()); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	stopped := make(chan struct{}) // closed when run returns; done may have been drained by then
	go func() {
		defer close(stopped)
		done <- run(ctx, nil, func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() { cancel(); <-stopped })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening on ") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the server with the manifest's settings did not start: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the server did not start")
	}

	probe := func(name string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		pr := m.probes[name]
		port, ok := ports[pr.port]
		if !ok {
			return 0, fmt.Errorf("%s probes container port %d, which no listener of the ConfigMap serves", name, pr.port)
		}
		conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(port), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer pcancel()
		resp, err := healthpb.NewHealthClient(conn).Check(pctx, &healthpb.HealthCheckRequest{Service: pr.service})
		return resp.GetStatus(), err
	}
	for name := range m.probes {
		if st, err := probe(name); err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s: %v %v, want SERVING", name, st, err)
		}
	}
	// The main port needs TLS: a plaintext probe there, as the manifest had it, fails.
	mainConn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(ports[50051]), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer mainConn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer ccancel()
	if _, err := healthpb.NewHealthClient(mainConn).Check(cctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a plaintext health check on the TLS port succeeded")
	}
	// The probe port serves health and nothing else.
	hconn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(m.probePort(t, ports)), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hconn.Close()
	_, err = pb.NewFeatureStoreServiceClient(hconn).GetFeatures(context.Background(), &pb.GetFeaturesRequest{Features: []string{"s:f"}, EntityIds: []string{"e"}})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("GetFeatures on the probe port: %v, want Unimplemented", err)
	}
	// On SIGTERM the readiness probe fails while the server drains (FS_DRAIN_DELAY).
	cancel()
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, err := probe("readinessProbe")
		if err == nil && st == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness during the drain: %v %v, want NOT_SERVING", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probePort is the test's port of the readiness probe's container port.
func (m manifest) probePort(t *testing.T, ports map[int]int) int {
	t.Helper()
	p, ok := ports[m.probes["readinessProbe"].port]
	if !ok {
		t.Fatal("no listener for the readiness probe's port")
	}
	return p
}

func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
