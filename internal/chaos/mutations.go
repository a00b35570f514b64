package chaos

import (
	"context"
	"fmt"
	"strconv"
	"time"

	vk "github.com/valkey-io/valkey-go"

	"github.com/dsfeatures/featurestore/featurestore/valkey"
	"github.com/dsfeatures/featurestore/featurestore/writethrough"
)

// Mutations are deliberately broken protocols: a run with one must find violations, which
// shows that the checker and the faults can catch the bug each rule of the protocol
// prevents.
var Mutations = []string{
	// POPULATE as a plain SET: a reader's late populate overwrites a newer value.
	"plain-populate",
	// PUBLISH stores the writer's own version once its token is gone, instead of the
	// newest carried in the marker: the first writer to commit may publish last.
	"publish-own",
	// ASSERT does nothing: a writer whose token was lost in a flush puts anyway, after a
	// reader fenced and populated the key.
	"no-assert",
	// A fenced read does not raise the version (the in-memory database only): a writer
	// that read before the fence still commits after the reader populated.
	"fence-without-bump",
	// Writes on a replicated cluster do not WAIT for a replica to have their MARK: a
	// failover can lose a write's fence and serve the value from before it.
	"no-wait",
	// A hot key's reader (its replica served the key lately) populates after a plain
	// read where it was granted a fence: the first reader after a flush heals the key at
	// once, but without the version raise a writer whose token the flush took still
	// commits after the populate.
	"hot-plain",
}

// plainPopulateLua stores what a reader read, whatever the key holds now.
const plainPopulateLua = `
redis.call('SET', KEYS[1], value(tonumber(ARGV[2]), ARGV[3]), 'PX', ARGV[4])
return 1
`

// publishOwnLua removes the writer's token and, when no token is left, stores the
// writer's own version as the value.
const publishOwnLua = `
local d = parse(redis.call('GET', KEYS[1]))
if d == nil then return 0 end
if d.kind == 'V' then
  redis.call('SET', KEYS[1], value(tonumber(ARGV[2]), ARGV[3]), 'PX', ARGV[4])
  return 1
end
local rest = {}
for _, t in ipairs(d.tokens) do
  if t[1] ~= ARGV[1] then rest[#rest + 1] = t end
end
d.tokens = rest
if #rest == 0 then
  redis.call('SET', KEYS[1], value(tonumber(ARGV[2]), ARGV[3]), 'PX', ARGV[4])
  return 1
end
d.ver = tonumber(ARGV[2])
d.payload = ARGV[3]
redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
return 2
`

// mutatedCache replaces one operation of a real cache by a broken script.
type mutatedCache struct {
	writethrough.Cache
	client vk.Client
	script string
	// ttl of stored values, as the real cache uses.
	ttl time.Duration
}

func mutate(name string, cache writethrough.Cache, client vk.Client) (writethrough.Cache, error) {
	m := &mutatedCache{Cache: cache, client: client, ttl: 24 * time.Hour}
	switch name {
	case "plain-populate":
		m.script = valkey.EnvelopeLua + plainPopulateLua
		return populateMutation{m}, nil
	case "publish-own":
		m.script = valkey.EnvelopeLua + publishOwnLua
		return publishMutation{m}, nil
	case "no-assert":
		return noAssert{m}, nil
	case "hot-plain":
		return hotPlain{m}, nil
	}
	return nil, fmt.Errorf("unknown mutation %q (known: %v)", name, Mutations)
}

// run executes the broken script once per publication, in one pipeline.
func (m *mutatedCache) run(ctx context.Context, pubs []writethrough.Publication) (int, error) {
	cmds := make(vk.Commands, len(pubs))
	for i, p := range pubs {
		cmds[i] = m.client.B().Eval().Script(m.script).Numkeys(1).Key(p.Key).
			Arg(p.Token, strconv.FormatInt(p.Version, 10), vk.BinaryString(p.Data), strconv.FormatInt(m.ttl.Milliseconds(), 10)).Build()
	}
	stored := 0
	for _, r := range m.client.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && !vk.IsValkeyNil(err) {
			return stored, err
		}
		if n, _ := r.AsInt64(); n == 1 {
			stored++
		}
	}
	return stored, nil
}

type populateMutation struct{ *mutatedCache }

func (m populateMutation) Populate(ctx context.Context, pops []writethrough.Publication) (int, error) {
	return m.run(ctx, pops)
}

type publishMutation struct{ *mutatedCache }

func (m publishMutation) Publish(ctx context.Context, pubs []writethrough.Publication) error {
	_, err := m.run(ctx, pubs)
	return err
}

type noAssert struct{ *mutatedCache }

func (noAssert) Assert(context.Context, []string, string, time.Duration) (int, error) { return 0, nil }

type hotPlain struct{ *mutatedCache }

// Prepare grants what the real one does, but hot keys' fence tickets as plain ones:
// the ticket still matches at POPULATE, and the read that precedes it raises nothing.
func (m hotPlain) Prepare(ctx context.Context, keys []string, hot []bool) ([]writethrough.Ticket, error) {
	tickets, err := m.Cache.Prepare(ctx, keys, hot)
	for i := range tickets {
		if hot[i] {
			tickets[i].Fence = false
		}
	}
	return tickets, err
}
