// Package client is the Go client of the feature store, for ML serving code and feature
// pipelines: typed value helpers, the registry, GetFeatures and GetFeatureColumns, the
// three write lanes, entity deletes, and a streaming writer that resends unacknowledged
// requests after a reconnect.
//
// Connections: a DNS name is dialled as dns:///host:port and balanced round_robin over
// every address it resolves to, so replicas added by an autoscaler get traffic once the
// server recycles connections. Plaintext is used only for loopback targets; any other
// target gets TLS (system roots unless a CA is given) unless Options.Insecure says
// otherwise. A bearer token is never sent over plaintext to a non-loopback target
// without that opt-in.
//
// Retries: idempotent reads (GetFeatures, GetFeatureColumns, GetFeatureSet,
// ListFeatureSets, GetDeletion) are retried on UNAVAILABLE by gRPC's own retry policy
// (service config). Write retries UNAVAILABLE itself, because the caller must learn when
// a retry made the outcome ambiguous (see OutcomeUnknownError). StreamWriter reconnects
// and resends what was not acknowledged. Nothing else is retried.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// DefaultMaxRecvMsgBytes is the default bound on one response. grpc-go's own default,
// 4 MiB, is below responses the server answers within its documented limits: 100
// entities x 100 features of 128-float embeddings is about 5.3 MB, and the limit of
// 100,000 values of that size is about 53 MB.
const DefaultMaxRecvMsgBytes = 64 << 20

// Options configure a Client. The zero value is valid: plaintext to loopback targets,
// TLS with the system's roots to any other, no token, and the defaults below.
type Options struct {
	// Insecure allows plaintext to a target that is not loopback, and a bearer token over
	// it. It cannot be combined with TLS options.
	Insecure bool
	// TLSConfig, if set, is the base of the TLS configuration (it is cloned). CAFile,
	// CertFile, KeyFile and ServerName add to it.
	TLSConfig *tls.Config
	// CAFile is a PEM file of the CA certificates that verify the server (default: the
	// system's roots). Setting it turns TLS on, also for a loopback target.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, presented for mutual
	// TLS (the server takes the certificate's common name as the caller's identity).
	// Both or neither; setting them turns TLS on.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry (default: the target's
	// host), e.g. when reaching the service through a port-forward. Turns TLS on.
	ServerName string
	// Token is sent as "authorization: Bearer <token>" with every call.
	Token string
	// MaxRecvMsgBytes bounds one response (default DefaultMaxRecvMsgBytes).
	MaxRecvMsgBytes int
	// MaxAttempts bounds the tries of a call answered UNAVAILABLE, for the reads retried
	// by gRPC and for Write (default 5; 1 turns retries off).
	MaxAttempts int
	// BaseBackoff is the first retry delay and MaxBackoff the largest; delays double with
	// jitter in between (defaults 50ms and 2s). The stream writer's reconnects use them too.
	BaseBackoff, MaxBackoff time.Duration
	// DialOptions are passed to grpc.NewClient after the client's own, so they win (for
	// example interceptors, or other transport credentials).
	DialOptions []grpc.DialOption
}

// Client talks to one feature store target. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	fs   pb.FeatureStoreServiceClient
	gdpr pb.GdprServiceClient
	opts Options
}

// Dial returns a Client for target: "host:port" (a DNS name or an IP address), or a gRPC
// target with a scheme ("dns:///host:port", "unix:///path"), which is used as given. It
// does not wait for the connection. It fails on conflicting or unreadable TLS options,
// and on a token that would travel in plaintext to a non-loopback target without
// Options.Insecure.
func Dial(target string, opts Options) (*Client, error) {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.BaseBackoff <= 0 {
		opts.BaseBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 2 * time.Second
	}
	if opts.MaxBackoff < opts.BaseBackoff {
		opts.MaxBackoff = opts.BaseBackoff
	}
	if opts.MaxRecvMsgBytes <= 0 {
		opts.MaxRecvMsgBytes = DefaultMaxRecvMsgBytes
	}
	dialTarget, host, local, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	creds, err := transportCredentials(opts, host, local)
	if err != nil {
		return nil, err
	}
	sc, err := serviceConfig(opts)
	if err != nil {
		return nil, err
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(sc),
		// The balancing and retry policy is part of this client's contract, so a service
		// config published in DNS TXT records must not replace it.
		grpc.WithDisableServiceConfig(),
		// Without this, grpc-go caps the retry policy's maxAttempts at 5.
		grpc.WithMaxCallAttempts(opts.MaxAttempts),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(opts.MaxRecvMsgBytes), grpc.ForceCodecV2(newCodec())),
		// Pings find a dead connection (a killed pod, a dropped NAT entry) within a minute
		// of an idle stream. 30 s is above the server's enforced minimum (10 s by default),
		// which would otherwise disconnect the client for pinging too often.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
	}
	if opts.Token != "" {
		if strings.ContainsFunc(opts.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return nil, errors.New("token: must not contain spaces or control characters")
		}
		// Plaintext is allowed only to loopback or with Insecure; anywhere else the token
		// demands a secure transport, which grpc enforces when the client is created (for
		// example when DialOptions swap in plaintext credentials).
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{token: opts.Token, requireTLS: !(local || opts.Insecure)}))
	}
	dial = append(dial, opts.DialOptions...)
	conn, err := grpc.NewClient(dialTarget, dial...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", target, err)
	}
	return &Client{conn: conn, fs: pb.NewFeatureStoreServiceClient(conn), gdpr: pb.NewGdprServiceClient(conn), opts: opts}, nil
}

// parseTarget turns target into a gRPC target, and reports its host (for TLS server name
// checks) and whether it is loopback or a local socket.
func parseTarget(target string) (dialTarget, host string, local bool, err error) {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return target, "localhost", true, nil
	}
	endpoint := target
	if i := strings.Index(target, "://"); i > 0 {
		u, err := url.Parse(target)
		if err != nil {
			return "", "", false, fmt.Errorf("target %q: %w", target, err)
		}
		endpoint = strings.TrimPrefix(u.Path, "/")
		if endpoint == "" {
			endpoint = u.Opaque
		}
		dialTarget = target
	} else {
		// A bare host:port resolves through DNS explicitly, so that every address of a
		// name (every ready pod behind a headless Service) becomes a backend.
		dialTarget = "dns:///" + target
	}
	h, port, err := net.SplitHostPort(endpoint)
	if err != nil || h == "" || port == "" {
		return "", "", false, fmt.Errorf("target %q: want host:port (for example featurestore.prod.svc:50051)", target)
	}
	return dialTarget, h, isLoopback(h), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// transportCredentials decides between plaintext and TLS; see Options.
func transportCredentials(opts Options, host string, local bool) (credentials.TransportCredentials, error) {
	wantTLS := opts.TLSConfig != nil || opts.CAFile != "" || opts.CertFile != "" || opts.KeyFile != "" || opts.ServerName != ""
	switch {
	case opts.Insecure && wantTLS:
		return nil, errors.New("insecure (plaintext) cannot be combined with TLS options (CA, client certificate, server name)")
	case opts.Insecure || (local && !wantTLS):
		return insecure.NewCredentials(), nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.TLSConfig != nil {
		tc = opts.TLSConfig.Clone()
	}
	if opts.CAFile != "" {
		pemBytes, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("TLS CA %s: no PEM certificates found", opts.CAFile)
		}
		tc.RootCAs = pool
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("TLS client certificate: give both the certificate and the key file, or neither")
	}
	if opts.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		tc.Certificates = append(tc.Certificates, cert)
	}
	switch {
	case opts.ServerName != "":
		tc.ServerName = opts.ServerName
	case tc.ServerName == "":
		tc.ServerName = host
	}
	return credentials.NewTLS(tc), nil
}

// serviceConfig is the channel's service config: round_robin over every resolved
// address, and gRPC's retry policy for the idempotent reads.
func serviceConfig(opts Options) (string, error) {
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	type retryPolicy struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type methodConfig struct {
		Name        []name       `json:"name"`
		RetryPolicy *retryPolicy `json:"retryPolicy,omitempty"`
	}
	sc := struct {
		LoadBalancingConfig []map[string]struct{} `json:"loadBalancingConfig"`
		MethodConfig        []methodConfig        `json:"methodConfig,omitempty"`
	}{LoadBalancingConfig: []map[string]struct{}{{"round_robin": {}}}}
	// grpc rejects a retry policy of fewer than 2 attempts; 1 attempt means none.
	if opts.MaxAttempts > 1 {
		mc := methodConfig{RetryPolicy: &retryPolicy{
			MaxAttempts:          opts.MaxAttempts,
			InitialBackoff:       protoDuration(opts.BaseBackoff),
			MaxBackoff:           protoDuration(opts.MaxBackoff),
			BackoffMultiplier:    2,
			RetryableStatusCodes: []string{"UNAVAILABLE"},
		}}
		// The idempotent reads. Writes are retried by Write itself, so it can tell the
		// caller when a retry made the outcome ambiguous.
		fsService, gdprService := pb.FeatureStoreService_ServiceDesc.ServiceName, pb.GdprService_ServiceDesc.ServiceName
		mc.Name = []name{
			{fsService, "GetFeatures"}, {fsService, "GetFeatureColumns"}, {fsService, "GetFeatureSet"},
			{fsService, "ListFeatureSets"}, {gdprService, "GetDeletion"},
		}
		sc.MethodConfig = []methodConfig{mc}
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return "", fmt.Errorf("service config: %w", err)
	}
	return string(b), nil
}

// protoDuration formats d as the JSON form of a google.protobuf.Duration ("0.05s").
func protoDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// bearer sends a token as per-RPC credentials.
type bearer struct {
	token      string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if b.requireTLS {
		// grpc checks plaintext credentials when the client is created; this also covers
		// transports that report a lower security level per connection.
		ri, _ := credentials.RequestInfoFromContext(ctx)
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, fmt.Errorf("refusing to send the bearer token: %w", err)
		}
	}
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }

// newBackoff is the jittered exponential backoff of Write's retries and the stream
// writer's reconnects.
func (c *Client) newBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.Multiplier = c.opts.BaseBackoff, c.opts.MaxBackoff, 2
	b.Reset()
	return b
}

// Close closes the connection; calls in flight fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }

// Target returns the gRPC target the client dialled, e.g. "dns:///featurestore:50051".
func (c *Client) Target() string { return c.conn.Target() }

// API returns the generated client for calls this package does not wrap. Calls made
// through it get the same transport, token, balancing and read retries.
func (c *Client) API() pb.FeatureStoreServiceClient { return c.fs }

// GdprAPI returns the generated GdprService client.
func (c *Client) GdprAPI() pb.GdprServiceClient { return c.gdpr }

// ApplyFeatureSet creates or evolves a feature set and returns it as stored (with its
// version). Applying an identical set is a no-op. It is not retried.
func (c *Client) ApplyFeatureSet(ctx context.Context, fs *pb.FeatureSet) (*pb.FeatureSet, error) {
	resp, err := c.fs.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: fs})
	return resp.GetFeatureSet(), err
}

// GetFeatureSet returns the newest version of a feature set, or a NOT_FOUND error. It is
// retried on UNAVAILABLE.
func (c *Client) GetFeatureSet(ctx context.Context, name string) (*pb.FeatureSet, error) {
	resp, err := c.fs.GetFeatureSet(ctx, &pb.GetFeatureSetRequest{Name: name})
	return resp.GetFeatureSet(), err
}

// ListFeatureSetsPage returns one page of the feature sets the caller may read: at most
// pageSize (0: the server's default of 100; at most 1000; a page may hold fewer),
// starting after the page that returned pageToken ("" for the first). Pages come in a
// stable order that is not sorted by name; sort on the client. The response's
// next_page_token is empty on the last page. It is retried on UNAVAILABLE.
func (c *Client) ListFeatureSetsPage(ctx context.Context, pageSize int, pageToken string) (*pb.ListFeatureSetsResponse, error) {
	if pageSize < 0 || pageSize > 1000 {
		return nil, fmt.Errorf("page size %d: want 0 (the server's default) to 1000", pageSize)
	}
	return c.fs.ListFeatureSets(ctx, &pb.ListFeatureSetsRequest{PageSize: int32(pageSize), PageToken: pageToken})
}

// FeatureSets yields every feature set the caller may read, in the server's (unsorted)
// order, fetching pages of pageSize (see ListFeatureSetsPage) as the loop advances. On an error it yields
// (nil, err) once and stops; a server that hands back a page token it already gave is
// such an error, rather than an endless loop.
func (c *Client) FeatureSets(ctx context.Context, pageSize int) iter.Seq2[*pb.FeatureSet, error] {
	return func(yield func(*pb.FeatureSet, error) bool) {
		token := ""
		seen := map[string]bool{}
		for {
			resp, err := c.ListFeatureSetsPage(ctx, pageSize, token)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, fs := range resp.GetFeatureSets() {
				if !yield(fs, nil) {
					return
				}
			}
			token = resp.GetNextPageToken()
			if token == "" {
				return
			}
			if seen[token] {
				yield(nil, fmt.Errorf("list feature sets: the server returned page token %q twice", token))
				return
			}
			seen[token] = true
		}
	}
}

// DeleteFeatureSet retires a feature set and returns it as it was: its rows stop being
// served and written, and its name can never be applied again. An unknown or already
// retired set is NOT_FOUND. It is not retried: after an UNAVAILABLE, call it again and
// treat NOT_FOUND as "retired by the earlier attempt".
func (c *Client) DeleteFeatureSet(ctx context.Context, name string) (*pb.FeatureSet, error) {
	resp, err := c.fs.DeleteFeatureSet(ctx, &pb.DeleteFeatureSetRequest{Name: name})
	return resp.GetFeatureSet(), err
}

// GetFeatures reads refs ("set:feature") for entityIDs: one result per entity in request
// order, values in refs order. It is retried on UNAVAILABLE.
func (c *Client) GetFeatures(ctx context.Context, refs, entityIDs []string) (*pb.GetFeaturesResponse, error) {
	return c.fs.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: refs, EntityIds: entityIDs})
}

// GetFeatureColumns is GetFeatures with one typed column per feature. It is retried on
// UNAVAILABLE.
func (c *Client) GetFeatureColumns(ctx context.Context, refs, entityIDs []string) (*pb.GetFeatureColumnsResponse, error) {
	return c.fs.GetFeatureColumns(ctx, &pb.GetFeatureColumnsRequest{Features: refs, EntityIds: entityIDs})
}

// DeleteSubject files a GDPR deletion for a data subject; the job is durable when it
// returns. It is not retried; filing again while the job runs returns the same job.
func (c *Client) DeleteSubject(ctx context.Context, subjectID, reason string) (*pb.Deletion, error) {
	resp, err := c.gdpr.DeleteSubject(ctx, &pb.DeleteSubjectRequest{SubjectId: subjectID, Reason: reason})
	return resp.GetDeletion(), err
}

// GetDeletion reports a deletion job. It is retried on UNAVAILABLE.
func (c *Client) GetDeletion(ctx context.Context, id string) (*pb.Deletion, error) {
	resp, err := c.gdpr.GetDeletion(ctx, &pb.GetDeletionRequest{Id: id})
	return resp.GetDeletion(), err
}
