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
	// RECORD as a plain SET: a reader's late store overwrites a newer value.
	"plain-populate",
	// PUBLISH stores the writer's own version once its token is gone, instead of the
	// newest carried in the marker: the first writer to commit may publish last.
	"publish-own",
	// ASSERT does nothing: a writer whose token was lost in a flush puts anyway, after a
	// reader stored what it read before the put, and that value is served after a reader
	// without the cache answered the newer one (TestNoAssertIsCaught).
	"no-assert",
	// Readers record nothing but their own store: a reader answers with a version read
	// from the database, and another reader's older read, stored afterwards, is served
	// (TestNoRecordIsCaught).
	"no-record",
	// Writes on a replicated cluster do not WAIT for a replica to have their MARK: a
	// failover can lose a write's marker and serve the value from before it.
	"no-wait",
	// RECORD reports every record as left servable, so readers waiting for a read answer
	// with what it read even where RECORD stored nothing, and an older version than one
	// already answered is shared (TestShareUnservedIsCaught).
	"share-unserved",
}

// plainPopulateLua stores what a reader read, whatever the key holds now.
const plainPopulateLua = `
redis.call('SET', KEYS[1], value(tonumber(ARGV[2]), ARGV[3]), 'PX', ARGV[4])
return 1
`

// storeOnlyLua is RECORD without the record: it stores under a live ticket as the real
// one does, but a reader without one, or whose ticket is void, raises nothing.
const storeOnlyLua = `
local now = now_ms()
local d = parse(redis.call('GET', KEYS[1]))
local ver = tonumber(ARGV[2])
if d == nil or d.kind == 'V' or provisional(d) then return 0 end
if ARGV[1] == '' or d.ticket ~= ARGV[1] or #d.tokens > 0 then return 0 end
if ver > d.ver then
  d.ver = ver
  d.payload = ARGV[3]
end
if d.horizon == 0 then return store_value(d, ARGV[4]) end
if now < d.horizon then return store_provisional(d) end
return 0
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
		return recordMutation{m}, nil
	case "no-record":
		m.script = valkey.EnvelopeLua + storeOnlyLua
		return recordMutation{m}, nil
	case "publish-own":
		m.script = valkey.EnvelopeLua + publishOwnLua
		return publishMutation{m}, nil
	case "no-assert":
		return noAssert{m}, nil
	case "share-unserved":
		return shareUnserved{cache}, nil
	}
	return nil, fmt.Errorf("unknown mutation %q (known: %v)", name, Mutations)
}

// run executes the broken script once per publication, in one pipeline, and reports
// which stored (answered 1 or 2).
func (m *mutatedCache) run(ctx context.Context, pubs []writethrough.Publication) ([]writethrough.Recorded, error) {
	cmds := make(vk.Commands, len(pubs))
	for i, p := range pubs {
		cmds[i] = m.client.B().Eval().Script(m.script).Numkeys(1).Key(p.Key).
			Arg(p.Token, strconv.FormatInt(p.Version, 10), vk.BinaryString(p.Data), strconv.FormatInt(m.ttl.Milliseconds(), 10)).Build()
	}
	out := make([]writethrough.Recorded, len(pubs))
	for i, r := range m.client.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && !vk.IsValkeyNil(err) {
			return nil, err
		}
		// Serves stays false: waiters look in the cache again, so the mutation breaks
		// only its own rule.
		n, _ := r.AsInt64()
		out[i].Stored = n == 1 || n == 2
	}
	return out, nil
}

type recordMutation struct{ *mutatedCache }

func (m recordMutation) Record(ctx context.Context, recs []writethrough.Publication) ([]writethrough.Recorded, error) {
	return m.run(ctx, recs)
}

type publishMutation struct{ *mutatedCache }

func (m publishMutation) Publish(ctx context.Context, pubs []writethrough.Publication) error {
	_, err := m.run(ctx, pubs)
	return err
}

type noAssert struct{ *mutatedCache }

func (noAssert) Assert(context.Context, []string, string, time.Duration) (int, error) { return 0, nil }

// shareUnserved is the real cache whose Record claims every record left its entry
// servable at the version recorded.
type shareUnserved struct{ writethrough.Cache }

func (c shareUnserved) Record(ctx context.Context, recs []writethrough.Publication) ([]writethrough.Recorded, error) {
	res, err := c.Cache.Record(ctx, recs)
	for i := range res {
		res[i].Serves = true
	}
	return res, err
}
