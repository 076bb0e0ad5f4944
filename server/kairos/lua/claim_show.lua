-- Check every cap of a rule and record the show, atomically.
-- Needs lib/ops.lua (prepended at load: kairos.engine.redis._script).
-- Mirrors kairos.session.session_verdict/record_show and kairos.caps.visitor_verdict.
-- KEYS[1] session, KEYS[2] session log,
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
local key, log, vrule, vall, rcount = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
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

local s = load_session(key)
if not s then return 'gone' end

local function verdict()
  if redis.call('HEXISTS', paused, rule) == 1 then return 'paused' end
  if s['d:' .. rule] then return 'dismissed' end
  -- the store lost what this session was shown (kairos.session.session_verdict)
  if max_per_session > 0 and s['restored'] then return 'history_lost' end
  local fired = tonumber(s['f:' .. rule] or '0')
  if max_per_session > 0 and fired >= max_per_session then return 'capped' end
  local on = s['on']
  if on and priority <= tonumber(s['p:' .. on] or '0') then return 'busy' end
  if cooldown > 0 then
    local last = redis.call('ZRANGE', vrule, -1, -1, 'WITHSCORES')
    if last[2] and tonumber(last[2]) > now - cooldown then return 'cooldown' end
  end
  if vr_max > 0 and redis.call('ZCOUNT', vrule, '(' .. (now - vr_per), '+inf') >= vr_max then return 'visitor_capped' end
  if va_max > 0 and redis.call('ZCOUNT', vall, '(' .. (now - va_per), '+inf') >= va_max then return 'globally_capped' end
  if rr_max > 0 and tonumber(redis.call('GET', rcount) or '0') >= rr_max then return 'rule_capped' end
  return 'ok'
end

-- The same show claimed again (a timer fired once more after its process died
-- mid-way, kairos.rules.delayed.Timer.oid): counted once; sent again while the
-- page has not answered it, or 'seen' once it has.
local status = s['o:' .. oid]
if status then return status == 'sent' and 'again' or 'seen' end
local why = verdict()
if why ~= 'ok' then
  if s['k:' .. rule] ~= why then
    s['k:' .. rule] = why
    save_session(key, s, ttl)
    redis.call('LPUSH', log, cjson.encode({ts = now, kind = 'skip', rule = rule, why = why}))
    redis.call('LTRIM', log, 0, tonumber(ARGV[6]) - 1)
    count('triggered')
  end
  return why
end

-- kairos.session.record_show
local on = s['on']
s['k:' .. rule] = nil
count('triggered')
count('shown')
if on then
  s['o:' .. on] = 'replaced'
  s['w:' .. on] = nil  -- where an overlay lives is kept while it is on screen
end
s['f:' .. rule] = int(tonumber(s['f:' .. rule] or '0') + 1)
s['o:' .. oid], s['r:' .. oid], s['p:' .. oid], s['on'] = 'sent', rule, int(priority), oid
if ARGV[18] and ARGV[18] ~= '' then s['w:' .. oid] = ARGV[18] end
-- only the last 4 overlays are kept field by field (kairos.session.KEEP_OVERLAYS)
local kept = {}
for o in string.gmatch(s['ol'] or '', '%S+') do kept[#kept + 1] = o end
kept[#kept + 1] = oid
local first = math.max(1, #kept - 4 + 1)
for i = 1, first - 1 do
  local old = kept[i]
  s['o:' .. old], s['r:' .. old], s['p:' .. old], s['w:' .. old] = nil, nil, nil, nil
end
s['ol'] = table.concat(kept, ' ', first)
save_session(key, s, ttl)
redis.call('LPUSH', log, ARGV[7])
redis.call('LTRIM', log, 0, tonumber(ARGV[6]) - 1)
redis.call('EXPIRE', log, ttl)
for _, k in ipairs({vrule, vall}) do
  redis.call('ZADD', k, now, oid)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - shows_ttl * 1000)
  redis.call('EXPIRE', k, shows_ttl)
end
if rr_max > 0 then
  redis.call('INCR', rcount)
  redis.call('PEXPIRE', rcount, rr_per)
end
return 'ok'
