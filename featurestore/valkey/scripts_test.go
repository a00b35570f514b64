package valkey_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
	"github.com/dsfeatures/featurestore/internal/devstack"
)

const (
	horizon = 300 * time.Millisecond
	lease   = 200 * time.Millisecond
)

func startCache(t *testing.T) *valkey.Cache {
	t.Helper()
	return dialCache(t, startServer(t))
}

// startServer starts a valkey-server for the test and returns its address.
func startServer(t *testing.T) string {
	t.Helper()
	bin, err := devstack.FindValkeyServer(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	vk, err := devstack.StartValkey(context.Background(), bin, devstack.ValkeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vk.Stop)
	return vk.Addr
}

func dialCache(t *testing.T, addr string) *valkey.Cache {
	t.Helper()
	c, err := valkey.Dial(context.Background(), []string{addr}, valkey.Options{Horizon: horizon})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// step is one operation of a scenario on the key "k".
type step struct {
	op      string // set, mark, assert, publish, prepare, record, sleep, del
	token   string // writer token; for record, the ticket ("-" for none; "" the last one Prepare granted)
	version int64
	lease   time.Duration
	sleep   time.Duration
	// want is the state after the step: "missing", "value:N", "dirty:N", "prov:N" (a
	// provisional entry; N the newest version), or "" to skip the check. ticket for
	// prepare: "none" or "granted" ("" skips the check); for assert, "lost" or "kept".
	want   string
	ticket string
}

// serverMs is the ValKey server's clock.
func serverMs(t *testing.T, c *valkey.Cache) int64 {
	t.Helper()
	cl := c.Client()
	v, err := cl.Do(context.Background(), cl.B().Time().Build()).AsIntSlice()
	if err != nil || len(v) != 2 {
		t.Fatalf("TIME: %v %v", v, err)
	}
	return v[0]*1000 + v[1]/1000
}

// checkServes requires RECORD's serves report to say exactly whether the entry was left
// servable at the version recorded (waiting readers answer with it on that word): a
// VALUE of that version, or a provisional entry of it whose horizon was ahead when the
// script ran, which was between the server times before and after. Where the horizon
// fell in between, either answer is right.
func checkServes(t *testing.T, c *valkey.Cache, step int, version int64, serves bool, before, after int64) {
	t.Helper()
	cl := c.Client()
	b, err := cl.Do(context.Background(), cl.B().Get().Key("k").Build()).AsBytes()
	var e valkey.Envelope
	if err == nil {
		if e, err = valkey.DecodeEnvelope(b); err != nil {
			t.Fatal(err)
		}
	}
	var want bool
	switch {
	case err != nil || e.Version != version || e.Dirty && !e.Provisional():
		want = false
	case !e.Dirty:
		want = true
	case after < e.HorizonMs:
		want = true
	case before >= e.HorizonMs:
		want = false
	default:
		return
	}
	if serves != want {
		t.Fatalf("step %d record: serves %v with the entry %s after recording version %d", step, serves, state(t, c), version)
	}
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
	switch {
	case e.Provisional():
		return fmt.Sprintf("prov:%d", e.Version)
	case e.Dirty:
		return fmt.Sprintf("dirty:%d", e.Version)
	}
	return fmt.Sprintf("value:%d", e.Version)
}

func TestScripts(t *testing.T) {
	value1 := step{op: "set", version: 1, want: "value:1"}
	past := step{op: "sleep", sleep: horizon + 50*time.Millisecond}
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
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 5, want: "value:5"},
		}},
		{"a live token refuses a ticket", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "prepare", ticket: "none", want: "dirty:1"},
		}},
		{"a missing key's first reader stores at once, provisionally until the horizon", []step{
			{op: "prepare", ticket: "granted", want: "dirty:0"},
			{op: "record", version: 7, want: "prov:7"},
			{op: "prepare", ticket: "none", want: "prov:7"},
			past,
			{op: "prepare", ticket: "granted", want: "prov:7"},
			{op: "record", version: 7, want: "value:7"},
		}},
		{"a renewal that read a newer version makes the entry dirty first", []step{
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 7, want: "prov:7"},
			past,
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 8, want: "dirty:8"},
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 8, want: "value:8"},
		}},
		{"a renewal ticket dies with a mark", []step{
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 7, want: "prov:7"},
			past,
			{op: "prepare", ticket: "granted"},
			{op: "mark", token: "w", lease: lease},
			{op: "record", version: 7, want: "dirty:7"},
		}},
		{"readers share a ticket, and the newest of their reads stays", []step{
			{op: "prepare", ticket: "granted"},
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 3, want: "prov:3"},
			{op: "record", version: 2, want: "prov:3"},
		}},
		{"a record newer than a provisional entry makes it dirty until a reader heals it", []step{
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 3, want: "prov:3"},
			{op: "record", token: "-", version: 5, want: "dirty:5"},
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 4, want: "prov:5"},
		}},
		{"a record of a provisional entry's own version reports it served before its horizon, not after", []step{
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 3, want: "prov:3"},
			{op: "record", token: "-", version: 3, want: "prov:3"},
			{op: "record", token: "-", version: 2, want: "prov:3"},
			past,
			{op: "record", token: "-", version: 3, want: "prov:3"},
		}},
		{"a record newer than a value makes it dirty", []step{
			{op: "set", version: 5},
			{op: "record", token: "-", version: 4, want: "value:5"},
			{op: "record", token: "-", version: 6, want: "dirty:6"},
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 6, want: "value:6"},
		}},
		{"a record without a ticket raises what a later store stores", []step{
			{op: "prepare", ticket: "granted"},
			{op: "record", token: "-", version: 9, want: "dirty:9"},
			{op: "record", version: 4, want: "prov:9"},
		}},
		{"a ticket granted before the horizon stores nothing after it", []step{
			{op: "prepare", ticket: "granted"},
			past,
			{op: "record", version: 3, want: "dirty:3"},
		}},
		{"an early writer publishes provisionally before the horizon", []step{
			{op: "prepare", want: "dirty:0"},
			{op: "mark", token: "w", lease: lease},
			{op: "prepare", ticket: "none"},
			{op: "publish", token: "w", version: 2, want: "prov:2"},
			past,
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 2, want: "value:2"},
		}},
		{"an early writer publishing after the horizon leaves the key dirty", []step{
			{op: "mark", token: "w", lease: time.Second, want: "dirty:0"},
			past,
			{op: "publish", token: "w", version: 2, want: "dirty:2"},
		}},
		{"a writer marking after the horizon publishes a value", []step{
			{op: "prepare", want: "dirty:0"},
			past,
			{op: "mark", token: "w", lease: lease},
			{op: "publish", token: "w", version: 4, want: "value:4"},
		}},
		{"assert keeps a token that is there", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "assert", token: "w", lease: lease, ticket: "kept", want: "dirty:1"},
			{op: "publish", token: "w", version: 2, want: "value:2"},
		}},
		{"assert puts a lost token back, early, and voids tickets granted since", []step{
			value1,
			{op: "mark", token: "w", lease: lease},
			{op: "del", want: "missing"},
			{op: "prepare", ticket: "granted", want: "dirty:0"},
			{op: "assert", token: "w", lease: lease, ticket: "lost", want: "dirty:0"},
			{op: "record", version: 1, want: "dirty:1"},
			{op: "prepare", ticket: "none"},
			{op: "publish", token: "w", version: 2, want: "prov:2"},
		}},
		{"assert over a provisional entry makes it dirty again", []step{
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 5, want: "prov:5"},
			{op: "assert", token: "w", lease: lease, ticket: "lost", want: "dirty:5"},
			{op: "publish", token: "w", version: 6, want: "prov:6"},
		}},
		{"record never stores over a missing key, only recreates it dirty with its version", []step{
			{op: "prepare", ticket: "granted"},
			{op: "del", want: "missing"},
			{op: "record", version: 4, want: "dirty:4"},
			{op: "record", version: 4, want: "dirty:4"},
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 3, want: "prov:4"},
		}},
		{"a mark after prepare voids the ticket", []step{
			value1,
			{op: "mark", token: "w", lease: 10 * time.Millisecond},
			{op: "sleep", sleep: 30 * time.Millisecond},
			{op: "prepare", ticket: "granted"},
			{op: "mark", token: "w2", lease: lease},
			{op: "record", version: 1, want: "dirty:1"},
		}},
		{"a writer whose token was lost makes an older provisional entry dirty", []step{
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 3, want: "prov:3"},
			{op: "publish", token: "lost", version: 2, want: "prov:3"},
			{op: "publish", token: "lost", version: 4, want: "dirty:4"},
		}},
		{"a writer whose token was lost makes an older value dirty", []step{
			{op: "set", version: 3},
			{op: "publish", token: "lost", version: 4, want: "dirty:4"},
		}},
		{"a writer whose token was lost cannot publish a value", []step{
			{op: "prepare", want: "dirty:0"},
			past,
			{op: "mark", token: "w2", lease: 10 * time.Millisecond},
			{op: "sleep", sleep: 30 * time.Millisecond},
			{op: "publish", token: "lost", version: 3, want: "dirty:3"},
		}},
		{"publish into a missing key recreates it dirty with the writer's version", []step{
			{op: "publish", token: "w", version: 3, want: "dirty:3"},
			{op: "prepare", ticket: "granted"},
			{op: "record", version: 2, want: "prov:3"},
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
					var tickets []string
					tickets, err = c.Prepare(ctx, []string{"k"})
					if err == nil {
						ticket = tickets[0]
						kind := "none"
						if ticket != "" {
							kind = "granted"
						}
						if s.ticket != "" && kind != s.ticket {
							t.Fatalf("step %d prepare: ticket %q (%s), want %s", i, ticket, kind, s.ticket)
						}
					}
				case "record":
					tk := ticket
					switch s.token {
					case "-":
						tk = ""
					case "":
					default:
						tk = s.token
					}
					before := serverMs(t, c)
					var res []writethrough.Recorded
					res, err = c.Record(ctx, []writethrough.Publication{{Key: "k", Token: tk, Version: s.version, Data: []byte("p")}})
					if err == nil {
						checkServes(t, c, i, s.version, res[0].Serves, before, serverMs(t, c))
					}
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

// TestGetServesProvisionalUntilTheHorizon: Get serves a provisional entry as a VALUE
// while the server's clock is surely before its horizon, then, for half a horizon more,
// as a VALUE to renew, and as DIRTY once that may have passed.
func TestGetServesProvisionalUntilTheHorizon(t *testing.T) {
	c := startCache(t)
	ctx := context.Background()
	tickets, err := c.Prepare(ctx, []string{"k"})
	if err != nil || tickets[0] == "" {
		t.Fatalf("prepare: %v %v", tickets, err)
	}
	if res, err := c.Record(ctx, []writethrough.Publication{{Key: "k", Token: tickets[0], Version: 7, Data: []byte("p")}}); err != nil || res[0] != (writethrough.Recorded{Stored: true, Serves: true}) {
		t.Fatalf("record: %+v, %v, want stored and served", res, err)
	}
	got, err := c.Get(ctx, []string{"k"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].State != writethrough.CacheValue || got[0].Version != 7 || string(got[0].Data) != "p" || got[0].Renew {
		t.Fatalf("before the horizon: %+v, want a servable value 7, not yet to renew", got[0])
	}
	time.Sleep(horizon + 20*time.Millisecond)
	if got, err = c.Get(ctx, []string{"k"}); err != nil {
		t.Fatal(err)
	}
	if got[0].State != writethrough.CacheValue || !got[0].Renew {
		t.Fatalf("past the horizon: %+v, want a servable value to renew", got[0])
	}
	time.Sleep(horizon / 2)
	if got, err = c.Get(ctx, []string{"k"}); err != nil {
		t.Fatal(err)
	}
	if got[0].State != writethrough.CacheDirty {
		t.Fatalf("half a horizon later: %+v, want dirty", got[0])
	}
}

// TestProvisionalEntriesNeedOneClockSample: after a loss, every reader GETs provisional
// entries at once. The node's clock is sampled once per slot: by the RECORD that stored
// the entry on its own replica (its script's own reading, with no TIME call of its own),
// and by one of many concurrent GETs on another.
func TestProvisionalEntriesNeedOneClockSample(t *testing.T) {
	addr := startServer(t)
	c := dialCache(t, addr)
	ctx := context.Background()
	keys := []string{"a", "b", "c", "d"}
	tickets, err := c.Prepare(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]writethrough.Publication, len(keys))
	for i, k := range keys {
		recs[i] = writethrough.Publication{Key: k, Token: tickets[i], Version: 7, Data: []byte("p")}
	}
	res, err := c.Record(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !r.Stored || !r.Serves {
			t.Fatalf("record of %s: %+v, want stored and served", keys[i], r)
		}
	}
	recorded := time.Now()
	timeCalls := func() int {
		info, err := c.Client().Do(ctx, c.Client().B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_eval_ro:calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	if n := timeCalls(); n != 0 {
		t.Fatalf("RECORD of %d provisional entries took %d clock samples of its own, want none", len(keys), n)
	}
	check := func(c *valkey.Cache, who string) {
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				got, err := c.Get(ctx, keys)
				if err != nil {
					t.Error(err)
					return
				}
				for i, e := range got {
					// Served until 1.5 horizons after PREPARE; a slow machine may get
					// here later, and the sample count is what this test is about.
					if e.State != writethrough.CacheValue && time.Since(recorded) < horizon {
						t.Errorf("%s: %s is %+v, want servable", who, keys[i], e)
					}
				}
			})
		}
		wg.Wait()
	}
	check(c, "the recording replica")
	if n := timeCalls(); n != 0 {
		t.Fatalf("50 GETs on the replica that recorded took %d samples, want none", n)
	}
	check(dialCache(t, addr), "another replica")
	if n := timeCalls(); n != len(keys) {
		t.Fatalf("50 concurrent GETs on another replica took %d samples, want one per slot (%d)", n, len(keys))
	}
}
