package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/devstack"
	"github.com/dsfeatures/featurestore/featurestore/valkey"
)

// `make test` runs the defaults: one short seeded run. `make chaos` passes more seeds and
// a longer duration.
var (
	seedsFlag    = flag.String("chaos.seeds", "1", "seeds to run: a list (1,5,9) or a range (1-20)")
	durationFlag = flag.Duration("chaos.duration", 8*time.Second, "load duration of each run")
	outFlag      = flag.String("chaos.out", "", "directory for HTML visualizations of violations (default: a temp dir)")
)

var shared *devstack.Shared

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(devstack.RunTests(m, func(s *devstack.Shared) { shared = s }))
}

func parseSeeds(s string) ([]int64, error) {
	var out []int64
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(strings.TrimSpace(lo), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed %q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(strings.TrimSpace(hi), 10, 64); err != nil || b < a {
				return nil, fmt.Errorf("seed range %q", part)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestChaos runs the real protocol under every kind of fault and requires zero violations.
func TestChaos(t *testing.T) {
	seeds, err := parseSeeds(*seedsFlag)
	if err != nil {
		t.Fatal(err)
	}
	total := Report{Faults: map[string]int{}, Lanes: map[string]int{}}
	for _, seed := range seeds {
		rep, err := Run(context.Background(), shared, Config{Seed: seed, Duration: *durationFlag, OutDir: *outFlag, Progress: testWriter{t}})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if rep.Violations > 0 {
			t.Errorf("seed %d: %d linearizability violations; histories: %v", seed, rep.Violations, rep.Visualizations)
		}
		if rep.Operations < 100 || rep.Reads == 0 || rep.Writes == 0 {
			t.Errorf("seed %d: too little load to mean anything: %s", seed, rep)
		}
		total.Histories += rep.Histories
		total.Operations += rep.Operations
		total.Writes += rep.Writes
		total.Reads += rep.Reads
		total.Unknown += rep.Unknown
		total.Violations += rep.Violations
		total.Inconclusive += rep.Inconclusive
		for k, n := range rep.Faults {
			total.Faults[k] += n
		}
		for _, l := range LaneKinds {
			if rep.Lanes[l] == 0 {
				t.Errorf("seed %d: no writes through the %s lane", seed, l)
			}
			total.Lanes[l] += rep.Lanes[l]
		}
	}
	t.Logf("TOTAL over %d seeds: %s", len(seeds), total)
	fmt.Printf("chaos total over %d seeds x %v: %s\n", len(seeds), *durationFlag, total)
}

// TestMutationsAreCaught shows the checker has teeth: with the protocol broken in a known
// way, runs find violations. Each mutation gets up to a few seeded runs; both scenarios
// were caught by every seed tried (6 of 6 each through gRPC, under -race on a loaded
// 2-core machine).
func TestMutationsAreCaught(t *testing.T) {
	tests := []struct {
		name     string
		mutation valkey.Mutation
		cfg      Config
	}{
		// A reader's late populate overwrites a newer published value. Readers populate
		// only after a miss (flushes), past the horizon, and with no writer in flight, so
		// writers pause; every read pauses before POPULATE, as a reader starved of CPU
		// would, so that a whole write fits in between.
		{"plain SET populate", valkey.MutationPlainPopulate, Config{
			Faults: []string{"valkey-flush"}, Keys: 1, Writers: 1, Readers: 6,
			WriterPause: 60 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, Lease: 150 * time.Millisecond,
			PopulatePause: 60 * time.Millisecond,
		}},
		// The first writer to commit publishes last and stores its own, older version.
		{"publish own version", valkey.MutationPublishOwn, Config{Faults: []string{"valkey-latency"}, Keys: 2}},
	}
	run := func(t *testing.T, cfg Config, seed int64, m valkey.Mutation) Report {
		cfg.Seed, cfg.Duration, cfg.Mutation = seed, 6*time.Second, m
		cfg.FaultEvery, cfg.OutDir, cfg.Progress = 150*time.Millisecond, *outFlag, testWriter{t}
		rep, err := Run(context.Background(), shared, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The control: the same scenario with the real protocol finds nothing, so a
			// violation below is the mutation's doing and not the scenario's.
			if rep := run(t, tc.cfg, 1, valkey.Correct); rep.Violations > 0 {
				t.Fatalf("the correct protocol failed the mutation scenario: %s (%v)", rep, rep.Visualizations)
			}
			for seed := int64(1); seed <= 4; seed++ {
				if rep := run(t, tc.cfg, seed, tc.mutation); rep.Violations > 0 {
					t.Logf("found %d violations with seed %d, as expected (%v)", rep.Violations, seed, rep.Visualizations)
					return
				}
			}
			t.Fatal("the checker found no violation in a deliberately broken protocol")
		})
	}
}

func TestParseSeeds(t *testing.T) {
	got, err := parseSeeds("1-3,7")
	if err != nil || fmt.Sprint(got) != "[1 2 3 7]" {
		t.Fatalf("parseSeeds: %v %v", got, err)
	}
	if _, err := parseSeeds("3-1"); err == nil {
		t.Fatal("accepted a backwards range")
	}
}
