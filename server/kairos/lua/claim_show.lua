-- Check every cap of a rule and record the show, atomically.
-- Mirrors kairos.session.session_verdict/record_show and kairos.caps.visitor_verdict.
-- KEYS[1] session hash, KEYS[2] session log,
-- KEYS[3] this visitor's shows of this rule (sorted set, ms), KEYS[4] this visitor's
-- shows of every rule, KEYS[5] this rule's count in the current fixed window.
-- ARGV[1] rule, ARGV[2] oid, ARGV[3] max per session (0: none), ARGV[4] priority,
-- ARGV[5] session ttl_s, ARGV[6] log_max, ARGV[7] log line, ARGV[8] now_ms,
-- ARGV[9]/[10] per visitor max/window_ms, ARGV[11]/[12] all rules per visitor max/window_ms,
-- ARGV[13]/[14] per rule max/window_ms, ARGV[15] cooldown_ms, ARGV[16] shows ttl_s
-- (a max of 0 means no such cap)
-- KEYS[6] the counters' current bucket (hash), KEYS[7] paused rules (hash);
-- ARGV[17] the counters' ttl_s, ARGV[18] where the overlay lives (kairos.moment.Placed, packed; may be empty). A refusal is logged and counted once per reason
-- in a row (kairos.session.note_skip).
local h, log, vrule, vall, rcount = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local stats, paused = KEYS[6], KEYS[7]
local rule, oid = ARGV[1], ARGV[2]
local max_per_session, priority, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = tonumber(ARGV[8])
local vr_max, vr_per = tonumber(ARGV[9]), tonumber(ARGV[10])
local va_max, va_per = tonumber(ARGV[11]), tonumber(ARGV[12])
local rr_max, rr_per = tonumber(ARGV[13]), tonumber(ARGV[14])
local cooldown, shows_ttl = tonumber(ARGV[15]), tonumber(ARGV[16])
local stats_ttl = tonumber(ARGV[17])

local function count(counter)
  redis.call('HINCRBY', stats, rule .. '|' .. counter, 1)
  redis.call('EXPIRE', stats, stats_ttl)
end

local function verdict()
  if redis.call('HEXISTS', paused, rule) == 1 then return 'paused' end
  if redis.call('HEXISTS', h, 'd:' .. rule) == 1 then return 'dismissed' end
  -- the store lost what this session was shown (kairos.session.session_verdict)
  if max_per_session > 0 and redis.call('HEXISTS', h, 'restored') == 1 then return 'history_lost' end
  local fired = tonumber(redis.call('HGET', h, 'f:' .. rule) or '0')
  if max_per_session > 0 and fired >= max_per_session then return 'capped' end
  local on = redis.call('HGET', h, 'on')
  if on and priority <= tonumber(redis.call('HGET', h, 'p:' .. on) or '0') then return 'busy' end
  if cooldown > 0 then
    local last = redis.call('ZRANGE', vrule, -1, -1, 'WITHSCORES')
    if last[2] and tonumber(last[2]) > now - cooldown then return 'cooldown' end
  end
  if vr_max > 0 and redis.call('ZCOUNT', vrule, '(' .. (now - vr_per), '+inf') >= vr_max then return 'visitor_capped' end
  if va_max > 0 and redis.call('ZCOUNT', vall, '(' .. (now - va_per), '+inf') >= va_max then return 'globally_capped' end
  if rr_max > 0 and tonumber(redis.call('GET', rcount) or '0') >= rr_max then return 'rule_capped' end
  return 'ok'
end

if redis.call('EXISTS', h) == 0 then return 'gone' end
-- The same show claimed again (a timer fired once more after its process died
-- mid-way, kairos.rules.delayed.Timer.oid): counted once; sent again while the
-- page has not answered it, or 'seen' once it has.
local status = redis.call('HGET', h, 'o:' .. oid)
if status then return status == 'sent' and 'again' or 'seen' end
local why = verdict()
if why ~= 'ok' then
  if redis.call('HGET', h, 'k:' .. rule) ~= why then
    redis.call('HSET', h, 'k:' .. rule, why)
    redis.call('LPUSH', log, cjson.encode({ts = now, kind = 'skip', rule = rule, why = why}))
    redis.call('LTRIM', log, 0, tonumber(ARGV[6]) - 1)
    count('triggered')
  end
  return why
end

local on = redis.call('HGET', h, 'on')
redis.call('HDEL', h, 'k:' .. rule)
count('triggered')
count('shown')
if on then redis.call('HSET', h, 'o:' .. on, 'replaced') end
redis.call('HINCRBY', h, 'f:' .. rule, 1)
redis.call('HSET', h, 'o:' .. oid, 'sent', 'r:' .. oid, rule, 'p:' .. oid, priority, 'on', oid)
if ARGV[18] and ARGV[18] ~= '' then redis.call('HSET', h, 'w:' .. oid, ARGV[18]) end
-- only the last 4 overlays are kept field by field (kairos.session.KEEP_OVERLAYS)
local kept = {}
for o in string.gmatch(redis.call('HGET', h, 'ol') or '', '%S+') do kept[#kept + 1] = o end
kept[#kept + 1] = oid
local first = math.max(1, #kept - 4 + 1)
for i = 1, first - 1 do
  local old = kept[i]
  redis.call('HDEL', h, 'o:' .. old, 'r:' .. old, 'p:' .. old, 'w:' .. old)
end
redis.call('HSET', h, 'ol', table.concat(kept, ' ', first))
redis.call('LPUSH', log, ARGV[7])
redis.call('LTRIM', log, 0, tonumber(ARGV[6]) - 1)
redis.call('EXPIRE', h, ttl)
redis.call('EXPIRE', log, ttl)
for _, key in ipairs({vrule, vall}) do
  redis.call('ZADD', key, now, oid)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - shows_ttl * 1000)
  redis.call('EXPIRE', key, shows_ttl)
end
if rr_max > 0 then
  redis.call('INCR', rcount)
  redis.call('PEXPIRE', rcount, rr_per)
end
return 'ok'
