package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// config is everything the server reads from flags and the environment. A flag wins over
// its environment variable, which wins over the default.
type config struct {
	Listen           string
	DynamoDBEndpoint string
	Region           string
	TablePrefix      string
	CreateTables     bool
	ValkeyAddrs      []string
	ValueTTL         time.Duration
	WriteTimeout     time.Duration
	Lease            time.Duration
	StartupTimeout   time.Duration
	ShutdownTimeout  time.Duration
	DrainDelay       time.Duration
	GdprRate         float64
	GdprIndexSettle  time.Duration
	AuthPolicy       string
	TLSCert          string
	TLSKey           string
	TLSClientCA      string
	Insecure         bool
	MaxMessageBytes  int
	MetricsListen    string
	OTLPEndpoint     string
	OTLPInsecure     bool
	LogLevel         slog.Level
	LogFormat        string
}

// envFlag documents one setting: its flag, its environment variable and its default.
type envFlag struct {
	name, env, def, usage string
}

var settings = []envFlag{
	{"listen", "FS_LISTEN", "127.0.0.1:50051", "gRPC listen address"},
	{"dynamodb-endpoint", "FS_DYNAMODB_ENDPOINT", "", "DynamoDB endpoint URL (empty: AWS from the environment; e.g. http://127.0.0.1:8000 for DynamoDB Local)"},
	{"region", "AWS_REGION", "us-east-1", "AWS region"},
	{"table-prefix", "FS_TABLE_PREFIX", "", "prefix for the DynamoDB table names"},
	{"create-tables", "FS_CREATE_TABLES", "true", "create missing tables, the by_subject GSI and TTL at start-up"},
	{"valkey", "FS_VALKEY_ADDRS", "127.0.0.1:6379", "comma-separated ValKey addresses (one for standalone, seed nodes for a cluster)"},
	{"value-ttl", "FS_VALUE_TTL", "24h", "how long a cached value lives untouched"},
	{"write-timeout", "FS_WRITE_TIMEOUT", "2s", "deadline of a write's DynamoDB commit; must be shorter than -lease"},
	{"lease", "FS_LEASE", "3s", "how long a writer's cache marker holds before readers may heal it; also the horizon after a cache loss"},
	{"startup-timeout", "FS_STARTUP_TIMEOUT", "30s", "how long to wait for DynamoDB and ValKey at start-up"},
	{"shutdown-timeout", "FS_SHUTDOWN_TIMEOUT", "10s", "how long to drain in-flight RPCs on SIGTERM"},
	{"drain-delay", "FS_DRAIN_DELAY", "0s", "on SIGTERM, how long health reports NOT_SERVING while still serving, before draining (let load balancers notice)"},
	{"gdpr-rate", "FS_GDPR_RATE", "100", "items each replica's deletion worker erases per second at most"},
	{"gdpr-index-settle", "FS_GDPR_INDEX_SETTLE", "5s", "how long the by_subject index must stay empty before a deletion is done; must exceed the index's propagation delay"},
	{"auth-policy", "FS_AUTH_POLICY", "", "YAML access policy: bearer tokens and per-identity rules (see README); empty: no authentication"},
	{"tls-cert", "FS_TLS_CERT", "", "server certificate (PEM) for TLS"},
	{"tls-key", "FS_TLS_KEY", "", "server key (PEM) for TLS"},
	{"tls-client-ca", "FS_TLS_CLIENT_CA", "", "CA (PEM) that signs client certificates: their common name is the caller's identity (mTLS)"},
	{"insecure", "FS_INSECURE", "false", "allow serving without authentication on a non-loopback address"},
	{"max-message-bytes", "FS_MAX_MESSAGE_BYTES", "16777216", "largest request message accepted"},
	{"metrics-listen", "FS_METRICS_LISTEN", "127.0.0.1:9464", "address of the Prometheus /metrics endpoint; empty disables it"},
	{"otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", "", "OTLP/gRPC collector (host:port) for traces and metrics; empty disables export"},
	{"otlp-insecure", "FS_OTLP_INSECURE", "false", "send OTLP without TLS"},
	{"log-level", "FS_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"log-format", "FS_LOG_FORMAT", "text", "text or json"},
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fset := flag.NewFlagSet("featurestore", flag.ContinueOnError)
	fset.SetOutput(stderr)
	vals := make(map[string]*string, len(settings))
	for _, s := range settings {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		vals[s.name] = fset.String(s.name, def, s.usage+" ($"+s.env+")")
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
	var c config
	var errs []error
	dur := func(name string) time.Duration {
		d, err := time.ParseDuration(*vals[name])
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("-%s: want a positive duration such as 2s, got %q", name, *vals[name]))
		}
		return d
	}
	c.Listen = *vals["listen"]
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("-listen: %w", err))
	}
	c.DynamoDBEndpoint = *vals["dynamodb-endpoint"]
	c.Region = *vals["region"]
	c.TablePrefix = *vals["table-prefix"]
	var err error
	if c.CreateTables, err = strconv.ParseBool(*vals["create-tables"]); err != nil {
		errs = append(errs, fmt.Errorf("-create-tables: want true or false, got %q", *vals["create-tables"]))
	}
	for _, a := range strings.Split(*vals["valkey"], ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.ValkeyAddrs = append(c.ValkeyAddrs, a)
		}
	}
	if len(c.ValkeyAddrs) == 0 {
		errs = append(errs, errors.New("-valkey: at least one address is required"))
	}
	c.ValueTTL = dur("value-ttl")
	c.WriteTimeout = dur("write-timeout")
	c.Lease = dur("lease")
	c.StartupTimeout = dur("startup-timeout")
	c.ShutdownTimeout = dur("shutdown-timeout")
	if c.DrainDelay, err = time.ParseDuration(*vals["drain-delay"]); err != nil || c.DrainDelay < 0 {
		errs = append(errs, fmt.Errorf("-drain-delay: want a duration such as 5s, got %q", *vals["drain-delay"]))
	}
	c.GdprIndexSettle = dur("gdpr-index-settle")
	if c.GdprRate, err = strconv.ParseFloat(*vals["gdpr-rate"], 64); err != nil || c.GdprRate <= 0 {
		errs = append(errs, fmt.Errorf("-gdpr-rate: want a positive number of items per second, got %q", *vals["gdpr-rate"]))
	}
	c.AuthPolicy, c.TLSCert, c.TLSKey, c.TLSClientCA = *vals["auth-policy"], *vals["tls-cert"], *vals["tls-key"], *vals["tls-client-ca"]
	if c.Insecure, err = strconv.ParseBool(*vals["insecure"]); err != nil {
		errs = append(errs, fmt.Errorf("-insecure: want true or false, got %q", *vals["insecure"]))
	}
	if c.MaxMessageBytes, err = strconv.Atoi(*vals["max-message-bytes"]); err != nil || c.MaxMessageBytes < 1024 {
		errs = append(errs, fmt.Errorf("-max-message-bytes: want a number of bytes of at least 1024, got %q", *vals["max-message-bytes"]))
	}
	c.MetricsListen = *vals["metrics-listen"]
	c.OTLPEndpoint = strings.TrimPrefix(strings.TrimPrefix(*vals["otlp-endpoint"], "http://"), "https://")
	if c.OTLPInsecure, err = strconv.ParseBool(*vals["otlp-insecure"]); err != nil {
		errs = append(errs, fmt.Errorf("-otlp-insecure: want true or false, got %q", *vals["otlp-insecure"]))
	}
	if c.WriteTimeout >= c.Lease {
		errs = append(errs, fmt.Errorf("-write-timeout (%v) must be shorter than -lease (%v)", c.WriteTimeout, c.Lease))
	}
	if err := c.LogLevel.UnmarshalText([]byte(*vals["log-level"])); err != nil {
		errs = append(errs, fmt.Errorf("-log-level: %w", err))
	}
	c.LogFormat = *vals["log-format"]
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("-log-format: want text or json, got %q", c.LogFormat))
	}
	return c, errors.Join(errs...)
}
