package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/cenkalti/backoff/v5"
	vk "github.com/valkey-io/valkey-go"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/client"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
	"github.com/dsfeatures/featurestore/internal/loadgen"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
	"github.com/dsfeatures/featurestore/server"
)

const (
	hotEntities  = 2000
	coldEntities = 20000
)

type env struct {
	closers []func()
	// ours serves with the defaults; cold serves the cold pool through a cache that never
	// stores what it reads (neverStores), so keys it reads stay uncached throughout.
	ours, cold, base pb.FeatureStoreServiceClient
	// oursClient is the Go client behind ours, for the calls it adds (ReadColumns).
	oursClient *client.Client
	ddb        *dynamodb.Client
	tables     dynamo.Tables
	rawTable   string
	valkey     vk.Client
	refs       map[int][]string // features -> refs of the set with that many features
	// ddbEndpoint and valkeyAddr let scenarios build services of their own.
	ddbEndpoint, valkeyAddr string
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// serveGRPC serves srv on a loopback port and returns a client of it: the product's Go
// client (featurestore/client: its codec, retry policy and balancing, what a Go user
// runs) for our servers, or a bare grpc-go connection for the baselines, which do the
// least any client can.
func serveGRPC(e *env, srv *grpc.Server) (*client.Client, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go srv.Serve(lis)
	e.closers = append(e.closers, srv.Stop)
	c, err := client.Dial(lis.Addr().String(), client.Options{})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { c.Close() })
	return c, nil
}

// serveBare is serveGRPC for a baseline: a bare grpc-go connection, the least any client
// can do.
func serveBare(e *env, srv *grpc.Server) (pb.FeatureStoreServiceClient, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go srv.Serve(lis)
	e.closers = append(e.closers, srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { conn.Close() })
	return pb.NewFeatureStoreServiceClient(conn), nil
}

func setup(ctx context.Context, o options, log io.Writer) (*env, error) {
	e := &env{refs: map[int][]string{}}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	dir, err := devstack.FindDynamoDBLocal(os.Getenv)
	if err != nil {
		return nil, err
	}
	bin, err := devstack.FindValkeyServer(os.Getenv)
	if err != nil {
		return nil, err
	}
	ddbLocal, err := devstack.StartDynamoDB(ctx, dir, 0, nil)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, ddbLocal.Stop)
	vks, err := devstack.StartValkey(ctx, bin, devstack.ValkeyOptions{MaxMemory: "1gb"})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, vks.Stop)
	e.ddbEndpoint, e.valkeyAddr = ddbLocal.Endpoint, vks.Addr
	e.ddb = dynamo.NewClient(dynamo.LocalConfig(), ddbLocal.Endpoint)
	e.tables = dynamo.TablesWithPrefix("bench_")
	db := dynamo.New(e.ddb, e.tables)
	if err := db.EnsureTables(ctx); err != nil {
		return nil, err
	}
	e.rawTable = "bench_raw"
	if _, err := e.ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(e.rawTable), BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	}); err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	newSvc := func(cold bool) (*featurestore.Service, error) {
		cfg := writethrough.DefaultConfig()
		cache, err := valkey.Dial(ctx, []string{vks.Addr}, valkey.Options{Horizon: cfg.Horizon})
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, cache.Close)
		var c writethrough.Cache = cache
		if cold {
			c = neverStores{cache}
		}
		svc, _, err := devstack.NewService(db, c, nil, cfg, logger)
		return svc, err
	}
	svc, err := newSvc(false)
	if err != nil {
		return nil, err
	}
	coldSvc, err := newSvc(true)
	if err != nil {
		return nil, err
	}
	if e.oursClient, err = serveGRPC(e, server.NewGRPC(server.New(svc, logger, server.Options{}), nil, logger).Server); err != nil {
		return nil, err
	}
	e.ours = e.oursClient.API()
	coldClient, err := serveGRPC(e, server.NewGRPC(server.New(coldSvc, logger, server.Options{}), nil, logger).Server)
	if err != nil {
		return nil, err
	}
	e.cold = coldClient.API()
	e.valkey, err = vk.NewClient(vk.ClientOption{InitAddress: []string{vks.Addr}, DisableCache: true})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.valkey.Close)
	bsrv := grpc.NewServer()
	pb.RegisterFeatureStoreServiceServer(bsrv, &loadgen.BareGets{Client: e.valkey})
	if e.base, err = serveBare(e, bsrv); err != nil {
		return nil, err
	}

	// Seed data: sets of 10 and 100 double features; a hot pool in both, a cold pool in b10.
	fmt.Fprintf(log, "fsbench: seeding %d hot entities in two sets and %d cold ones...\n", hotEntities, coldEntities)
	for _, nf := range []int{10, 100} {
		fs := featurestore.FeatureSet{Name: "b" + strconv.Itoa(nf), EntityType: "user"}
		for i := 0; i < nf; i++ {
			fs.Features = append(fs.Features, featurestore.FeatureSpec{Name: "f" + strconv.Itoa(i), Type: featurestore.TypeDouble})
			e.refs[nf] = append(e.refs[nf], fs.Name+":f"+strconv.Itoa(i))
		}
		if _, err := svc.ApplyFeatureSet(ctx, fs); err != nil {
			return nil, err
		}
		if err := seed(ctx, svc, fs, "h", hotEntities); err != nil {
			return nil, err
		}
	}
	if err := seed(ctx, svc, featurestore.FeatureSet{Name: "b10", Features: nil}, "c", coldEntities); err != nil {
		return nil, err
	}
	// New keys are cached for good once their horizon has passed and a read heals them.
	time.Sleep(writethrough.DefaultConfig().Horizon + 200*time.Millisecond)
	for _, nf := range []int{10, 100} {
		for s := 0; s < hotEntities; s += 100 {
			ids := make([]string, 0, 100)
			for i := s; i < s+100; i++ {
				ids = append(ids, entity("h", i))
			}
			if _, err := e.ours.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: e.refs[nf], EntityIds: ids}); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	return e, nil
}

func entity(pool string, i int) string { return pool + strconv.Itoa(i) }

// neverStores is the cold service's cache: every read takes the whole miss path (GET,
// PREPARE, the database, RECORD), but without its tickets RECORD stores nothing, so a
// cold key read twice misses twice, as the cold scenarios require.
type neverStores struct{ writethrough.Cache }

func (c neverStores) Record(ctx context.Context, recs []writethrough.Publication) ([]writethrough.Recorded, error) {
	bare := make([]writethrough.Publication, len(recs))
	for i, r := range recs {
		r.Token = ""
		bare[i] = r
	}
	return c.Cache.Record(ctx, bare)
}

// seed writes n entities of the pool with every feature of the set named fs.Name (the
// features are looked up when fs.Features is empty).
func seed(ctx context.Context, svc *featurestore.Service, fs featurestore.FeatureSet, pool string, n int) error {
	if len(fs.Features) == 0 {
		full, err := svc.GetFeatureSet(ctx, fs.Name)
		if err != nil {
			return err
		}
		fs = full
	}
	at := time.Now().Add(-time.Minute)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for s := 0; s < n; s += 100 {
		g.Go(func() error {
			rows := make([]featurestore.WriteRow, 0, 100)
			for i := s; i < min(s+100, n); i++ {
				vals := make(map[string]featurestore.Value, len(fs.Features))
				for f, spec := range fs.Features {
					vals[spec.Name] = featurestore.Value{Type: featurestore.TypeDouble, Float: float64(i*1000 + f)}
				}
				rows = append(rows, featurestore.WriteRow{EntityID: entity(pool, i), EventTime: at, Values: vals})
			}
			// Merges are idempotent: retrying is safe.
			_, err := backoff.Retry(gctx, func() ([]featurestore.RowResult, error) {
				return svc.WriteRowsLenient(gctx, fs.Name, "rows", 0, rows)
			}, backoff.WithBackOff(backoff.NewConstantBackOff(time.Second)), backoff.WithMaxTries(5))
			return err
		})
	}
	return g.Wait()
}
