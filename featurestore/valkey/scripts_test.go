package valkey_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
)

const (
	horizon     = 300 * time.Millisecond
	lease       = 200 * time.Millisecond
	fenceWindow = 80 * time.Millisecond
)

func startCache(t *testing.T) *valkey.Cache {
	t.Helper()
	bin, err := devstack.FindValkeyServer(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	vk, err := devstack.StartValkey(ctx, bin, devstack.ValkeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vk.Stop)
	c, err := valkey.Dial(ctx, []string{vk.Addr}, valkey.Options{Horizon: horizon, FenceWindow: fenceWindow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// step is one operation of a scenario on the key "k".
type step struct {
	op      string // set, mark, assert, publish, prepare, populate, sleep, del
	token   string // writer token, or ticket name ("" for populate uses the last ticket)
	version int64
	lease   time.Duration
	sleep   time.Duration
	// want is the state after the step: "missing", "value:N", "dirty:N" (N the newest
	// version), or "" to skip the check. ticket for prepare: the kind granted, "none",
	// "plain" or "fence" ("" skips the check); for assert, "lost" or "kept".
	want   string
	ticket string
	// hot: prepare as a reader whose replica served the key from the cache lately.
	hot bool
}

func state(t *testing.T, c *valkey.Cache) string {
	t.Helper()
	cl := c.Client()
	b, err := cl.Do(context.Background(), cl.B().Get().Key("k").Build()).AsBytes()
	if err != nil {
		return "missing"
	}
	e, err := valkey.DecodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Dirty {
		return fmt.Sprintf("dirty:%d", e.Version)
	}
	return fmt.Sprintf("value:%d", e.Version)
}

func TestScripts(t *testing.T) {
	value1 := step{op: "set", version: 1, want: "value:1"}
	tests := []struct {
		name  string
		steps []step
	}{
		{"write on a cached key publishes a value", []step{
			value1,
			{op: "mark", token: "w", lease: lease, want: "dirty:1"},
			{op: "publish", token: "w", version: 2, want: "value:2"},
		}},
		{"first committer publishing last stores the newest, not its own", []step{
			value1,
			{op: "mark", token: "w1", lease: lease},
			{op: "mark", token: "w2", lease: lease},
			{op: "publish", token: "w2", version: 3, want: "dirty:3"},
			{op: "publish", token: "w1", version: 2, want: "value:3"},
		}},
		{"an expired token of a dead writer keeps the key dirty until a reader heals it", []step{
			value1,
			{op: "mark", token: "dead", lease: 50 * time.Millisecond},
			{op: "mark", token: "w", lease: lease},
			{op: "sleep", sleep: 100 * time.Millisecond},
			{op: "publish", token: "w", version: 2, want: "dirty:2"},
			{op: "prepare", ticket: "plain"},
			{op: "populate", version: 5, want: "value:5"},
		}},
		{"a live token refuses a ticket", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "prepare", ticket: "none", want: "dirty:1"},
		}},
		{"a missing key gets a horizon: no ticket, and early writers cannot publish a value", []step{
			{op: "prepare", ticket: "none", want: "dirty:0"},
			{op: "mark", token: "w", lease: lease},
			{op: "prepare", ticket: "none"},
			{op: "publish", token: "w", version: 2, want: "dirty:2"},
			{op: "sleep", sleep: horizon + 50*time.Millisecond},
			{op: "prepare", ticket: "plain"},
			{op: "populate", version: 2, want: "value:2"},
		}},
		{"before the horizon the second reader gets a fence ticket, one per window", []step{
			{op: "prepare", ticket: "none", want: "dirty:0"},
			{op: "prepare", ticket: "fence"},
			{op: "prepare", ticket: "none"},
			{op: "sleep", sleep: fenceWindow + 20*time.Millisecond},
			{op: "prepare", ticket: "fence"},
			{op: "populate", version: 7, want: "value:7"},
		}},
		{"a hot key's first reader after a loss gets a fence ticket", []step{
			{op: "prepare", hot: true, ticket: "fence", want: "dirty:0"},
			{op: "populate", version: 7, want: "value:7"},
		}},
		{"after a hot reader's fence ticket, the fence window holds for every reader", []step{
			{op: "prepare", hot: true, ticket: "fence", want: "dirty:0"},
			{op: "prepare", hot: true, ticket: "none"},
			{op: "prepare", ticket: "none"},
		}},
		{"a hot reader of an entry a writer recreated gets a fence ticket once the token expired", []step{
			{op: "mark", token: "w", lease: 30 * time.Millisecond, want: "dirty:0"},
			{op: "prepare", hot: true, ticket: "none"},
			{op: "sleep", sleep: 60 * time.Millisecond},
			{op: "prepare", hot: true, ticket: "fence"},
			{op: "populate", version: 2, want: "value:2"},
		}},
		{"a hot reader gets nothing while a token lives", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "del"},
			{op: "assert", token: "w", lease: lease, ticket: "lost"},
			{op: "prepare", hot: true, ticket: "none"},
		}},
		{"assert voids a hot reader's fence ticket", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "del"},
			{op: "prepare", hot: true, ticket: "fence"},
			{op: "assert", token: "w", lease: lease, ticket: "lost"},
			{op: "populate", version: 5, want: "dirty:0"},
		}},
		{"past the horizon a hot reader gets a plain ticket, as any reader", []step{
			{op: "prepare", want: "dirty:0"},
			{op: "sleep", sleep: horizon + 50*time.Millisecond},
			{op: "prepare", hot: true, ticket: "plain"},
			{op: "populate", version: 3, want: "value:3"},
		}},
		{"an early writer's live token refuses a fence ticket", []step{
			{op: "prepare", ticket: "none"},
			{op: "mark", token: "w", lease: lease},
			{op: "prepare", ticket: "none"},
			{op: "publish", token: "w", version: 2, want: "dirty:2"},
			{op: "prepare", ticket: "none"},
			{op: "prepare", ticket: "fence"},
			{op: "populate", version: 1, want: "dirty:2"},
			{op: "populate", version: 3, want: "value:3"},
		}},
		{"assert keeps a token that is there", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "assert", token: "w", lease: lease, ticket: "kept", want: "dirty:1"},
			{op: "publish", token: "w", version: 2, want: "value:2"},
		}},
		{"assert puts a lost token back, early, and it holds off readers", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "del", want: "missing"},
			{op: "assert", token: "w", lease: lease, ticket: "lost", want: "dirty:0"},
			{op: "prepare", ticket: "none"},
			{op: "publish", token: "w", version: 2, want: "dirty:2"},
		}},
		{"assert voids a fence ticket granted after the loss", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "del"},
			{op: "prepare", ticket: "none"},
			{op: "prepare", ticket: "fence"},
			{op: "assert", token: "w", lease: lease, ticket: "lost"},
			{op: "populate", version: 5, want: "dirty:0"},
		}},
		{"assert over a value a fenced reader stored makes it dirty again", []step{
			{op: "set", version: 5},
			{op: "assert", token: "w", lease: lease, ticket: "lost", want: "dirty:5"},
			{op: "publish", token: "w", version: 6, want: "value:6"},
		}},
		{"a writer marking after the horizon publishes a value", []step{
			{op: "prepare", ticket: "none", want: "dirty:0"},
			{op: "sleep", sleep: horizon + 50*time.Millisecond},
			{op: "mark", token: "w", lease: lease},
			{op: "publish", token: "w", version: 4, want: "value:4"},
		}},
		{"populate never recreates a missing key", []step{
			value1,
			{op: "mark", token: "w", lease: 10 * time.Millisecond},
			{op: "sleep", sleep: 30 * time.Millisecond},
			{op: "prepare", ticket: "plain"},
			{op: "del", want: "missing"},
			{op: "populate", version: 1, want: "missing"},
		}},
		{"a mark after prepare voids the ticket", []step{
			value1,
			{op: "mark", token: "w", lease: 10 * time.Millisecond},
			{op: "sleep", sleep: 30 * time.Millisecond},
			{op: "prepare", ticket: "plain"},
			{op: "mark", token: "w2", lease: lease},
			{op: "populate", version: 1, want: "dirty:1"},
		}},
		{"populate over a value stores only a newer version", []step{
			{op: "set", version: 5, want: "value:5"},
			{op: "populate", token: "any", version: 4, want: "value:5"},
			{op: "populate", token: "any", version: 6, want: "value:6"},
		}},
		{"a writer whose token was lost cannot publish a value", []step{
			{op: "prepare", want: "dirty:0"},
			{op: "sleep", sleep: horizon + 50*time.Millisecond},
			{op: "mark", token: "w2", lease: 10 * time.Millisecond},
			{op: "sleep", sleep: 30 * time.Millisecond},
			{op: "publish", token: "lost", version: 3, want: "dirty:3"},
		}},
		{"publish into a missing key stores nothing", []step{
			{op: "publish", token: "w", version: 3, want: "missing"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := startCache(t)
			ctx := context.Background()
			ticket := ""
			for i, s := range tc.steps {
				var err error
				switch s.op {
				case "set":
					cl := c.Client()
					err = cl.Do(ctx, cl.B().Set().Key("k").Value(string(valkey.AppendEnvelope(nil, valkey.Envelope{Key: "k", Version: s.version, Payload: []byte("p")}))).Build()).Error()
				case "del":
					cl := c.Client()
					err = cl.Do(ctx, cl.B().Del().Key("k").Build()).Error()
				case "mark":
					err = c.Mark(ctx, []string{"k"}, s.token, s.lease)
				case "publish":
					err = c.Publish(ctx, []writethrough.Publication{{Key: "k", Token: s.token, Version: s.version, Data: []byte("p")}})
				case "assert":
					var lost int
					lost, err = c.Assert(ctx, []string{"k"}, s.token, s.lease)
					if got := map[int]string{0: "kept", 1: "lost"}[lost]; err == nil && s.ticket != "" && got != s.ticket {
						t.Fatalf("step %d assert: %s, want %s", i, got, s.ticket)
					}
				case "prepare":
					var tickets []writethrough.Ticket
					tickets, err = c.Prepare(ctx, []string{"k"}, []bool{s.hot})
					if err == nil {
						ticket = tickets[0].ID
						kind := "none"
						switch {
						case tickets[0].Fence:
							kind = "fence"
						case ticket != "":
							kind = "plain"
						}
						if s.ticket != "" && kind != s.ticket {
							t.Fatalf("step %d prepare: ticket %q (%s), want %s", i, ticket, kind, s.ticket)
						}
					}
				case "populate":
					tk := ticket
					if s.token != "" {
						tk = s.token
					}
					_, err = c.Populate(ctx, []writethrough.Publication{{Key: "k", Token: tk, Version: s.version, Data: []byte("p")}})
				case "sleep":
					time.Sleep(s.sleep)
				}
				if err != nil {
					t.Fatalf("step %d %s: %v", i, s.op, err)
				}
				if s.want != "" {
					if got := state(t, c); got != s.want {
						t.Fatalf("after step %d %s: state %s, want %s", i, s.op, got, s.want)
					}
				}
			}
		})
	}
}

func TestMarkRefusesLeaseBeyondHorizon(t *testing.T) {
	c := startCache(t)
	if err := c.Mark(context.Background(), []string{"k"}, "w", 2*horizon); err == nil {
		t.Fatal("Mark accepted a lease longer than the horizon")
	}
}
