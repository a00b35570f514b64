package deploy_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/dsfeatures/featurestore/featurestore/dynamo"
	"github.com/dsfeatures/featurestore/internal/devstack"
)

// table is a DynamoDB table reduced to what the server depends on, so that the code's
// definitions, the CloudFormation template and a live table can be compared whole: a
// new index, key or TTL on either side shows up as a difference, whatever its name.
type table struct {
	Name          string
	BillingMode   string
	Keys          []attr // in key order: HASH, then RANGE
	Attributes    []attr // sorted by name
	GlobalIndexes []index
	LocalIndexes  []index
	TTL           string // the TTL attribute, "" when TTL is off
}

// attr is an attribute with its key type (HASH, RANGE) or attribute type (S, N, B).
type attr struct{ Name, Type string }

type index struct {
	Name       string
	Keys       []attr
	Projection string
	NonKey     []string // sorted
}

func sortTables(ts []table) []table {
	slices.SortFunc(ts, func(a, b table) int { return strings.Compare(a.Name, b.Name) })
	return ts
}

func sortIndexes(ix []index) []index {
	slices.SortFunc(ix, func(a, b index) int { return strings.Compare(a.Name, b.Name) })
	return ix
}

func sortAttrs(as []attr) []attr {
	slices.SortFunc(as, func(a, b attr) int { return strings.Compare(a.Name, b.Name) })
	return as
}

func keysOf(ks []types.KeySchemaElement) []attr {
	var out []attr
	for _, k := range ks {
		out = append(out, attr{aws.ToString(k.AttributeName), string(k.KeyType)})
	}
	return out
}

func projectionOf(p *types.Projection) (string, []string) {
	if p == nil {
		return "", nil
	}
	nk := slices.Clone(p.NonKeyAttributes)
	slices.Sort(nk)
	return string(p.ProjectionType), nk
}

// codeTables is what the code creates (dynamo.TableDefinitions).
func codeTables(defs []dynamo.TableDefinition) []table {
	var out []table
	for _, d := range defs {
		in := d.Input
		t := table{Name: aws.ToString(in.TableName), BillingMode: string(in.BillingMode), Keys: keysOf(in.KeySchema), TTL: d.TTLAttribute}
		for _, a := range in.AttributeDefinitions {
			t.Attributes = append(t.Attributes, attr{aws.ToString(a.AttributeName), string(a.AttributeType)})
		}
		for _, g := range in.GlobalSecondaryIndexes {
			p, nk := projectionOf(g.Projection)
			t.GlobalIndexes = append(t.GlobalIndexes, index{aws.ToString(g.IndexName), keysOf(g.KeySchema), p, nk})
		}
		for _, l := range in.LocalSecondaryIndexes {
			p, nk := projectionOf(l.Projection)
			t.LocalIndexes = append(t.LocalIndexes, index{aws.ToString(l.IndexName), keysOf(l.KeySchema), p, nk})
		}
		t.Attributes, t.GlobalIndexes, t.LocalIndexes = sortAttrs(t.Attributes), sortIndexes(t.GlobalIndexes), sortIndexes(t.LocalIndexes)
		out = append(out, t)
	}
	return sortTables(out)
}

// The CloudFormation properties compared (AWS::DynamoDB::Table).
type cfnKey struct {
	AttributeName string `yaml:"AttributeName"`
	KeyType       string `yaml:"KeyType"`
}

type cfnIndex struct {
	IndexName  string   `yaml:"IndexName"`
	KeySchema  []cfnKey `yaml:"KeySchema"`
	Projection struct {
		ProjectionType   string   `yaml:"ProjectionType"`
		NonKeyAttributes []string `yaml:"NonKeyAttributes"`
	} `yaml:"Projection"`
}

type cfnTemplate struct {
	Resources map[string]struct {
		Type       string `yaml:"Type"`
		Properties struct {
			TableName            string `yaml:"TableName"`
			BillingMode          string `yaml:"BillingMode"`
			AttributeDefinitions []struct {
				AttributeName string `yaml:"AttributeName"`
				AttributeType string `yaml:"AttributeType"`
			} `yaml:"AttributeDefinitions"`
			KeySchema               []cfnKey   `yaml:"KeySchema"`
			GlobalSecondaryIndexes  []cfnIndex `yaml:"GlobalSecondaryIndexes"`
			LocalSecondaryIndexes   []cfnIndex `yaml:"LocalSecondaryIndexes"`
			TimeToLiveSpecification *struct {
				AttributeName string `yaml:"AttributeName"`
				Enabled       bool   `yaml:"Enabled"`
			} `yaml:"TimeToLiveSpecification"`
		} `yaml:"Properties"`
	} `yaml:"Resources"`
}

// cfnTables reads the tables of a CloudFormation template. Short-form intrinsic tags
// (!Sub, !Ref) are read as their plain argument, so TableName is "${TablePrefix}...".
func cfnTables(b []byte) ([]table, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	var strip func(*yaml.Node)
	strip = func(n *yaml.Node) {
		if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
			n.Tag = ""
		}
		for _, c := range n.Content {
			strip(c)
		}
	}
	strip(&n)
	var tpl cfnTemplate
	if err := n.Decode(&tpl); err != nil {
		return nil, err
	}
	keys := func(ks []cfnKey) []attr {
		var out []attr
		for _, k := range ks {
			out = append(out, attr{k.AttributeName, k.KeyType})
		}
		return out
	}
	indexes := func(ix []cfnIndex) []index {
		var out []index
		for _, i := range ix {
			nk := slices.Clone(i.Projection.NonKeyAttributes)
			slices.Sort(nk)
			out = append(out, index{i.IndexName, keys(i.KeySchema), i.Projection.ProjectionType, nk})
		}
		return sortIndexes(out)
	}
	var out []table
	for id, r := range tpl.Resources {
		if r.Type != "AWS::DynamoDB::Table" {
			continue
		}
		p := r.Properties
		if p.TableName == "" {
			return nil, fmt.Errorf("resource %s has no TableName", id)
		}
		t := table{Name: p.TableName, BillingMode: p.BillingMode, Keys: keys(p.KeySchema),
			GlobalIndexes: indexes(p.GlobalSecondaryIndexes), LocalIndexes: indexes(p.LocalSecondaryIndexes)}
		for _, a := range p.AttributeDefinitions {
			t.Attributes = append(t.Attributes, attr{a.AttributeName, a.AttributeType})
		}
		t.Attributes = sortAttrs(t.Attributes)
		if ttl := p.TimeToLiveSpecification; ttl != nil && ttl.Enabled {
			t.TTL = ttl.AttributeName
		}
		out = append(out, t)
	}
	return sortTables(out), nil
}

// cfnDiff compares the template's tables with the code's, named with CloudFormation's
// TablePrefix parameter.
func cfnDiff(defs []dynamo.TableDefinition, template []byte) (string, error) {
	got, err := cfnTables(template)
	if err != nil {
		return "", err
	}
	return cmp.Diff(codeTables(defs), got), nil
}

var cfnNames = dynamo.TablesWithPrefix("${TablePrefix}")

// TestCloudFormationMatchesCode: every table the code creates is in the template with
// the same keys, attribute definitions, indexes (name, keys, projection), billing mode
// and TTL attribute, and the template has no other table.
func TestCloudFormationMatchesCode(t *testing.T) {
	b, err := os.ReadFile("cloudformation/dynamodb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	diff, err := cfnDiff(dynamo.TableDefinitions(cfnNames), b)
	if err != nil {
		t.Fatalf("cloudformation/dynamodb.yaml: %v", err)
	}
	if diff != "" {
		t.Errorf("cloudformation/dynamodb.yaml differs from dynamo.TableDefinitions (-code +template):\n%s", diff)
	}
}

// TestCloudFormationCheckCatchesDrift: the comparison notices each kind of drift, on
// either side, without knowing any table or index by name.
func TestCloudFormationCheckCatchesDrift(t *testing.T) {
	orig, err := os.ReadFile("cloudformation/dynamodb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The code gains an index the template lacks, as a future GSI on the deletions
	// table would.
	withGSI := dynamo.TableDefinitions(cfnNames)
	last := withGSI[len(withGSI)-1].Input
	last.AttributeDefinitions = append(last.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String("state"), AttributeType: types.ScalarAttributeTypeS})
	last.GlobalSecondaryIndexes = append(last.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
		IndexName: aws.String("by_state"), KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("state"), KeyType: types.KeyTypeHash}},
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}})
	if diff, err := cfnDiff(withGSI, orig); err != nil || !strings.Contains(diff, "by_state") {
		t.Errorf("a GSI only in the code: diff %q, err %v", diff, err)
	}
	// The code's TTL moves.
	movedTTL := dynamo.TableDefinitions(cfnNames)
	movedTTL[0].TTLAttribute = "ttl_at"
	if diff, _ := cfnDiff(movedTTL, orig); !strings.Contains(diff, "ttl_at") {
		t.Errorf("a different TTL attribute: diff %q", diff)
	}
	// Edits of the template.
	tests := []struct{ name, old, new, want string }{
		{"projection", "Projection: {ProjectionType: KEYS_ONLY}", "Projection: {ProjectionType: ALL}", "ALL"},
		{"index key", "            - {AttributeName: subject, KeyType: HASH}", "            - {AttributeName: subj, KeyType: HASH}", "subj"},
		{"attribute type", "{AttributeName: subject, AttributeType: S}", "{AttributeName: subject, AttributeType: N}", `"N"`},
		{"TTL off", "TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}", "TimeToLiveSpecification: {AttributeName: expires_at, Enabled: false}", "expires_at"},
		{"extra table", "Outputs:\n", "  Extra:\n    Type: AWS::DynamoDB::Table\n    Properties: {TableName: extra, KeySchema: [{AttributeName: pk, KeyType: HASH}]}\nOutputs:\n", "extra"},
	}
	for _, tc := range tests {
		if n := strings.Count(string(orig), tc.old); n == 0 {
			t.Errorf("%s: the template does not hold %q; update this test", tc.name, tc.old)
			continue
		}
		mutated := strings.Replace(string(orig), tc.old, tc.new, 1)
		diff, err := cfnDiff(dynamo.TableDefinitions(cfnNames), []byte(mutated))
		if err != nil || !strings.Contains(diff, tc.want) {
			t.Errorf("%s: diff %q (want one mentioning %s), err %v", tc.name, diff, tc.want, err)
		}
	}
}

// TestTableDefinitionsAreWhatEnsureTablesCreates creates the tables in DynamoDB Local
// and compares what DynamoDB reports with dynamo.TableDefinitions, so the check above
// covers the tables the server really makes.
func TestTableDefinitionsAreWhatEnsureTablesCreates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := devstack.FindDynamoDBLocal(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ddb, err := devstack.StartDynamoDB(ctx, dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ddb.Stop()
	names := dynamo.TablesWithPrefix(devstack.UniquePrefix(t.Name()))
	client := dynamo.NewClient(dynamo.LocalConfig(), ddb.Endpoint)
	if err := dynamo.New(client, names).EnsureTables(ctx); err != nil {
		t.Fatal(err)
	}
	want := codeTables(dynamo.TableDefinitions(names))
	var got []table
	for _, w := range want {
		d, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(w.Name)})
		if err != nil {
			t.Fatalf("describe %s: %v", w.Name, err)
		}
		td := d.Table
		tb := table{Name: aws.ToString(td.TableName), BillingMode: w.BillingMode, Keys: keysOf(td.KeySchema)}
		// DynamoDB Local may leave out the billing mode summary; AWS reports it.
		if td.BillingModeSummary != nil {
			tb.BillingMode = string(td.BillingModeSummary.BillingMode)
		}
		for _, a := range td.AttributeDefinitions {
			tb.Attributes = append(tb.Attributes, attr{aws.ToString(a.AttributeName), string(a.AttributeType)})
		}
		for _, g := range td.GlobalSecondaryIndexes {
			p, nk := projectionOf(g.Projection)
			tb.GlobalIndexes = append(tb.GlobalIndexes, index{aws.ToString(g.IndexName), keysOf(g.KeySchema), p, nk})
		}
		for _, l := range td.LocalSecondaryIndexes {
			p, nk := projectionOf(l.Projection)
			tb.LocalIndexes = append(tb.LocalIndexes, index{aws.ToString(l.IndexName), keysOf(l.KeySchema), p, nk})
		}
		ttl, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(w.Name)})
		if err != nil {
			t.Fatalf("describe TTL of %s: %v", w.Name, err)
		}
		if d := ttl.TimeToLiveDescription; d != nil && (d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
			tb.TTL = aws.ToString(d.AttributeName)
		}
		tb.Attributes, tb.GlobalIndexes, tb.LocalIndexes = sortAttrs(tb.Attributes), sortIndexes(tb.GlobalIndexes), sortIndexes(tb.LocalIndexes)
		got = append(got, tb)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TableDefinitions vs the tables EnsureTables created (-definitions +created):\n%s", diff)
	}
}
