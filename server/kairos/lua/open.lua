-- Open a page load's session from its hello, in one round trip: resume the session
-- the page names if it lives and is this visitor's, else open a new one; apply the
-- hello's ops and page view, and record the visit under the visitor. Mirrors the
-- memory engine's open_session(); the dashboard's list (kairos:live, one key for all)
-- is written beside it, in the same pipeline (kairos.engine.redis.open_session).
-- Needs lib/ops.lua and lib/visit.lua (prepended at load: kairos.engine.redis._script).
--
-- Touches the visitor's hash slot only: a session id carries its visitor's tag
-- (kairos.engine.keys), and the caller names no session of another tag. A named
-- session of the old form (no tag, opened before the upgrade) is the exception,
-- named on a single Redis only.
--
-- KEYS[1]/[2] the named session's hash and log (the new one's again when none is named),
-- KEYS[3]/[4] the new session's hash and log, KEYS[5] visitor info, KEYS[6] page views,
-- KEYS[7] the visitor's sessions.
-- ARGV[1] the named session id ('' for none), ARGV[2] the new session id, ARGV[3] visitor id,
-- ARGV[4] session ttl_s, ARGV[5] log_max, ARGV[6] a page view's ops (MessagePack, as apply.lua),
-- ARGV[7] a reconnect's ops ('' unless the hello is one: `re`), ARGV[8] now_ms, ARGV[9] path,
-- ARGV[10] page type, ARGV[11] visitor info ttl_s, ARGV[12] views window_ms, ARGV[13] most
-- views kept, ARGV[14] the sessions index's ttl_s, then the page view's log lines.
-- Returns {sid, 1 if resumed else 0, the session as stored (MessagePack), the visit (as visit.lua),
-- 1 if the named session is stored (resumed or another visitor's) else 0}.
local named, fresh, vid = ARGV[1], ARGV[2], ARGV[3]
local ttl, log_max, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[8])
-- A session id is resumed only by the visitor it belongs to, and only while it lives.
local current = named ~= '' and load_session(KEYS[1]) or nil
local resumed = current ~= nil and current['vid'] == vid
local sid, key, log, s = named, KEYS[1], KEYS[2], current
if not resumed then sid, key, log, s = fresh, KEYS[3], KEYS[4], load_session(KEYS[3]) end
-- A reconnect within the page load counts no page view, but only in the session it
-- left: in a new session the hello is a page view like any other.
local reconnect = resumed and ARGV[7] ~= ''
local ops = cmsgpack.unpack(reconnect and ARGV[7] or ARGV[6])
if not s then
  if not opens_session(ops) then
    return redis.error_reply('a new session needs its visitor (the ops set no vid)')
  end
  s = {}
end
apply_ops(s, ops)
if reconnect then
  log_and_expire(log, #ARGV + 1, log_max, ttl)
else
  log_and_expire(log, 15, log_max, ttl)
end
local raw = save_session(key, s, ttl)
local seen = visit(KEYS[5], KEYS[6], KEYS[7], now, sid, ARGV[9], ARGV[10], not reconnect, tonumber(ARGV[11]),
                   tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14]))
return {sid, resumed and 1 or 0, raw, seen, current ~= nil and 1 or 0}
