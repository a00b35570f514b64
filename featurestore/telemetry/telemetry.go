// Package telemetry sets up OpenTelemetry for the feature store: a meter provider that
// serves Prometheus text on /metrics (and pushes over OTLP when an endpoint is
// configured), a tracer provider that exports over OTLP when configured, and the
// instruments behind the metrics interfaces of featurestore, server, dynamo and gdpr.
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"
)

// Config configures telemetry.
type Config struct {
	ServiceName string
	// OTLPEndpoint (host:port of an OTLP/gRPC collector) enables trace and metric export;
	// empty disables it (metrics are still served on /metrics).
	OTLPEndpoint string
	// OTLPInsecure sends OTLP without TLS (a collector on the same host or in the mesh).
	OTLPInsecure bool
}

// Telemetry holds the providers and instruments.
type Telemetry struct {
	meters  *sdkmetric.MeterProvider
	tracers *sdktrace.TracerProvider
	handler http.Handler

	rpcRequests, cacheLookups, populates, repairs, dynamoAttempts, rows, gdprJobs, misbound metric.Int64Counter
	coalesced, unrecorded, renewed, healed, lostTokens                                      metric.Int64Counter
	rpcDuration                                                                             metric.Float64Histogram
}

// New builds the providers. Call Shutdown to flush.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName)))
	if err != nil {
		return nil, err
	}
	reg := promclient.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(exp)}
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if cfg.OTLPEndpoint != "" {
		me := []otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(cfg.OTLPEndpoint)}
		te := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
		if cfg.OTLPInsecure {
			me = append(me, otlpmetricgrpc.WithInsecure())
			te = append(te, otlptracegrpc.WithInsecure())
		}
		mexp, err := otlpmetricgrpc.New(ctx, me...)
		if err != nil {
			return nil, err
		}
		texp, err := otlptracegrpc.New(ctx, te...)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(15*time.Second))))
		topts = append(topts, sdktrace.WithBatcher(texp))
	}
	t := &Telemetry{
		meters:  sdkmetric.NewMeterProvider(mopts...),
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}
	if cfg.OTLPEndpoint != "" {
		t.tracers = sdktrace.NewTracerProvider(topts...)
	}
	m := t.meters.Meter("featurestore")
	counters := []struct {
		c         *metric.Int64Counter
		name, doc string
	}{
		{&t.rpcRequests, "featurestore.rpc.requests", "RPCs by method and status code"},
		{&t.cacheLookups, "featurestore.cache.lookups", "keys read from the cache, by result: hit, dirty (read from DynamoDB), miss"},
		{&t.misbound, "featurestore.cache.misbound", "cache entries found under a key they are not bound to (copied or renamed there), read from DynamoDB instead"},
		{&t.populates, "featurestore.cache.populates", "keys a read put back into the cache (stored) or that the cache refused"},
		{&t.coalesced, "featurestore.cache.coalesced", "keys a read answered after waiting for another read of this replica to heal them, with its item or from the cache (no DynamoDB read of its own)"},
		{&t.unrecorded, "featurestore.cache.unrecorded", "keys a read served from DynamoDB that the cache could not record, so the read waited out the horizon after a loss first"},
		{&t.renewed, "featurestore.cache.renewed", "keys put back provisionally after a cache loss and renewed for good past their horizon (each one read from DynamoDB once more)"},
		{&t.healed, "featurestore.cache.healed", "keys read ahead of their readers when many keys this replica served recently went missing from the cache at once (a flush, a restart), healed together in one batched read"},
		{&t.lostTokens, "featurestore.cache.lost_tokens", "keys whose writer found its cache marker lost (flush, eviction, restart) before its put and put it back"},
		{&t.repairs, "featurestore.publish.repairs", "background repairs of failed publishes, by result"},
		{&t.dynamoAttempts, "featurestore.dynamodb.attempts", "DynamoDB attempts (retries included) by operation and result: ok, throttled, error"},
		{&t.rows, "featurestore.rows", "written rows by lane and status: written, stale, rejected"},
		{&t.gdprJobs, "featurestore.gdpr.jobs", "GDPR deletion jobs by event: requested, done, failed"},
	}
	for _, c := range counters {
		if *c.c, err = m.Int64Counter(c.name, metric.WithDescription(c.doc)); err != nil {
			return nil, err
		}
	}
	if t.rpcDuration, err = m.Float64Histogram("featurestore.rpc.duration", metric.WithUnit("s"), metric.WithDescription("RPC latency by method and status code"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)); err != nil {
		return nil, err
	}
	return t, nil
}

// Handler serves Prometheus text exposition.
func (t *Telemetry) Handler() http.Handler { return t.handler }

// Tracer returns a tracer for name; a no-op one when no OTLP endpoint is configured.
func (t *Telemetry) Tracer(name string) trace.Tracer {
	if t.tracers == nil {
		return noop.NewTracerProvider().Tracer(name)
	}
	return t.tracers.Tracer(name)
}

// TracerProvider is for instrumentation libraries (otelgrpc); nil without OTLP.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t.tracers == nil {
		return noop.NewTracerProvider()
	}
	return t.tracers
}

// MeterProvider is for instrumentation libraries.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meters }

// Shutdown flushes and stops exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.tracers != nil {
		errs = append(errs, t.tracers.Shutdown(ctx))
	}
	errs = append(errs, t.meters.Shutdown(ctx))
	return errors.Join(errs...)
}

func attrs(kv ...attribute.KeyValue) metric.MeasurementOption { return metric.WithAttributes(kv...) }

// RPC implements server.Metrics.
func (t *Telemetry) RPC(ctx context.Context, method string, code codes.Code, d time.Duration) {
	a := attrs(attribute.String("rpc", method), attribute.String("code", code.String()))
	t.rpcRequests.Add(ctx, 1, a)
	t.rpcDuration.Record(ctx, d.Seconds(), a)
}

// add records n (if any) on c with one attribute; it runs on every request, so it builds
// nothing it does not need.
func add(ctx context.Context, c metric.Int64Counter, n int, kv ...attribute.KeyValue) {
	if n > 0 {
		c.Add(ctx, int64(n), metric.WithAttributes(kv...))
	}
}

// Rows implements server.Metrics.
func (t *Telemetry) Rows(ctx context.Context, lane string, written, stale, rejected int) {
	l := attribute.String("lane", lane)
	add(ctx, t.rows, written, l, attribute.String("status", "written"))
	add(ctx, t.rows, stale, l, attribute.String("status", "stale"))
	add(ctx, t.rows, rejected, l, attribute.String("status", "rejected"))
}

// CacheLookups implements featurestore.Metrics.
func (t *Telemetry) CacheLookups(ctx context.Context, hits, dirty, missing int) {
	add(ctx, t.cacheLookups, hits, attribute.String("result", "hit"))
	add(ctx, t.cacheLookups, dirty, attribute.String("result", "dirty"))
	add(ctx, t.cacheLookups, missing, attribute.String("result", "miss"))
}

// CacheMisbound implements valkey.Metrics.
func (t *Telemetry) CacheMisbound(ctx context.Context, n int) { add(ctx, t.misbound, n) }

// Populates implements featurestore.Metrics.
func (t *Telemetry) Populates(ctx context.Context, stored, refused int) {
	add(ctx, t.populates, stored, attribute.String("result", "stored"))
	add(ctx, t.populates, refused, attribute.String("result", "refused"))
}

// Coalesced implements writethrough.Metrics.
func (t *Telemetry) Coalesced(ctx context.Context, n int) { add(ctx, t.coalesced, n) }

// Unrecorded implements writethrough.Metrics.
func (t *Telemetry) Unrecorded(ctx context.Context, n int) { add(ctx, t.unrecorded, n) }

// Renewed implements writethrough.Metrics.
func (t *Telemetry) Renewed(ctx context.Context, n int) { add(ctx, t.renewed, n) }

// Healed implements writethrough.Metrics.
func (t *Telemetry) Healed(ctx context.Context, n int) { add(ctx, t.healed, n) }

// LostTokens implements writethrough.Metrics.
func (t *Telemetry) LostTokens(ctx context.Context, n int) { add(ctx, t.lostTokens, n) }

// PublishRepairs implements featurestore.Metrics.
func (t *Telemetry) PublishRepairs(ctx context.Context, ok bool) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	t.repairs.Add(ctx, 1, attrs(attribute.String("result", result)))
}

// DynamoAttempt implements dynamo.Metrics.
func (t *Telemetry) DynamoAttempt(ctx context.Context, operation string, throttled bool, err error) {
	result := "ok"
	switch {
	case throttled:
		result = "throttled"
	case err != nil:
		result = "error"
	}
	t.dynamoAttempts.Add(ctx, 1, attrs(attribute.String("operation", operation), attribute.String("result", result)))
}

// GdprJobs implements gdpr.Metrics.
func (t *Telemetry) GdprJobs(ctx context.Context, event string) {
	t.gdprJobs.Add(ctx, 1, attrs(attribute.String("event", event)))
}
