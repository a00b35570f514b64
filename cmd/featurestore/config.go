package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// config is everything the server reads from flags and the environment. Each field names
// its flag and its environment variable; a flag wins over its variable, which wins over
// the default. go-envconfig does the typing and defaults; flags are registered from the
// same tags, so one line declares a setting.
type config struct {
	Listen               string        `flag:"listen" env:"FS_LISTEN, default=127.0.0.1:50051" usage:"gRPC listen address"`
	DynamoDBEndpoint     string        `flag:"dynamodb-endpoint" env:"FS_DYNAMODB_ENDPOINT" usage:"DynamoDB endpoint URL (empty: AWS from the environment; e.g. http://127.0.0.1:8000 for DynamoDB Local)"`
	Region               string        `flag:"region" env:"AWS_REGION, default=us-east-1" usage:"AWS region"`
	TablePrefix          string        `flag:"table-prefix" env:"FS_TABLE_PREFIX" usage:"prefix for the DynamoDB table names"`
	CreateTables         bool          `flag:"create-tables" env:"FS_CREATE_TABLES, default=true" usage:"create missing tables, the GSIs and TTL at start-up"`
	ValkeyAddrs          []string      `flag:"valkey" env:"FS_VALKEY_ADDRS, default=127.0.0.1:6379" usage:"comma-separated ValKey addresses (one for standalone, seed nodes for a cluster)"`
	ValkeyReplicas       int           `flag:"valkey-replicas" env:"FS_VALKEY_REPLICAS, default=0" usage:"replicas that must acknowledge (WAIT) each cache change a failover must not lose (a write's marker before DynamoDB is written, its publish, a reader's prepare and record); set it to the replicas per primary, so a failover cannot serve a value older than an acknowledged write (checked against ValKey at start)"`
	ValkeyUsername       string        `flag:"valkey-username" env:"FS_VALKEY_USERNAME" usage:"ValKey ACL user (empty: the default user)"`
	ValkeyPassword       string        `flag:"valkey-password" env:"FS_VALKEY_PASSWORD" usage:"ValKey password; prefer the variable or -valkey-password-file to a flag"`
	ValkeyPasswordFile   string        `flag:"valkey-password-file" env:"FS_VALKEY_PASSWORD_FILE" usage:"file holding the ValKey password (e.g. a mounted secret)"`
	ValkeyTLS            bool          `flag:"valkey-tls" env:"FS_VALKEY_TLS, default=false" usage:"connect to ValKey over TLS"`
	ValkeyTLSCA          string        `flag:"valkey-tls-ca" env:"FS_VALKEY_TLS_CA" usage:"CA (PEM) that signs ValKey's certificate (default: the system roots)"`
	ValkeyTLSCert        string        `flag:"valkey-tls-cert" env:"FS_VALKEY_TLS_CERT" usage:"client certificate (PEM) for ValKey's tls-auth-clients"`
	ValkeyTLSKey         string        `flag:"valkey-tls-key" env:"FS_VALKEY_TLS_KEY" usage:"client key (PEM) for ValKey"`
	ValkeyTLSServerName  string        `flag:"valkey-tls-server-name" env:"FS_VALKEY_TLS_SERVER_NAME" usage:"name to verify ValKey's certificate against (default: the address's host)"`
	ValueTTL             time.Duration `flag:"value-ttl" env:"FS_VALUE_TTL, default=24h" usage:"how long a cached value lives untouched"`
	WriteTimeout         time.Duration `flag:"write-timeout" env:"FS_WRITE_TIMEOUT, default=2s" usage:"deadline of a write's DynamoDB commit; must be shorter than -lease"`
	Lease                time.Duration `flag:"lease" env:"FS_LEASE, default=3s" usage:"how long a writer's cache marker holds before readers may heal it"`
	PutWindow            time.Duration `flag:"put-window" env:"FS_PUT_WINDOW, default=500ms" usage:"how long one conditional DynamoDB put may take from its cache check; a slower put is abandoned (outcome unknown); must be shorter than -horizon"`
	Horizon              time.Duration `flag:"horizon" env:"FS_HORIZON, default=1s" usage:"after a cache loss, how long what readers put back stays provisional; also how long a read the cache cannot record waits before answering from DynamoDB"`
	StartupTimeout       time.Duration `flag:"startup-timeout" env:"FS_STARTUP_TIMEOUT, default=30s" usage:"how long to wait for DynamoDB and ValKey at start-up"`
	ShutdownTimeout      time.Duration `flag:"shutdown-timeout" env:"FS_SHUTDOWN_TIMEOUT, default=10s" usage:"how long to drain in-flight RPCs on SIGTERM"`
	DrainDelay           time.Duration `flag:"drain-delay" env:"FS_DRAIN_DELAY, default=0s" usage:"on SIGTERM, how long health reports NOT_SERVING while still serving, before draining (let load balancers notice)"`
	GdprRate             float64       `flag:"gdpr-rate" env:"FS_GDPR_RATE, default=100" usage:"items each replica's deletion worker erases per second at most"`
	GdprIndexSettle      time.Duration `flag:"gdpr-index-settle" env:"FS_GDPR_INDEX_SETTLE, default=5s" usage:"how long the by_subject index must stay empty before a deletion is done; must exceed the index's propagation delay"`
	GdprRetention        time.Duration `flag:"gdpr-retention" env:"FS_GDPR_RETENTION, default=26280h" usage:"how long deletion jobs and their audit trail are kept (DynamoDB TTL; default 3 years)"`
	GdprHashKey          string        `flag:"gdpr-hash-key" env:"FS_GDPR_HASH_KEY" usage:"secret (32+ bytes) keying the hashes of subject ids in tombstones and the audit trail; prefer the variable or -gdpr-hash-key-file to a flag; required when -auth-policy is set"`
	GdprHashKeyFile      string        `flag:"gdpr-hash-key-file" env:"FS_GDPR_HASH_KEY_FILE" usage:"file holding the GDPR hash key (e.g. a mounted Kubernetes secret)"`
	AuthPolicy           string        `flag:"auth-policy" env:"FS_AUTH_POLICY" usage:"YAML access policy: bearer tokens and per-identity rules (see README); empty: no authentication"`
	TLSCert              string        `flag:"tls-cert" env:"FS_TLS_CERT" usage:"server certificate (PEM) for TLS"`
	TLSKey               string        `flag:"tls-key" env:"FS_TLS_KEY" usage:"server key (PEM) for TLS"`
	TLSClientCA          string        `flag:"tls-client-ca" env:"FS_TLS_CLIENT_CA" usage:"CA (PEM) that signs client certificates: their common name is the caller's identity (mTLS)"`
	RequireClientCert    bool          `flag:"tls-require-client-cert" env:"FS_TLS_REQUIRE_CLIENT_CERT, default=false" usage:"refuse TLS connections without a client certificate (default: verify one when given, and let callers without one use a token)"`
	AllowPlaintextTokens bool          `flag:"allow-plaintext-tokens" env:"FS_ALLOW_PLAINTEXT_TOKENS, default=false" usage:"accept bearer tokens without TLS on a non-loopback address (only behind a proxy that terminates TLS)"`
	Insecure             bool          `flag:"insecure" env:"FS_INSECURE, default=false" usage:"allow serving without authentication on a non-loopback address (the gRPC port without -auth-policy, and -pprof)"`
	MaxResponseBytes     int           `flag:"max-response-bytes" env:"FS_MAX_RESPONSE_BYTES, default=33554432" usage:"largest response of a read; larger is RESOURCE_EXHAUSTED (repeated entities and features count each time)"`
	MaxFutureSkew        time.Duration `flag:"max-future-skew" env:"FS_MAX_FUTURE_SKEW, default=1h" usage:"how far ahead of the server's clock an event time may be; later rows are INVALID_ARGUMENT or REJECTED"`
	RPCTimeout           time.Duration `flag:"rpc-timeout" env:"FS_RPC_TIMEOUT, default=10s" usage:"deadline of a unary RPC whose client set none; when it passes the call is UNAVAILABLE (retry)"`
	MaxMessageBytes      int           `flag:"max-message-bytes" env:"FS_MAX_MESSAGE_BYTES, default=16777216" usage:"largest request message accepted"`
	HealthListen         string        `flag:"health-listen" env:"FS_HEALTH_LISTEN" usage:"address of a plaintext listener that serves only grpc.health.v1, for probes (kubelet's gRPC probe speaks no TLS); empty disables it"`
	MaxConnAge           time.Duration `flag:"max-connection-age" env:"FS_MAX_CONNECTION_AGE, default=5m" usage:"close client connections after about this long (with jitter), so clients re-resolve and spread over new replicas"`
	MaxConnAgeGrace      time.Duration `flag:"max-connection-age-grace" env:"FS_MAX_CONNECTION_AGE_GRACE, default=1m" usage:"how long RPCs (and streams) on an aged connection may finish before it is closed"`
	KeepaliveMinTime     time.Duration `flag:"keepalive-min-time" env:"FS_KEEPALIVE_MIN_TIME, default=10s" usage:"the most often a client may ping; faster pingers are disconnected"`
	MaxStreams           uint32        `flag:"max-concurrent-streams" env:"FS_MAX_CONCURRENT_STREAMS, default=100" usage:"concurrent streams (RPCs) per connection"`
	MetricsListen        string        `flag:"metrics-listen" env:"FS_METRICS_LISTEN, default=127.0.0.1:9464" usage:"address of the HTTP listener serving Prometheus /metrics and the registry page /ui/ (HTTPS with -tls-cert); empty disables it"`
	UI                   bool          `flag:"ui" env:"FS_UI, default=true" usage:"serve the read-only registry page under /ui/ on the -metrics-listen listener"`
	UIAllowRemote        bool          `flag:"ui-allow-remote" env:"FS_UI_ALLOW_REMOTE, default=false" usage:"serve the registry page without an access policy on a non-loopback -metrics-listen (anyone who reaches it sees every set)"`
	UISessionKeyFile     string        `flag:"ui-session-key-file" env:"FS_UI_SESSION_KEY_FILE" usage:"file holding the key (32+ bytes) that signs the registry page's session cookies; replicas sharing it accept each other's sessions (default: a random key per process)"`
	FreshnessInterval    time.Duration `flag:"freshness-interval" env:"FS_FRESHNESS_INTERVAL, default=10s" usage:"how often each replica adds the rows it wrote to the sets' stored freshness: one write per set written to, per interval and replica"`
	Pprof                bool          `flag:"pprof" env:"FS_PPROF, default=false" usage:"also serve net/http/pprof under /debug/pprof/ on the metrics listener; on a non-loopback -metrics-listen only with -insecure"`
	OTLPEndpoint         string        `flag:"otlp-endpoint" env:"OTEL_EXPORTER_OTLP_ENDPOINT" usage:"OTLP/gRPC collector (host:port) for traces and metrics; empty disables export"`
	OTLPInsecure         bool          `flag:"otlp-insecure" env:"FS_OTLP_INSECURE, default=false" usage:"send OTLP without TLS"`
	LogLevel             slog.Level    `flag:"log-level" env:"FS_LOG_LEVEL, default=info" usage:"debug, info, warn or error"`
	LogFormat            string        `flag:"log-format" env:"FS_LOG_FORMAT, default=text" usage:"text or json"`
}

// setting is one field's flag, variable and default, read from its tags.
type setting struct {
	field, flag, env, def, usage string
	// isBool: the field is a bool, so its flag may be given alone ("-insecure").
	isBool bool
}

// textFlag holds a flag's text for envconfig to parse with the variables. A boolean
// setting's flag says so to package flag, so that "-pprof" alone means "-pprof=true", as
// the README writes it; without that, "-pprof -insecure" would take "-insecure" as
// -pprof's value.
type textFlag struct {
	v      *string
	isBool bool
}

func (f *textFlag) String() string {
	if f == nil || f.v == nil {
		return ""
	}
	return *f.v
}

func (f *textFlag) Set(s string) error { *f.v = s; return nil }

func (f *textFlag) IsBoolFlag() bool { return f.isBool }

func settings() []setting {
	t := reflect.TypeOf(config{})
	out := make([]setting, t.NumField())
	for i := range out {
		f := t.Field(i)
		env, opts, _ := strings.Cut(f.Tag.Get("env"), ",")
		def := ""
		for _, o := range strings.Split(opts, ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(o), "default="); ok {
				def = v
			}
		}
		out[i] = setting{field: f.Name, flag: f.Tag.Get("flag"), env: env, def: def, usage: f.Tag.Get("usage"), isBool: f.Type.Kind() == reflect.Bool}
	}
	return out
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fset := flag.NewFlagSet("featurestore", flag.ContinueOnError)
	fset.SetOutput(stderr)
	byEnv := map[string]*string{}
	for _, s := range settings() {
		v := new(string)
		byEnv[s.env] = v
		fset.Var(&textFlag{v: v, isBool: s.isBool}, s.flag, fmt.Sprintf("%s ($%s, default %q)", s.usage, s.env, s.def))
	}
	fset.Usage = func() {
		fmt.Fprintf(stderr, "Usage: featurestore [flags]\n\nServes the feature store over gRPC. Flags (and environment variables):\n")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return config{}, err
	}
	if fset.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %v", fset.Args())
	}
	// A flag that was given wins; an empty variable counts as unset.
	given := map[string]bool{}
	fset.Visit(func(f *flag.Flag) { given[f.Name] = true })
	lookup := envconfig.LookuperFunc(func(env string) (string, bool) {
		for _, s := range settings() {
			if s.env == env && given[s.flag] {
				return *byEnv[env], true
			}
		}
		v := getenv(env)
		return v, v != ""
	})
	var c config
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{Target: &c, Lookuper: lookup}); err != nil {
		// envconfig names the struct field; users know the flag and the variable.
		msg := err.Error()
		for _, s := range settings() {
			if rest, ok := strings.CutPrefix(msg, s.field+": "); ok {
				msg = fmt.Sprintf("-%s ($%s): %s", s.flag, s.env, rest)
			}
		}
		return config{}, errors.New(msg)
	}
	return c, c.validate()
}

// validate checks what the types alone do not.
func (c config) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("-listen: %w", err))
	}
	if len(c.ValkeyAddrs) == 0 || c.ValkeyAddrs[0] == "" {
		errs = append(errs, errors.New("-valkey: at least one address is required"))
	}
	for name, d := range map[string]time.Duration{"max-future-skew": c.MaxFutureSkew, "rpc-timeout": c.RPCTimeout, "max-connection-age": c.MaxConnAge, "max-connection-age-grace": c.MaxConnAgeGrace, "keepalive-min-time": c.KeepaliveMinTime, "value-ttl": c.ValueTTL, "write-timeout": c.WriteTimeout, "lease": c.Lease, "put-window": c.PutWindow, "horizon": c.Horizon,
		"startup-timeout": c.StartupTimeout, "shutdown-timeout": c.ShutdownTimeout, "gdpr-index-settle": c.GdprIndexSettle, "gdpr-retention": c.GdprRetention,
		"freshness-interval": c.FreshnessInterval} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("-%s: want a positive duration such as 2s, got %v", name, d))
		}
	}
	if c.ValkeyReplicas < 0 {
		errs = append(errs, fmt.Errorf("-valkey-replicas: must not be negative, got %d", c.ValkeyReplicas))
	}
	if c.DrainDelay < 0 {
		errs = append(errs, fmt.Errorf("-drain-delay: must not be negative, got %v", c.DrainDelay))
	}
	if c.GdprRate <= 0 {
		errs = append(errs, fmt.Errorf("-gdpr-rate: want a positive number of items per second, got %v", c.GdprRate))
	}
	if c.MaxResponseBytes < 1024 {
		errs = append(errs, fmt.Errorf("-max-response-bytes: want at least 1024, got %d", c.MaxResponseBytes))
	}
	if c.MaxStreams == 0 {
		errs = append(errs, errors.New("-max-concurrent-streams: want at least 1"))
	}
	if c.MaxMessageBytes < 1024 {
		errs = append(errs, fmt.Errorf("-max-message-bytes: want at least 1024, got %d", c.MaxMessageBytes))
	}
	if c.WriteTimeout >= c.Lease {
		errs = append(errs, fmt.Errorf("-write-timeout (%v) must be shorter than -lease (%v)", c.WriteTimeout, c.Lease))
	}
	if c.Horizon-c.PutWindow < writethrough.MinPutMargin {
		errs = append(errs, fmt.Errorf("-put-window (%v) must be at least %v shorter than -horizon (%v)", c.PutWindow, writethrough.MinPutMargin, c.Horizon))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("-log-format: want text or json, got %q", c.LogFormat))
	}
	if c.Pprof && c.MetricsListen == "" {
		errs = append(errs, errors.New("-pprof is served on the metrics listener: set -metrics-listen too"))
	}
	// Profiles are served without authentication, like /metrics, and cost CPU while they
	// run (a CPU profile or trace for as long as the caller asks): off the loopback
	// interface only when the operator says so.
	if c.Pprof && c.MetricsListen != "" && !loopback(c.MetricsListen) && !c.Insecure {
		errs = append(errs, fmt.Errorf("refusing to serve -pprof on %s, which is not a loopback address: use a loopback -metrics-listen (and kubectl port-forward), or -insecure if this is really wanted", c.MetricsListen))
	}
	if c.GdprHashKey != "" && c.GdprHashKeyFile != "" {
		errs = append(errs, errors.New("-gdpr-hash-key and -gdpr-hash-key-file: give one"))
	}
	return errors.Join(errs...)
}
