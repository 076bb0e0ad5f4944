-- Check every cap of a rule and record the show, atomically.
-- Needs lib/ops.lua lib/shows.lua (prepended at load: kairos.engine.redis._script).
-- Mirrors kairos.session.session_verdict/record_show and kairos.caps.visitor_verdict.
-- Touches the visitor's hash slot only (kairos.engine.keys): whether the rule is
-- paused and whether its window is full come in as arguments, and the rule's
-- counters are incremented by the caller after it (kairos.engine.redis.claim_show).
-- KEYS[1] session, KEYS[2] session log,
-- KEYS[3] this visitor's shows of this rule (sorted set, ms), KEYS[4] this visitor's
-- shows of every rule.
-- ARGV[1] rule, ARGV[2] oid, ARGV[3] max per session (0: none), ARGV[4] priority,
-- ARGV[5] session ttl_s, ARGV[6] log_max, ARGV[7] log line, ARGV[8] now_ms,
-- ARGV[9] to ARGV[14] the visitor's caps (lib/shows.lua),
-- ARGV[15] shows ttl_s, ARGV[16] '1' when the rule is paused, ARGV[17] where the
-- overlay lives (kairos.moment.Placed, packed; may be empty), ARGV[18] the version of
-- the session as the caller last saw it stored ('' when it has not kept it, or its own
-- checks of it did not pass), ARGV[19] the caller's own record of this show on it
-- (kairos.session.record_show). When the session is still what the caller saw, its
-- own checks stand and only the visitor's caps are checked here; if they pass, the
-- caller's record is stored as it is (compare and set, as apply.lua) and {'ok', 1}
-- returned. Otherwise everything is checked here as ever.
-- Returns {verdict, 1 if the moment is to be counted as `triggered` else 0, and the
-- session as stored (MessagePack) when this call changed it}: 'ok' (and counted
-- `shown`), or why not; a refusal is logged and counted once per reason in a row
-- (kairos.session.note_skip). The caller keeps the stored bytes for its next batch's
-- compare-and-set (apply.lua).
local key, log, vrule, vall = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rule, oid = ARGV[1], ARGV[2]
local max_per_session, priority, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = tonumber(ARGV[8])
local shows_ttl = tonumber(ARGV[15])
local paused = ARGV[16] == '1'

-- The show is recorded beside the session: its log line, the visitor's shows.
local function record_beside()
  log_and_expire(log, 7, tonumber(ARGV[6]), ttl, 7)
  record_visitor_show(vrule, vall, now, oid, shows_ttl)
end

if not paused and unchanged(key, ARGV[18]) and visitor_verdict(vrule, vall, now, 9) == 'ok' then
  redis.call('SET', key, ARGV[19], 'EX', ttl)
  record_beside()
  return {'ok', 1}
end

local s = load_session(key)
if not s then return {'gone', 0} end

local function verdict()
  if paused then return 'paused' end
  if s['d:' .. rule] then return 'dismissed' end
  -- the store lost what this session was shown (kairos.session.session_verdict)
  if max_per_session > 0 and s['restored'] then return 'history_lost' end
  local fired = tonumber(s['f:' .. rule] or '0')
  if max_per_session > 0 and fired >= max_per_session then return 'capped' end
  local on = s['on']
  if on and priority <= tonumber(s['p:' .. on] or '0') then return 'busy' end
  return visitor_verdict(vrule, vall, now, 9)
end

-- The same show claimed again (a timer fired once more after its process died
-- mid-way, kairos.rules.delayed.Timer.oid): counted once; sent again while the
-- page has not answered it, or 'seen' once it has.
local status = s['o:' .. oid]
if status then return {status == 'sent' and 'again' or 'seen', 0} end
local why = verdict()
if why ~= 'ok' then
  if s['k:' .. rule] ~= why then
    s['k:' .. rule] = why
    local stored = save_session(key, s, ttl)
    redis.call('LPUSH', log, cjson.encode({ts = now, kind = 'skip', rule = rule, why = why}))
    redis.call('LTRIM', log, 0, tonumber(ARGV[6]) - 1)
    return {why, 1, stored}
  end
  return {why, 0}
end

-- kairos.session.record_show
local on = s['on']
s['k:' .. rule] = nil
if on then
  s['o:' .. on] = 'replaced'
  s['w:' .. on] = nil  -- where an overlay lives is kept while it is on screen
end
s['f:' .. rule] = int(tonumber(s['f:' .. rule] or '0') + 1)
s['o:' .. oid], s['r:' .. oid], s['p:' .. oid], s['on'] = 'sent', rule, int(priority), oid
if ARGV[17] and ARGV[17] ~= '' then s['w:' .. oid] = ARGV[17] end
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
local stored = save_session(key, s, ttl)
record_beside()
return {'ok', 1, stored}
