package valkey

// The envelope, as stored in one string per key (see envelope.go for the Go side):
//
//	VALUE  "V" <key binding> <version> "|" <payload>
//	DIRTY  "D" <key binding> <newest version> "|" <horizon ms> "|" <generation> "|" <tokens> "|" <payload>
//	binding <length of the key> ":" <the key>
//	tokens  <token> ":" <lease expiry ms> ":" <early 0|1>, joined by ","
//
// The generation names the entry's current state for readers: a reader's ticket is the
// generation PREPARE saw, and any MARK, loss or newer record gives the entry a new one.
// A generation that begins with "P:" marks a provisional entry: servable, until its
// horizon, as a VALUE of the newest version (see the writethrough package doc).
//
// The binding ties an entry to its key: a value copied or renamed to another key (by an
// operator, or by anyone who can reach the cache) is not that key's, so the scripts treat
// it as lost and readers go to the database instead of serving another entity's data.
// All times are the ValKey server's clock (TIME), so replicas' clock skew does not
// matter. Numbers are decimal; Lua keeps integers exact below 2^53, which covers versions
// in microseconds for centuries. Every script touches one key, so all of them run
// unchanged on ValKey Cluster.
// EnvelopeLua is the Lua that parses and formats envelopes, shared by every script. It is
// exported for tests that run scripts of their own against the same format (the chaos
// harness's deliberately broken protocols).
const EnvelopeLua = prelude

const prelude = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%.0f', n) end
local binding = tostring(#KEYS[1]) .. ':' .. KEYS[1]
local function parse(s)
  if not s then return nil end
  local kind = string.sub(s, 1, 1)
  if string.sub(s, 2, 1 + #binding) ~= binding then return nil end -- not this key's: as if lost
  local r = string.sub(s, 2 + #binding)
  if kind == 'V' then
    local p = string.find(r, '|', 1, true)
    return {kind = 'V', ver = tonumber(string.sub(r, 1, p - 1)), payload = string.sub(r, p + 1)}
  end
  local p1 = string.find(r, '|', 1, true)
  local p2 = string.find(r, '|', p1 + 1, true)
  local p3 = string.find(r, '|', p2 + 1, true)
  local p4 = string.find(r, '|', p3 + 1, true)
  local d = {kind = 'D', ver = tonumber(string.sub(r, 1, p1 - 1)),
    horizon = tonumber(string.sub(r, p1 + 1, p2 - 1)), ticket = string.sub(r, p2 + 1, p3 - 1),
    tokens = {}, payload = string.sub(r, p4 + 1)}
  for tok, exp, early in string.gmatch(string.sub(r, p3 + 1, p4 - 1), '([^:,]+):(%d+):(%d)') do
    d.tokens[#d.tokens + 1] = {tok, tonumber(exp), early}
  end
  return d
end
local function value(ver, payload) return 'V' .. binding .. fmt(ver) .. '|' .. payload end
local function dirty(d)
  local parts = {}
  for i, t in ipairs(d.tokens) do parts[i] = t[1] .. ':' .. fmt(t[2]) .. ':' .. t[3] end
  return 'D' .. binding .. fmt(d.ver) .. '|' .. fmt(d.horizon) .. '|' .. d.ticket .. '|' ..
    table.concat(parts, ',') .. '|' .. d.payload
end
local function provisional(d) return string.sub(d.ticket, 1, 2) == 'P:' end
-- floor recreates a lost entry as DIRTY holding ver as its newest, with a horizon and a
-- new generation, as PREPARE recreates one: nothing older can be stored over it, and on a
-- replicated cache it is a write that the WAIT after it covers (the eviction or flush that
-- lost the entry is no script's write).
local function floor(ver, payload, horizon, gen, ttl, now)
  local d = {kind = 'D', ver = ver, horizon = now + tonumber(horizon), ticket = gen, tokens = {}, payload = payload}
  redis.call('SET', KEYS[1], dirty(d), 'PX', ttl)
  return 0
end
local function store_value(d, ttl)
  redis.call('SET', KEYS[1], value(d.ver, d.payload), 'PX', ttl)
  return 1
end
local function store_provisional(d)
  d.ticket = 'P:' .. d.ticket
  redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
  return 1
end
`

// markLua adds ARGV[1] with a lease of ARGV[2] ms to the entry d (nil: missing), as
// MARK does, and stores it. A VALUE becomes DIRTY remembering it as the newest. A missing
// key may have lost the tokens of writers still in flight, so it becomes DIRTY with a
// horizon (ARGV[3] ms) away; a token added before the horizon is "early" and cannot by
// itself turn the key back into a VALUE. Marking gives the entry a new generation, which
// voids readers' tickets and ends a provisional entry.
const markLua = `
local function mark(d, now)
  if d == nil then
    d = {kind = 'D', ver = 0, horizon = now + tonumber(ARGV[3]), ticket = '', tokens = {}, payload = ''}
  elseif d.kind == 'V' then
    d = {kind = 'D', ver = d.ver, horizon = 0, ticket = '', tokens = {}, payload = d.payload}
  end
  d.ticket = 'g' .. ARGV[1]
  local early = '0'
  if now < d.horizon then early = '1' end
  d.tokens[#d.tokens + 1] = {ARGV[1], now + tonumber(ARGV[2]), early}
  redis.call('SET', KEYS[1], dirty(d), 'PX', ARGV[4])
end
`

// markScript: ARGV token, lease ms, horizon ms, dirty ttl ms.
const markScript = prelude + markLua + `
mark(parse(redis.call('GET', KEYS[1])), now_ms())
return 1
`

// assertScript: ARGV as markScript. Returns 1 if the writer's token is still there, else
// 0 after adding it back as MARK would. A writer runs it before each conditional put: if
// the entry was lost since MARK, readers may have stored a value read before the put, and
// the token must be back (voiding their tickets) before the put can land.
const assertScript = prelude + markLua + `
local d = parse(redis.call('GET', KEYS[1]))
if d ~= nil and d.kind == 'D' then
  for _, t in ipairs(d.tokens) do
    if t[1] == ARGV[1] then return 1 end
  end
end
mark(d, now_ms())
return 0
`

// unserveLua turns an entry that may be served (a VALUE, or a provisional entry) into a
// plain DIRTY one of version ver with a new generation ARGV[idArg]: the next reader heals
// it. It is how a version newer than a servable one is recorded, so that on a replicated
// cache a promoted replica never holds a servable state older than one a reader saw.
const unserveLua = `
local function unserve(d, ver, payload, gen)
  if d.kind == 'V' then
    d = {kind = 'D', ver = ver, horizon = 0, ticket = gen, tokens = {}, payload = payload}
  else
    d.ver, d.payload, d.ticket = ver, payload, gen
  end
  redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
  return 3
end
`

// publishScript: ARGV token, version, payload, value ttl ms, horizon ms, write (1: rewrite
// the entry even when nothing changes). Returns 1 if the key may now be served (a VALUE,
// or a provisional entry), 2 if it stays DIRTY, 3 if a servable entry was made DIRTY by a
// newer version, 0 otherwise.
// The newest committed version is carried in the marker, so the last writer out stores
// the newest, not its own. Only a writer whose own token was still there, with no other
// token left (an expired one may belong to a writer that committed and died), may make
// the key servable: as a VALUE if its token was not early, as a provisional entry (until
// the horizon) if it was and the horizon is ahead. A missing key is recreated DIRTY with
// the writer's version as its newest (floor). A writer whose token a loss took may find a
// servable entry older than its commit: it makes it DIRTY. Either way, with replicas, it
// must wait for them before its acknowledgement.
const publishScript = prelude + unserveLua + `
local now = now_ms()
local d = parse(redis.call('GET', KEYS[1]))
local ver = tonumber(ARGV[2])
if d == nil then return floor(ver, ARGV[3], ARGV[5], 'g' .. ARGV[1], ARGV[4], now) end
if d.kind == 'V' then
  if ver > d.ver then return unserve(d, ver, ARGV[3], 'g' .. ARGV[1]) end
  if ARGV[6] == '1' then redis.call('SET', KEYS[1], value(d.ver, d.payload), 'KEEPTTL') end
  return 0
end
local mine, early, rest = false, false, {}
for _, t in ipairs(d.tokens) do
  if t[1] == ARGV[1] then
    mine = true
    early = (t[3] == '1')
  else
    rest[#rest + 1] = t
  end
end
d.tokens = rest
if provisional(d) then
  if ver > d.ver then return unserve(d, ver, ARGV[3], 'g' .. ARGV[1]) end
  if ARGV[6] == '1' then redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL') end
  return 0
end
if ver > d.ver then
  d.ver = ver
  d.payload = ARGV[3]
end
if mine and #rest == 0 then
  if not early and now >= d.horizon then return store_value(d, ARGV[4]) end
  if now < d.horizon then return store_provisional(d) end
end
redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
return 2
`

// prepareScript: ARGV ticket id, horizon ms, dirty ttl ms. Returns the generation under
// which the reader may store what it reads from the database afterwards, or "".
// A missing key may have lost the tokens of writers still in flight: it is recreated
// DIRTY with a horizon, and its reader gets a ticket at once (what it stores is
// provisional until the horizon). Nothing is granted while a live token remains. Expired
// tokens are dropped here, and only here: the database read that follows starts after
// their leases ended, so it sees whatever those writers committed. Once the horizon has
// passed, a provisional entry grants its own name as a ticket to renew it (it stays
// servable meanwhile), and any other entry clears the horizon with a new generation, so
// tickets granted before it are void. Readers share a generation: any of them may store
// what it read, since RECORD keeps the newest. Every grant writes the entry, so a
// WAIT after PREPARE covers the state the ticket was granted on.
const prepareScript = prelude + `
local now = now_ms()
local d = parse(redis.call('GET', KEYS[1]))
if d == nil then
  d = {kind = 'D', ver = 0, horizon = now + tonumber(ARGV[2]), ticket = 'g' .. ARGV[1], tokens = {}, payload = ''}
  redis.call('SET', KEYS[1], dirty(d), 'PX', ARGV[3])
  return d.ticket
end
if d.kind == 'V' then return '' end
for _, t in ipairs(d.tokens) do
  if t[2] > now then return '' end
end
d.tokens = {}
if d.horizon > 0 and now >= d.horizon then
  if provisional(d) then
    -- A read from now on sees every put a loss's writers could land: it may renew the
    -- entry for good, while it is still served.
    redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
    return d.ticket
  end
  d.horizon = 0
  d.ticket = 'g' .. ARGV[1]
elseif provisional(d) then
  return ''
elseif string.sub(d.ticket, 1, 1) ~= 'g' then
  d.ticket = 'g' .. ARGV[1]
end
redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
return d.ticket
`

// recordScript: ARGV ticket ("" for none), version, payload, value ttl ms, id, write (1:
// rewrite the entry even when nothing changes), horizon ms. Returns {code, serves, now}:
// code 1 if it stored a VALUE, 2 if it stored a provisional entry (whose readers need the
// node's clock), 3 if it made a servable entry DIRTY, 0 otherwise; serves 1 if the entry
// is left servable at exactly the version recorded (a GET now would serve it: readers
// waiting for this one may take its item), else 0; now, the node's clock in ms (a clock
// sample for the key's slot).
// Every reader runs it before it answers with a version read from the database, so that
// no populate can later store anything older: the version raises the entry's newest (a
// servable entry older than it becomes DIRTY). A reader whose ticket still names the
// entry's generation (no MARK, loss or newer record since PREPARE) then stores the newest
// as a VALUE, or as a provisional entry while the horizon is ahead; a ticket granted
// before the horizon stores nothing once it has passed. A provisional entry is stored
// for good under a ticket granted after its horizon, if nothing newer was recorded since
// (a newer version makes it DIRTY first, so that no servable state changes version
// without passing through one that may not be served). A missing key is recreated DIRTY
// with the version read as its newest (floor), never stored as servable: its state may
// have been lost since PREPARE.
const recordScript = prelude + unserveLua + `
local now = now_ms()
local d = parse(redis.call('GET', KEYS[1]))
local ver = tonumber(ARGV[2])
-- served: the version the entry serves after this call (nil: none).
local function done(code, served)
  local serves = 0
  if served == ver then serves = 1 end
  return {code, serves, now}
end
if d == nil then
  floor(ver, ARGV[3], ARGV[7], 'g' .. ARGV[5], ARGV[4], now)
  return done(0)
end
if d.kind == 'V' then
  if ver > d.ver then return done(unserve(d, ver, ARGV[3], 'g' .. ARGV[5])) end
  if ARGV[6] == '1' then redis.call('SET', KEYS[1], value(d.ver, d.payload), 'KEEPTTL') end
  return done(0, d.ver)
end
if provisional(d) then
  if ver > d.ver then return done(unserve(d, ver, ARGV[3], 'g' .. ARGV[5])) end
  if ARGV[1] == d.ticket and now >= d.horizon then return done(store_value(d, ARGV[4]), d.ver) end
  if ARGV[6] == '1' then redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL') end
  -- Served until half a horizon past its own: surely so while the horizon is ahead.
  if now < d.horizon then return done(0, d.ver) end
  return done(0)
end
local changed = false
if ver > d.ver then
  d.ver = ver
  d.payload = ARGV[3]
  changed = true
end
if ARGV[1] ~= '' and d.ticket == ARGV[1] and #d.tokens == 0 then
  if d.horizon == 0 then return done(store_value(d, ARGV[4]), d.ver) end
  if now < d.horizon then
    store_provisional(d)
    return done(2, d.ver)
  end
end
if changed or ARGV[6] == '1' then redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL') end
return done(0)
`
