package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/ingest"
	pb "github.com/dsfeatures/featurestore/proto/featurestore/v1"
)

// rpcError makes a gRPC status error readable ("NotFound: feature set "x" not found");
// other errors, which carry their own context, pass unchanged.
func rpcError(err error) error {
	if s, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		st := s.GRPCStatus()
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}

func printJSON(g *globals, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}

// printPlainJSON prints a summary that is not an API message (stream, create-tables).
func printPlainJSON(g *globals, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintln(g.stdout, string(b))
	return err
}

// setFile is the YAML/JSON form of a feature set (JSON is YAML too). The server assigns
// the version, so the file has none.
type setFile struct {
	Name         string        `yaml:"name"`
	EntityType   string        `yaml:"entity_type"`
	TTL          string        `yaml:"ttl,omitempty"`
	Description  string        `yaml:"description,omitempty"`
	Owner        string        `yaml:"owner,omitempty"`
	PersonalData bool          `yaml:"personal_data"`
	Features     []featureSpec `yaml:"features"`
}

type featureSpec struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
}

// parseSetFile parses a feature set file, or the JSON that 'fsctl set NAME -o json'
// prints; errors name the file and the field.
func parseSetFile(name string, b []byte) (*pb.FeatureSet, error) {
	var probe map[string]any
	if yaml.Unmarshal(b, &probe) == nil && (probe["featureSet"] != nil || probe["feature_set"] != nil) {
		var resp pb.GetFeatureSetResponse
		if err := protojson.Unmarshal(b, &resp); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		fs := resp.GetFeatureSet()
		fs.Version = 0 // assigned by the server
		return fs, nil
	}
	var f setFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
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

// formatSetFile renders fs as a feature set file that parseSetFile reads back.
func formatSetFile(fs *pb.FeatureSet) ([]byte, error) {
	f := setFile{Name: fs.GetName(), EntityType: fs.GetEntityType(), Description: fs.GetDescription(), Owner: fs.GetOwner(), PersonalData: fs.GetPersonalData()}
	if d := fs.GetTtl().AsDuration(); d > 0 {
		f.TTL = shortDuration(d)
	}
	for _, spec := range fs.GetFeatures() {
		f.Features = append(f.Features, featureSpec{Name: spec.GetName(), Type: featurestore.ValueType(spec.GetType()).String()})
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# feature set %q at version %d (the server assigns versions; apply ignores this line)\n", fs.GetName(), fs.GetVersion())
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// shortDuration drops zero minutes and seconds: 24h rather than 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func parseType(s string) (featurestore.ValueType, bool) {
	s = strings.ToLower(strings.TrimPrefix(strings.ToUpper(s), "VALUE_TYPE_"))
	return featurestore.ParseValueType(s)
}

func cmdApply(ctx context.Context, g *globals, args []string) error {
	fset := g.newFlagSet("apply", "apply FILE")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("usage: fsctl apply FILE")
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	fs, err := parseSetFile(pos[0], b)
	if err != nil {
		return err
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	applied, err := c.ApplyFeatureSet(ctx, fs)
	if err != nil {
		return rpcError(err)
	}
	if g.output == "json" {
		return printJSON(g, &pb.ApplyFeatureSetResponse{FeatureSet: applied})
	}
	fmt.Fprintf(g.stdout, "applied feature set %q at version %d (%d features)\n", applied.GetName(), applied.GetVersion(), len(applied.GetFeatures()))
	return nil
}

func cmdSets(ctx context.Context, g *globals, args []string) error {
	fset := g.newFlagSet("sets", "sets [-page-size N]")
	pageSize := fset.Int("page-size", 0, "sets per request (0: the server's default); every page is listed")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("usage: fsctl sets [-page-size N]")
	}
	if *pageSize < 0 || *pageSize > 1000 {
		return usageErrorf("-page-size: want 0 to 1000, got %d", *pageSize)
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	var sets []*pb.FeatureSet
	for fs, err := range c.FeatureSets(ctx, *pageSize) {
		if err != nil {
			return rpcError(err)
		}
		sets = append(sets, fs)
	}
	// The server pages in a stable but unsorted order; people read lists by name.
	slices.SortFunc(sets, func(a, b *pb.FeatureSet) int { return strings.Compare(a.GetName(), b.GetName()) })
	if g.output == "json" {
		return printJSON(g, &pb.ListFeatureSetsResponse{FeatureSets: sets})
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENTITY\tFEATURES\tTTL\tVERSION\tOWNER")
	for _, fs := range sets {
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

func cmdSet(ctx context.Context, g *globals, args []string) error {
	fset := g.newFlagSet("set", "set NAME [-o text|json|yaml]")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("usage: fsctl set NAME")
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	fs, err := c.GetFeatureSet(ctx, pos[0])
	if err != nil {
		return rpcError(err)
	}
	switch g.output {
	case "json":
		return printJSON(g, &pb.GetFeatureSetResponse{FeatureSet: fs})
	case "yaml":
		b, err := formatSetFile(fs)
		if err != nil {
			return err
		}
		_, err = g.stdout.Write(b)
		return err
	}
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

// cmdRetire retires a feature set. It is irreversible (the name can never be applied
// again), hence -yes.
func cmdRetire(ctx context.Context, g *globals, args []string) error {
	fset := g.newFlagSet("retire", "retire NAME -yes")
	yes := fset.Bool("yes", false, "confirm: the set's rows stop being served and its name can never be applied again")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("usage: fsctl retire NAME -yes")
	}
	if !*yes {
		return usageErrorf("retiring %q is permanent: its rows stop being served and the name can never be applied again; pass -yes to confirm", pos[0])
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	fs, err := c.DeleteFeatureSet(ctx, pos[0])
	if err != nil {
		return rpcError(err)
	}
	if g.output == "json" {
		return printJSON(g, &pb.DeleteFeatureSetResponse{FeatureSet: fs})
	}
	fmt.Fprintf(g.stdout, "retired feature set %q (version %d, %d features)\n", fs.GetName(), fs.GetVersion(), len(fs.GetFeatures()))
	return nil
}

func cmdWrite(ctx context.Context, g *globals, args []string) error {
	const synopsis = "write -set S -entity E [-subject ID] [-time RFC3339] NAME=VALUE..."
	fset := g.newFlagSet("write", synopsis)
	set := fset.String("set", "", "feature set (required)")
	entity := fset.String("entity", "", "entity id (required)")
	subject := fset.String("subject", "", "data subject id (required for personal-data sets)")
	at := fset.String("time", "", "event time, RFC 3339 (default: now)")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if *set == "" || *entity == "" || len(pos) == 0 {
		return usageErrorf("usage: fsctl %s", synopsis)
	}
	eventTime := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339Nano, *at)
		if err != nil {
			return usageErrorf("-time: want RFC 3339 such as 2026-01-02T15:04:05Z, got %q", *at)
		}
		eventTime = t
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	fs, err := c.GetFeatureSet(ctx, *set)
	if err != nil {
		return rpcError(err)
	}
	types := map[string]featurestore.ValueType{}
	for _, f := range fs.GetFeatures() {
		types[f.GetName()] = featurestore.ValueType(f.GetType())
	}
	row := &pb.FeatureRow{EntityId: *entity, SubjectId: *subject, EventTime: timestamppb.New(eventTime), Values: map[string]*pb.Value{}}
	for _, kv := range pos {
		name, raw, ok := strings.Cut(kv, "=")
		if !ok {
			return usageErrorf("%q: want NAME=VALUE", kv)
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
	results, err := c.Write(ctx, *set, row)
	if results == nil {
		return rpcError(err)
	}
	// With an unknown outcome the results are still printed, then the error (exit 1).
	if g.output == "json" {
		if perr := printJSON(g, &pb.WriteFeaturesResponse{Results: results}); perr != nil {
			return perr
		}
		return err
	}
	r := results[0]
	st := strings.ToLower(strings.TrimPrefix(r.GetStatus().String(), "WRITE_STATUS_"))
	fmt.Fprintf(g.stdout, "%s: %s/%s at version %d", st, *set, *entity, r.GetVersion())
	if r.GetError() != "" {
		fmt.Fprintf(g.stdout, " (%s)", r.GetError())
	}
	fmt.Fprintln(g.stdout)
	return err
}

// parseValue parses a command-line value as type t (lists comma-separated, bytes base64).
func parseValue(t featurestore.ValueType, s string) (*pb.Value, error) {
	return ingest.ParseValue(t, s)
}

func cmdGet(ctx context.Context, g *globals, args []string) error {
	const synopsis = "get -features S:F,... -entities E,..."
	fset := g.newFlagSet("get", synopsis)
	features := fset.String("features", "", "comma-separated feature refs set:feature (required)")
	entities := fset.String("entities", "", "comma-separated entity ids (required)")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if *features == "" || *entities == "" || len(pos) != 0 {
		return usageErrorf("usage: fsctl %s", synopsis)
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.GetFeatures(ctx, strings.Split(*features, ","), strings.Split(*entities, ","))
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

func cmdDelete(ctx context.Context, g *globals, args []string) error {
	const synopsis = "delete -set S ENTITY..."
	fset := g.newFlagSet("delete", synopsis)
	set := fset.String("set", "", "feature set (required)")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if *set == "" || len(pos) == 0 {
		return usageErrorf("usage: fsctl %s", synopsis)
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	results, err := c.DeleteEntities(ctx, *set, pos...)
	if err != nil {
		return rpcError(err)
	}
	if g.output == "json" {
		return printJSON(g, &pb.DeleteEntitiesResponse{Results: results})
	}
	for _, r := range results {
		what := "deleted"
		if !r.GetExisted() {
			what = "nothing stored for"
		}
		fmt.Fprintf(g.stdout, "%s %s/%s (version %d)\n", what, *set, r.GetEntityId(), r.GetVersion())
	}
	return nil
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

func cmdCreateTables(ctx context.Context, g *globals, args []string) error {
	const synopsis = "create-tables [-dynamodb-endpoint URL] [-region R] [-table-prefix P]"
	fset := g.newFlagSet("create-tables", synopsis)
	endpoint := fset.String("dynamodb-endpoint", g.getenv("FS_DYNAMODB_ENDPOINT"), "DynamoDB endpoint URL (empty: AWS) ($FS_DYNAMODB_ENDPOINT)")
	region := fset.String("region", envOr(g.getenv, "AWS_REGION", "us-east-1"), "AWS region ($AWS_REGION)")
	prefix := fset.String("table-prefix", g.getenv("FS_TABLE_PREFIX"), "table name prefix ($FS_TABLE_PREFIX)")
	pos, err := g.parse(fset, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("usage: fsctl %s", synopsis)
	}
	cfg, err := dynamo.LoadConfig(ctx, *region, *endpoint)
	if err != nil {
		return err
	}
	tables := dynamo.TablesWithPrefix(*prefix)
	if err := dynamo.New(dynamo.NewClient(cfg, *endpoint), tables).EnsureTables(ctx); err != nil {
		return err
	}
	if g.output == "json" {
		return printPlainJSON(g, struct {
			RowsTable      string `json:"rowsTable"`
			SetsTable      string `json:"setsTable"`
			DeletionsTable string `json:"deletionsTable"`
			FreshnessTable string `json:"freshnessTable"`
			SubjectIndex   string `json:"subjectIndex"`
			TTLAttribute   string `json:"ttlAttribute"`
		}{tables.Rows, tables.Sets, tables.Deletions, tables.Freshness, dynamo.IndexSubject, dynamo.AttrExpiresAt})
	}
	fmt.Fprintf(g.stdout, "tables ready: %s (GSI %s, TTL on %s), %s, %s, %s\n", tables.Rows, dynamo.IndexSubject, dynamo.AttrExpiresAt, tables.Sets, tables.Deletions, tables.Freshness)
	return nil
}
