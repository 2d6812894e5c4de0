-- bucket_redis.lua — the Redis bucket's script (bucket_redis.c holds the key's
-- layout).  The Makefile embeds this file in libpyrate; each bucket loads it
-- with its own rates and expiry written in as constants, so a put runs
-- straight-line code (one window read per rate) and builds no table and no
-- function; a rejection, waiting and the other operations go on past it, to
-- the rate tables and helpers.
--
-- Before loading, bucket_redis.c (script_text) repeats each block between
-- "-- @each rate" and "-- @end" once per rate, with @i@ (1, 2, ...), @limit@
-- and @interval@ of that rate, and writes in @largest@ (the largest interval),
-- @expire@ (the idle key's lifetime) and @period@ (how often a put at the
-- server clock refreshes the expiry: expire less the largest interval, the
-- slack beyond it; 0 or less refreshes at every put).
--
-- A put is the newest member (the tail: constant time), the last member before
-- each rate's window (skipped when the newest is older than the window, or the
-- oldest item is in it), ZADD and, now and then, PEXPIRE; a put at PYRATE_NOW
-- carries the server's clock as the client reckons it, so it needs no TIME on
-- the server (ops P and W; leak and op n still read TIME); a rejection reads
-- the member holding the unit that must leave first instead of storing, by
-- reverse rank (one read when items weigh 1).  A conversion between text and
-- number (strtod, sprintf) costs more than the Lua around it, so a put makes
-- few: scores, bounds and ranks go to redis.call as text, made with %d or kept
-- from TIME's reply and from the members (Redis would print a Lua number with
-- %.17g: exact for these integers, but slower still).  The script mirrors
-- pyr_decide of the core module (the conformance traces hold it to that).
local key, op, arg = KEYS[1], ARGV[1], ARGV[2]
local call, sub, fmt = redis.call, string.sub, string.format
-- the server clock, for an empty timestamp (leak) and op n: its text in ms, from TIME's
-- seconds and microseconds, and its number
local now, nows = nil, nil
if arg == '' then
  local t = call('TIME')
  nows = t[1] .. sub('00000' .. t[2], -6, -4)
  now = nows + 0
elseif op == 'P' or op == 'W' then
  -- put / waiting at the server clock as the client reckons it (from TIME each second)
  nows, now = arg, arg + 0
  if op == 'P' then op = 'p' else op = 'w' end
end
local ts, weight, total = nil, nil, 0
-- a member's hint: the oldest item's timestamp (13 digits) and the units before it (17)
local INF, NO_HINT = 1 / 0, '------------------------------'
-- members are 48 characters or more; shorter ones come from an earlier format
local OLD = 'pyrate: the key holds members of an earlier format of this bucket: flush it or let it expire'
-- the units in each rate's window
-- @each rate
local u@i@ = 0
-- @end
if op == 'p' or op == 'w' then
  -- put / waiting: ARGV[2] the timestamp, ARGV[3] the weight
  ts, weight = now or arg + 0, ARGV[3] + 0
  -- the newest member: its cum is every unit ever put
  local m, newest, head, hint = call('ZREVRANGE', key, '0', '0')[1], nil, -INF, nil
  if m then
    if #m < 48 then return redis.error_reply(OLD) end
    total, newest = sub(m, 1, 17) + 0, sub(m, 48) + 0
    -- the hint, unless the newest is a leak's marker (then the log is empty)
    if newest ~= -INF then
      hint = sub(m, 18, 47)
      if hint ~= NO_HINT then head = sub(hint, 1, 13) + 0 end
    end
    -- a window's units: every unit less the cum of the last member before it
    -- @each rate
    if newest >= ts - @interval@ then
      if head >= ts - @interval@ then
        u@i@ = total - sub(hint, 14, 30)
      else
        local prior = call('ZREVRANGEBYSCORE', key, fmt('(%d', ts - @interval@), '-inf', 'LIMIT', '0', '1')[1]
        u@i@ = total - (prior and sub(prior, 1, 17) or 0)
      end
    end
    -- @end
  end
  -- the units left in the tightest window: the item fits when its weight does
  local room = INF
  -- @each rate
  if @limit@ - u@i@ < room then room = @limit@ - u@i@ end
  -- @end
  if weight == 0 or weight <= room then
    if op == 'p' and weight > 0 then
      -- stored at the newest timestamp when older: the log stays in order
      local ats = nows
      if m and newest > ts then ats = sub(m, 48) elseif not nows then ats = fmt('%d', ts) end
      -- the first item of a log is its oldest, and every unit so far is before it
      if not hint then
        if ts >= 0 and ts < 1e13 then hint = fmt('%013d%017d', ts, total) else hint = NO_HINT end
      end
      call('ZADD', key, ats, fmt('%017d', total + weight) .. hint .. ats)
      -- the key must outlive its newest item by the largest interval: the expiry is set
      -- for a new key, for a caller's timestamp, past a newest item ahead of the server
      -- clock, and otherwise once per period of the server clock
      if @period@ <= 0 or now == nil or not m or newest > now or
          now - now % @period@ ~= newest - newest % @period@ then
        if now and m and newest > now then
          call('PEXPIRE', key, fmt('%d', @expire@ + newest - now))
        else
          call('PEXPIRE', key, '@expire@')
        end
      end
    end
    room = room - weight
    if room < 0 then room = 0 end
    -- one integer: the caller knows the timestamp it sent, and a table costs the
    -- server a tenth of a put
    return room
  end
end
-- the rest: a rejected put or waiting, and the other operations
local LIMITS, INTERVALS, USED, LARGEST = {}, {}, {}, @largest@
-- @each rate
LIMITS[@i@], INTERVALS[@i@], USED[@i@] = @limit@, @interval@, u@i@
-- @end
-- the member at reverse rank r (0: the newest), or nil
local function nth(r)
  local rank = fmt('%d', r)
  return call('ZREVRANGE', key, rank, rank)[1]
end
-- the reverse rank and the member of the item holding unit (counted from the key's
-- start), that item being at reverse rank j or less (it holds one unit or more;
-- exactly j when all weigh 1)
local function find(unit, j)
  local m = nth(j)
  if m and sub(m, 1, 17) + 0 >= unit then return j, m end
  local lo, hi, lm = 0, j - 1, nil
  if m == nil then hi = call('ZCARD', key) - 1 end
  -- the largest reverse rank in [0, hi] whose cum reaches unit (the newest's always does)
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    m = nth(mid)
    if sub(m, 1, 17) + 0 >= unit then lo, lm = mid, m else hi = mid - 1 end
  end
  return lo, lm or nth(lo)
end
if op == 'p' or op == 'w' then
  -- rejected: the first failing rate and its waiting, and the retry-after over all rates
  local failing, waiting, retry, room = -1, 0, 0, nil
  for i = 1, #LIMITS do
    local limit, used, since = LIMITS[i], USED[i], ts - INTERVALS[i]
    if room == nil or limit - used < room then room = limit - used end
    if used + weight > limit then
      -- ms until the item holding unit (limit - weight) from the newest leaves the window
      local w = -1
      if weight <= limit then
        -- that unit is in the window: used > limit - weight
        local _, m = find(total - (limit - weight), limit - weight)
        w = sub(m, 48) - since + 1
      end
      if failing < 0 then failing, waiting = i - 1, w end
      if w < 0 or retry < 0 then retry = -1 elseif w > retry then retry = w end
    end
  end
  if room < 0 then room = 0 end
  return {failing, waiting, retry, room}
end
-- the marker a leak left, or nil
local function marker()
  local o = call('ZRANGE', key, '0', '0')[1]
  if o and sub(o, 48) == '-inf' then return o end
end
-- every unit ever put, and those before the oldest item (the marker's); nil for a
-- key of an earlier format
local function ends()
  local m = nth(0)
  if not m then return 0, 0 end
  if #m < 48 then return nil end
  local o = marker()
  return sub(m, 1, 17) + 0, o and sub(o, 1, 17) + 0 or 0
end
if op == 'c' then
  local all, base = ends()
  if not all then return redis.error_reply(OLD) end
  return all - base
elseif op == 'k' then
  -- peek: the item holding unit ARGV[2] from the newest
  local index = arg + 0
  local all, base = ends()
  if not all then return redis.error_reply(OLD) end
  if index >= all - base then return {0} end
  local r, m = find(all - index, index)
  local o = nth(r + 1)
  return {1, sub(m, 48) + 0, sub(m, 1, 17) - (o and sub(o, 1, 17) or 0)}
elseif op == 'l' then
  -- leak: items older than the clock (ARGV[2], '' for the server's) less the largest interval
  local edge = fmt('(%d', (now or arg + 0) - LARGEST)
  local last = call('ZREVRANGEBYSCORE', key, edge, '-inf', 'LIMIT', '0', '1')[1]
  if not last then return 0 end
  if #last < 48 then return redis.error_reply(OLD) end
  local o = marker()
  local removed = sub(last, 1, 17) - (o and sub(o, 1, 17) or 0)
  if removed > 0 then
    -- the new marker first: the key never empties, which would drop its expiry
    call('ZADD', key, '-inf', sub(last, 1, 17) .. NO_HINT .. '-inf')
    if o then call('ZREM', key, o) end
    call('ZREMRANGEBYSCORE', key, '(-inf', edge)
    -- the newest member's hint: the new oldest item, and the marker's units before it
    local m = nth(0)
    if sub(m, 48) ~= '-inf' then
      local h = sub(call('ZRANGE', key, '1', '1')[1], 48) + 0
      local hint = NO_HINT
      if h >= 0 and h < 1e13 then hint = fmt('%013d', h) .. sub(last, 1, 17) end
      if hint ~= sub(m, 18, 47) then
        call('ZREM', key, m)
        call('ZADD', key, sub(m, 48), sub(m, 1, 17) .. hint .. sub(m, 48))
      end
    end
  end
  return removed
elseif op == 'f' then
  call('DEL', key)
  return 0
elseif op == 'n' then
  -- the server clock: ARGV[2] is ''
  return now
end
return redis.error_reply('pyrate: unknown operation ' .. op)
