// Command featurestore serves the online feature store over gRPC.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/telemetry"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/gdpr"
	"github.com/dsfeatures/featurestore/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "featurestore:", err)
		}
		os.Exit(1)
	}
}

// run wires the server and serves until ctx ends. It prints "listening on ADDR" to stdout
// once the port is open.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	sec, err := securityOptions(cfg, logger)
	if err != nil {
		return err
	}

	sctx, cancel := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancel()

	otlp := strings.TrimPrefix(strings.TrimPrefix(cfg.OTLPEndpoint, "http://"), "https://")
	tel, err := telemetry.New(sctx, telemetry.Config{ServiceName: "featurestore", OTLPEndpoint: otlp, OTLPInsecure: cfg.OTLPInsecure})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sd, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sd)
	}()

	vopts, err := valkeyOptions(cfg)
	if err != nil {
		return err
	}
	vopts.ValueTTL, vopts.Horizon, vopts.Tracer, vopts.Metrics = cfg.ValueTTL, cfg.Horizon, tel.Tracer("valkey"), tel
	cache, err := valkey.Dial(sctx, cfg.ValkeyAddrs, vopts)
	if err != nil {
		return fmt.Errorf("valkey unreachable (is it running? -valkey / FS_VALKEY_ADDRS): %w", err)
	}
	defer cache.Close()
	if err := checkReplicas(sctx, cache, cfg.ValkeyReplicas, logger); err != nil {
		return err
	}

	awsCfg, err := dynamo.LoadConfig(sctx, cfg.Region, cfg.DynamoDBEndpoint)
	if err != nil {
		return err
	}
	ddb := dynamo.NewClient(awsCfg, cfg.DynamoDBEndpoint, dynamo.Instrument(tel, tel.Tracer("dynamodb")))
	tables := dynamo.TablesWithPrefix(cfg.TablePrefix)
	db := dynamo.New(ddb, tables)
	if cfg.CreateTables {
		if err := db.EnsureTables(sctx); err != nil {
			return fmt.Errorf("dynamodb unreachable or tables not creatable (-dynamodb-endpoint %q): %w", cfg.DynamoDBEndpoint, err)
		}
	} else if _, _, err := db.ListItems(sctx, featurestore.SetsTable, "", 1); err != nil {
		return fmt.Errorf("dynamodb unreachable or tables missing (run 'fsctl create-tables'): %w", err)
	}

	keyer, err := gdprKeyer(cfg, logger)
	if err != nil {
		return err
	}
	deletions := dynamo.NewDeletions(ddb, tables.Deletions, keyer.SubjectKey)
	store, err := writethrough.New(db, cache, featurestore.SystemClock{}, writethrough.Config{
		WriteTimeout: cfg.WriteTimeout,
		Lease:        cfg.Lease,
		PutWindow:    cfg.PutWindow,
		Horizon:      cfg.Horizon,
		Metrics:      tel,
	}, logger)
	if err != nil {
		return err
	}
	svc := featurestore.New(store, db, deletions, featurestore.SystemClock{}, featurestore.Config{
		MaxFutureSkew: cfg.MaxFutureSkew, MaxResponseBytes: cfg.MaxResponseBytes, FreshnessInterval: cfg.FreshnessInterval,
	}, logger)

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	eraser := gdpr.New(deletions, keyer, svc, db, featurestore.SystemClock{}, gdpr.Config{
		Rate: cfg.GdprRate, Settle: cfg.GdprIndexSettle, WriteTimeout: cfg.WriteTimeout, Retention: cfg.GdprRetention, Metrics: tel,
	}, logger)
	grpcOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.MaxConcurrentStreams(cfg.MaxStreams),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tel.TracerProvider()), otelgrpc.WithMeterProvider(tel.MeterProvider()))),
	}, append(connectionOptions(cfg), sec.opts...)...)
	g := server.NewGRPC(server.New(svc, logger, server.Options{Metrics: tel, Auth: sec.auth, RPCTimeout: cfg.RPCTimeout}), server.NewGdpr(eraser, logger), logger, grpcOpts...)
	addr := lis.Addr().String()

	eg, ectx := errgroup.WithContext(ctx)
	var healthSrv *grpc.Server
	if cfg.HealthListen != "" {
		hlis, err := net.Listen("tcp", cfg.HealthListen)
		if err != nil {
			return fmt.Errorf("listen on %s for health: %w", cfg.HealthListen, err)
		}
		// The same health state as the main port, and nothing else: no credentials are
		// needed because nothing but SERVING / NOT_SERVING can be learned here.
		healthSrv = grpc.NewServer(grpc.MaxConcurrentStreams(16))
		healthpb.RegisterHealthServer(healthSrv, g.Health)
		fmt.Fprintf(stdout, "health on %s\n", hlis.Addr())
		eg.Go(func() error { return healthSrv.Serve(hlis) })
	}
	if cfg.MetricsListen != "" {
		if err := serveHTTP(ectx, eg, cfg, stdout, logger, sec, tel.Handler(), svc, eraser); err != nil {
			return err
		}
	}
	// Every listener is bound now, so whoever waits for this line can reach all of them
	// (connections queue until the servers accept them).
	logger.Info("serving", "addr", addr, "dynamodb", endpointName(cfg.DynamoDBEndpoint), "valkey", cfg.ValkeyAddrs)
	fmt.Fprintf(stdout, "listening on %s\n", addr)
	eg.Go(func() error { return store.Run(ectx) })
	eg.Go(func() error { return svc.RunFreshness(ectx) })
	eg.Go(func() error { return eraser.Run(ectx) })
	eg.Go(func() error { return g.Serve(lis) })
	eg.Go(func() error {
		<-ectx.Done()
		// Health goes NOT_SERVING first, while still serving, so load balancers stop
		// sending new RPCs before the drain refuses them.
		g.Health.Shutdown()
		if cfg.DrainDelay > 0 {
			logger.Info("draining: health is NOT_SERVING", "delay", cfg.DrainDelay)
			time.Sleep(cfg.DrainDelay)
		}
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(cfg.ShutdownTimeout):
			logger.Warn("drain timed out; closing remaining RPCs")
			g.Stop()
		}
		if healthSrv != nil {
			healthSrv.Stop()
		}
		return nil
	})
	err = eg.Wait()
	logger.Info("stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// connectionOptions bound connection lifetimes and police keepalives:
//   - MaxConnectionAge closes each connection after a while (gRPC adds ±10% jitter and a
//     GOAWAY), so clients reconnect, re-resolve DNS and spread over replicas the
//     autoscaler added; otherwise new pods get no traffic from clients already connected.
//   - MaxConnectionAgeGrace lets RPCs on an aged connection finish; long streams (imports)
//     are cut after it and resume on a new connection (the client resends what was not
//     acknowledged), so it must be finite.
//   - Time/Timeout ping idle connections so dead peers (a vanished NAT entry, a killed
//     pod) are noticed in about a minute rather than at the next write.
//   - The enforcement policy refuses clients pinging more often than KeepaliveMinTime, a
//     cheap way to keep a misbehaving client from burning the server's CPU.
func connectionOptions(cfg config) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      cfg.MaxConnAge,
			MaxConnectionAgeGrace: cfg.MaxConnAgeGrace,
			Time:                  time.Minute,
			Timeout:               20 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
	}
}

// devGdprHashKey keys subject hashes when no key is configured and authentication is off
// (a development server on loopback). It is not a secret.
const devGdprHashKey = "featurestore-development-gdpr-key-not-a-secret"

// gdprKeyer builds the subject hasher from -gdpr-hash-key or -gdpr-hash-key-file. With
// authentication on a key is required: an unkeyed hash of a subject id is reversed by
// anyone holding a list of ids.
func gdprKeyer(cfg config, logger *slog.Logger) (*gdpr.Keyer, error) {
	secret := []byte(cfg.GdprHashKey)
	if cfg.GdprHashKeyFile != "" {
		b, err := os.ReadFile(cfg.GdprHashKeyFile)
		if err != nil {
			return nil, fmt.Errorf("-gdpr-hash-key-file: %w", err)
		}
		secret = bytes.TrimSpace(b)
	}
	if len(secret) == 0 {
		if cfg.AuthPolicy != "" {
			return nil, errors.New("a GDPR hash key is required when authentication is on: set FS_GDPR_HASH_KEY or -gdpr-hash-key-file (32+ random bytes)")
		}
		logger.Warn("no GDPR hash key configured; using the development key (set FS_GDPR_HASH_KEY in production)")
		secret = []byte(devGdprHashKey)
	}
	k, err := gdpr.NewKeyer(secret)
	if err != nil {
		return nil, fmt.Errorf("GDPR hash key: %w", err)
	}
	return k, nil
}

func endpointName(e string) string {
	if e == "" {
		return "aws"
	}
	return e
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	o := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// checkReplicas refuses to start when -valkey-replicas does not fit ValKey's replicas:
// too many, and every write would fail waiting for them; too few, and a failover could
// serve a value older than an acknowledged write. When ValKey does not say (an ACL
// without CLUSTER SHARDS and INFO), it logs a warning and goes on.
func checkReplicas(ctx context.Context, cache *valkey.Cache, want int, logger *slog.Logger) error {
	r, err := cache.Replication(ctx)
	if err != nil {
		logger.WarnContext(ctx, "could not check -valkey-replicas against ValKey's replicas", "valkey_replicas", want, "err", err)
		return nil
	}
	if err := r.Check(want); err != nil {
		return fmt.Errorf("-valkey-replicas (FS_VALKEY_REPLICAS) %d: %w", want, err)
	}
	logger.InfoContext(ctx, "valkey replication checked", "topology", r.String(), "valkey_replicas", want)
	return nil
}
