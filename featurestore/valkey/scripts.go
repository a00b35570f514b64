package valkey

// The envelope, as stored in one string per key (see envelope.go for the Go side):
//
//	VALUE  "V" <key binding> <version> "|" <payload>
//	DIRTY  "D" <key binding> <newest version> "|" <horizon ms> "|" <ticket> "|" <tokens> "|" <payload>
//	binding <length of the key> ":" <the key>
//	tokens  <token> ":" <lease expiry ms> ":" <early 0|1>, joined by ","
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
`

// markLua adds ARGV[1] with a lease of ARGV[2] ms to the entry d (nil: missing), as
// MARK does, and stores it. A VALUE becomes DIRTY remembering it as the newest. A missing
// key may have lost the tokens of writers still in flight, so it becomes DIRTY with a
// horizon (ARGV[3] ms) away; a token added before the horizon is "early" and cannot by
// itself turn the key back into a VALUE. Marking clears any reader's ticket.
const markLua = `
local function mark(d, now)
  if d == nil then
    d = {kind = 'D', ver = 0, horizon = now + tonumber(ARGV[3]), ticket = '', tokens = {}, payload = ''}
  elseif d.kind == 'V' then
    d = {kind = 'D', ver = d.ver, horizon = 0, ticket = '', tokens = {}, payload = d.payload}
  end
  d.ticket = ''
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
// 0 after adding it back as MARK would. A writer runs it between its database read and
// its conditional put: if the entry was lost since MARK, readers may have fenced the
// key and populated it, and the token must be back before the put can land.
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

// publishScript: ARGV token, version, payload, value ttl ms. Returns 1 if the key is now a
// VALUE, 2 if it stays DIRTY, 0 if nothing was stored.
// The newest committed version is carried in the marker, so the last writer out stores
// the newest, not its own. Only a writer whose own token was still there, with no other
// token left (an expired one may belong to a writer that committed and died), past the
// horizon, may turn the key into a VALUE. A missing key stays missing.
const publishScript = prelude + `
local now = now_ms()
local d = parse(redis.call('GET', KEYS[1]))
local ver = tonumber(ARGV[2])
if d == nil then return 0 end
if d.kind == 'V' then
  if ver > d.ver then
    redis.call('SET', KEYS[1], value(ver, ARGV[3]), 'PX', ARGV[4])
    return 1
  end
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
if ver > d.ver then
  d.ver = ver
  d.payload = ARGV[3]
end
if mine and (not early) and #rest == 0 and now >= d.horizon then
  redis.call('SET', KEYS[1], value(d.ver, d.payload), 'PX', ARGV[4])
  return 1
end
redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
return 2
`

// prepareScript: ARGV ticket, horizon ms, dirty ttl ms, fence window ms, hot (1 or 0).
// Returns the ticket when the reader may populate after reading the database,
// "fence:<since>:<ticket>" when it may populate only after a fenced read (one that raises
// the item's version in the database), else "".
// Expired tokens are dropped here, and only here: the database read that follows starts
// after their leases ended, so it sees whatever those writers committed. Before the
// horizon a writer whose token was lost may still commit, so only a fenced read may
// populate then (see the writethrough package doc). A fence is a database write, so it
// is spent only on keys read again: the first reader since the entry was recreated or
// marked records "seen" in the ticket field and reads plainly, unless its replica served
// the key from the cache lately (hot), which says the key will be read again; later
// readers get one fence ticket per fence window, so that concurrent readers do not all
// fence.
const prepareScript = prelude + `
local now = now_ms()
local hot = ARGV[5] == '1'
local d = parse(redis.call('GET', KEYS[1]))
if d == nil then
  d = {kind = 'D', ver = 0, horizon = now + tonumber(ARGV[2]), ticket = 'seen', tokens = {}, payload = ''}
  if hot then d.ticket = 'fence:' .. fmt(now) .. ':' .. ARGV[1] end
  redis.call('SET', KEYS[1], dirty(d), 'PX', ARGV[3])
  if hot then return d.ticket end
  return ''
end
if d.kind == 'V' then return '' end
for _, t in ipairs(d.tokens) do
  if t[2] > now then return '' end
end
d.tokens = {}
if now < d.horizon then
  local since = tonumber(string.match(d.ticket, '^fence:(%d+):'))
  if (d.ticket == '' and not hot) or (since ~= nil and now < since + tonumber(ARGV[4])) then
    if d.ticket == '' then d.ticket = 'seen' end
    redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
    return ''
  end
  d.ticket = 'fence:' .. fmt(now) .. ':' .. ARGV[1]
else
  d.ticket = ARGV[1]
end
redis.call('SET', KEYS[1], dirty(d), 'KEEPTTL')
return d.ticket
`

// populateScript: ARGV ticket, version, payload, value ttl ms. Returns 1 if stored.
// Stores only over the reader's own ticket (no MARK since PREPARE) or over an older VALUE;
// never over a missing key, whose state may have been lost since PREPARE.
const populateScript = prelude + `
local d = parse(redis.call('GET', KEYS[1]))
local ver = tonumber(ARGV[2])
if d == nil then return 0 end
if d.kind == 'V' then
  if ver > d.ver then
    redis.call('SET', KEYS[1], value(ver, ARGV[3]), 'PX', ARGV[4])
    return 1
  end
  return 0
end
if d.ticket ~= ARGV[1] or #d.tokens > 0 or ver < d.ver then return 0 end
redis.call('SET', KEYS[1], value(ver, ARGV[3]), 'PX', ARGV[4])
return 1
`
