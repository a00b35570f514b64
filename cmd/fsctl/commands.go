package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/ingest"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

func dial(g globals) (pb.FeatureStoreServiceClient, func(), error) {
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", g.addr, err)
	}
	return pb.NewFeatureStoreServiceClient(conn), func() { conn.Close() }, nil
}

// rpcError makes a gRPC error readable: "NotFound: feature set "x" not found".
func rpcError(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}

func printJSON(g globals, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}

// setFile is the YAML/JSON form of a feature set (JSON is YAML too).
type setFile struct {
	Name         string `yaml:"name"`
	EntityType   string `yaml:"entity_type"`
	TTL          string `yaml:"ttl"`
	Description  string `yaml:"description"`
	Owner        string `yaml:"owner"`
	PersonalData bool   `yaml:"personal_data"`
	Features     []struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
	} `yaml:"features"`
}

// parseSetFile parses a feature set file; errors name the file and the field.
func parseSetFile(name string, b []byte) (*pb.FeatureSet, error) {
	var f setFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	fs := &pb.FeatureSet{Name: f.Name, EntityType: f.EntityType, Description: f.Description, Owner: f.Owner, PersonalData: f.PersonalData}
	if f.TTL != "" {
		d, err := time.ParseDuration(f.TTL)
		if err != nil {
			return nil, fmt.Errorf("%s: ttl: want a duration such as 24h, got %q", name, f.TTL)
		}
		fs.Ttl = durationpb.New(d)
	}
	for i, spec := range f.Features {
		t, ok := parseType(spec.Type)
		if !ok {
			return nil, fmt.Errorf("%s: features[%d].type: unknown type %q (want int64, double, string, bytes, bool, float_list, int64_list or string_list)", name, i, spec.Type)
		}
		fs.Features = append(fs.Features, &pb.FeatureSpec{Name: spec.Name, Type: pb.ValueType(t)})
	}
	return fs, nil
}

func parseType(s string) (featurestore.ValueType, bool) {
	s = strings.ToLower(strings.TrimPrefix(strings.ToUpper(s), "VALUE_TYPE_"))
	return featurestore.ParseValueType(s)
}

func cmdApply(ctx context.Context, g globals, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: fsctl apply FILE")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	fs, err := parseSetFile(args[0], b)
	if err != nil {
		return err
	}
	c, closeFn, err := dial(g)
	if err != nil {
		return err
	}
	defer closeFn()
	resp, err := c.ApplyFeatureSet(ctx, &pb.ApplyFeatureSetRequest{FeatureSet: fs})
	if err != nil {
		return rpcError(err)
	}
	if g.output == "json" {
		return printJSON(g, resp)
	}
	fmt.Fprintf(g.stdout, "applied feature set %q at version %d (%d features)\n", resp.GetFeatureSet().GetName(), resp.GetFeatureSet().GetVersion(), len(resp.GetFeatureSet().GetFeatures()))
	return nil
}

func cmdSets(ctx context.Context, g globals, args []string) error {
	c, closeFn, err := dial(g)
	if err != nil {
		return err
	}
	defer closeFn()
	resp, err := c.ListFeatureSets(ctx, &pb.ListFeatureSetsRequest{})
	if err != nil {
		return rpcError(err)
	}
	if g.output == "json" {
		return printJSON(g, resp)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENTITY\tFEATURES\tTTL\tVERSION\tOWNER")
	for _, fs := range resp.GetFeatureSets() {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", fs.GetName(), fs.GetEntityType(), len(fs.GetFeatures()), ttlString(fs), fs.GetVersion(), fs.GetOwner())
	}
	return tw.Flush()
}

func ttlString(fs *pb.FeatureSet) string {
	if fs.GetTtl() == nil {
		return "none"
	}
	return fs.GetTtl().AsDuration().String()
}

func cmdSet(ctx context.Context, g globals, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: fsctl set NAME")
	}
	c, closeFn, err := dial(g)
	if err != nil {
		return err
	}
	defer closeFn()
	resp, err := c.GetFeatureSet(ctx, &pb.GetFeatureSetRequest{Name: args[0]})
	if err != nil {
		return rpcError(err)
	}
	if g.output == "json" {
		return printJSON(g, resp)
	}
	fs := resp.GetFeatureSet()
	fmt.Fprintf(g.stdout, "name: %s\nentity_type: %s\nttl: %s\nversion: %d\npersonal_data: %v\n", fs.GetName(), fs.GetEntityType(), ttlString(fs), fs.GetVersion(), fs.GetPersonalData())
	if fs.GetOwner() != "" {
		fmt.Fprintf(g.stdout, "owner: %s\n", fs.GetOwner())
	}
	if fs.GetDescription() != "" {
		fmt.Fprintf(g.stdout, "description: %s\n", fs.GetDescription())
	}
	fmt.Fprintln(g.stdout, "features:")
	for _, f := range fs.GetFeatures() {
		fmt.Fprintf(g.stdout, "  %s: %s\n", f.GetName(), featurestore.ValueType(f.GetType()))
	}
	return nil
}

func cmdWrite(ctx context.Context, g globals, args []string) error {
	fset := flag.NewFlagSet("write", flag.ContinueOnError)
	fset.SetOutput(g.stderr)
	set := fset.String("set", "", "feature set (required)")
	entity := fset.String("entity", "", "entity id (required)")
	subject := fset.String("subject", "", "data subject id (required for personal-data sets)")
	at := fset.String("time", "", "event time, RFC 3339 (default: now)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *set == "" || *entity == "" || fset.NArg() == 0 {
		return errors.New("usage: fsctl write -set S -entity E [-subject ID] [-time RFC3339] NAME=VALUE...")
	}
	eventTime := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339Nano, *at)
		if err != nil {
			return fmt.Errorf("-time: want RFC 3339 such as 2026-01-02T15:04:05Z, got %q", *at)
		}
		eventTime = t
	}
	c, closeFn, err := dial(g)
	if err != nil {
		return err
	}
	defer closeFn()
	fsResp, err := c.GetFeatureSet(ctx, &pb.GetFeatureSetRequest{Name: *set})
	if err != nil {
		return rpcError(err)
	}
	types := map[string]featurestore.ValueType{}
	for _, f := range fsResp.GetFeatureSet().GetFeatures() {
		types[f.GetName()] = featurestore.ValueType(f.GetType())
	}
	row := &pb.FeatureRow{EntityId: *entity, SubjectId: *subject, EventTime: timestamppb.New(eventTime), Values: map[string]*pb.Value{}}
	for _, kv := range fset.Args() {
		name, raw, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%q: want NAME=VALUE", kv)
		}
		t, ok := types[name]
		if !ok {
			return fmt.Errorf("feature set %q has no feature %q", *set, name)
		}
		v, err := parseValue(t, raw)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		row.Values[name] = v
	}
	resp, err := c.WriteFeatures(ctx, &pb.WriteFeaturesRequest{FeatureSet: *set, Rows: []*pb.FeatureRow{row}})
	if err != nil {
		return rpcError(err)
	}
	if g.output == "json" {
		return printJSON(g, resp)
	}
	r := resp.GetResults()[0]
	status := strings.ToLower(strings.TrimPrefix(r.GetStatus().String(), "WRITE_STATUS_"))
	fmt.Fprintf(g.stdout, "%s: %s/%s at version %d", status, *set, *entity, r.GetVersion())
	if r.GetError() != "" {
		fmt.Fprintf(g.stdout, " (%s)", r.GetError())
	}
	fmt.Fprintln(g.stdout)
	return nil
}

// parseValue parses a command-line value as type t (lists comma-separated, bytes base64).
func parseValue(t featurestore.ValueType, s string) (*pb.Value, error) {
	return ingest.ParseValue(t, s)
}

func cmdGet(ctx context.Context, g globals, args []string) error {
	fset := flag.NewFlagSet("get", flag.ContinueOnError)
	fset.SetOutput(g.stderr)
	features := fset.String("features", "", "comma-separated feature refs set:feature (required)")
	entities := fset.String("entities", "", "comma-separated entity ids (required)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *features == "" || *entities == "" {
		return errors.New("usage: fsctl get -features S:F,... -entities E,...")
	}
	c, closeFn, err := dial(g)
	if err != nil {
		return err
	}
	defer closeFn()
	resp, err := c.GetFeatures(ctx, &pb.GetFeaturesRequest{Features: strings.Split(*features, ","), EntityIds: strings.Split(*entities, ",")})
	if err != nil {
		return rpcError(err)
	}
	if g.output == "json" {
		return printJSON(g, resp)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTITY\tFEATURE\tSTATUS\tVALUE\tEVENT TIME")
	for _, er := range resp.GetResults() {
		for i, f := range resp.GetFeatures() {
			st := strings.ToLower(strings.TrimPrefix(er.GetStatuses()[i].String(), "FEATURE_STATUS_"))
			val, when := "", ""
			if er.GetStatuses()[i] == pb.FeatureStatus_FEATURE_STATUS_PRESENT {
				val = formatValue(er.GetValues()[i])
			}
			if ts := er.GetEventTimes()[i]; ts != nil && ts.AsTime().Unix() > 0 {
				when = ts.AsTime().UTC().Format(time.RFC3339Nano)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", er.GetEntityId(), f, st, val, when)
		}
	}
	return tw.Flush()
}

func formatValue(v *pb.Value) string {
	switch k := v.GetKind().(type) {
	case *pb.Value_Int64Value:
		return strconv.FormatInt(k.Int64Value, 10)
	case *pb.Value_DoubleValue:
		return strconv.FormatFloat(k.DoubleValue, 'g', -1, 64)
	case *pb.Value_StringValue:
		return strconv.Quote(k.StringValue)
	case *pb.Value_BytesValue:
		return base64.StdEncoding.EncodeToString(k.BytesValue)
	case *pb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	case *pb.Value_FloatListValue:
		parts := make([]string, len(k.FloatListValue.GetValues()))
		for i, f := range k.FloatListValue.GetValues() {
			parts[i] = strconv.FormatFloat(float64(f), 'g', -1, 32)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *pb.Value_Int64ListValue:
		parts := make([]string, len(k.Int64ListValue.GetValues()))
		for i, n := range k.Int64ListValue.GetValues() {
			parts[i] = strconv.FormatInt(n, 10)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *pb.Value_StringListValue:
		parts := make([]string, len(k.StringListValue.GetValues()))
		for i, s := range k.StringListValue.GetValues() {
			parts[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return ""
}

func cmdCreateTables(ctx context.Context, g globals, args []string) error {
	fset := flag.NewFlagSet("create-tables", flag.ContinueOnError)
	fset.SetOutput(g.stderr)
	endpoint := fset.String("dynamodb-endpoint", g.getenv("FS_DYNAMODB_ENDPOINT"), "DynamoDB endpoint URL (empty: AWS) ($FS_DYNAMODB_ENDPOINT)")
	region := fset.String("region", envOr(g.getenv, "AWS_REGION", "us-east-1"), "AWS region ($AWS_REGION)")
	prefix := fset.String("table-prefix", g.getenv("FS_TABLE_PREFIX"), "table name prefix ($FS_TABLE_PREFIX)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	cfg, err := dynamo.LoadConfig(ctx, *region, *endpoint)
	if err != nil {
		return err
	}
	tables := dynamo.TablesWithPrefix(*prefix)
	if err := dynamo.New(dynamo.NewClient(cfg, *endpoint), tables).EnsureTables(ctx); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "tables ready: %s (GSI %s, TTL on %s), %s, %s\n", tables.Rows, dynamo.IndexSubject, dynamo.AttrExpiresAt, tables.Sets, tables.Deletions)
	return nil
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}
