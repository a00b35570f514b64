// Command featurestore serves the online feature store over gRPC.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

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
	secOpts, err := securityOptions(cfg)
	if err != nil {
		return err
	}

	sctx, cancel := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancel()

	tel, err := telemetry.New(sctx, telemetry.Config{ServiceName: "featurestore", OTLPEndpoint: cfg.OTLPEndpoint, OTLPInsecure: cfg.OTLPInsecure})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sd, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sd)
	}()

	cache, err := valkey.Dial(sctx, cfg.ValkeyAddrs, valkey.Options{ValueTTL: cfg.ValueTTL, Horizon: cfg.Lease, Tracer: tel.Tracer("valkey")})
	if err != nil {
		return fmt.Errorf("valkey unreachable (is it running? -valkey / FS_VALKEY_ADDRS): %w", err)
	}
	defer cache.Close()

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

	deletions := gdpr.NewStore(ddb, tables.Deletions)
	store, err := writethrough.New(db, cache, featurestore.SystemClock{}, writethrough.Config{
		WriteTimeout: cfg.WriteTimeout,
		Lease:        cfg.Lease,
		Metrics:      tel,
	}, logger)
	if err != nil {
		return err
	}
	svc := featurestore.New(store, db, deletions, featurestore.SystemClock{}, featurestore.Config{}, logger)

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	eraser := gdpr.New(deletions, svc, db, featurestore.SystemClock{}, gdpr.Config{Rate: cfg.GdprRate, Settle: cfg.GdprIndexSettle, WriteTimeout: cfg.WriteTimeout, Metrics: tel}, logger)
	grpcOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tel.TracerProvider()), otelgrpc.WithMeterProvider(tel.MeterProvider()))),
	}, secOpts...)
	g := server.NewGRPC(server.New(svc, logger, server.Options{Metrics: tel}), server.NewGdpr(eraser, logger), logger, grpcOpts...)
	addr := lis.Addr().String()
	logger.Info("serving", "addr", addr, "dynamodb", endpointName(cfg.DynamoDBEndpoint), "valkey", cfg.ValkeyAddrs)
	fmt.Fprintf(stdout, "listening on %s\n", addr)

	eg, ectx := errgroup.WithContext(ctx)
	if cfg.MetricsListen != "" {
		mlis, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("listen on %s for metrics: %w", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", tel.Handler())
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", mlis.Addr())
		eg.Go(func() error {
			if err := hs.Serve(mlis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		eg.Go(func() error {
			<-ectx.Done()
			return hs.Close()
		})
	}
	eg.Go(func() error { return store.Run(ectx) })
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
		return nil
	})
	err = eg.Wait()
	logger.Info("stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
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
