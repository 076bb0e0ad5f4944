-- Record what the visitor did with an overlay. Mirrors kairos.session.record_feedback.
-- Needs lib/ops.lua (prepended at load: kairos.engine.redis._script).
-- KEYS[1] session, KEYS[2] session log
-- ARGV[1] oid, ARGV[2] act, ARGV[3] ttl_s, ARGV[4] log_max, ARGV[5] log line
-- Returns {the overlay's rule, the session as stored (MessagePack)} (the caller counts the
-- act: its counters are in another hash slot, kairos.engine.keys; it keeps the bytes for
-- its next batch's compare-and-set, apply.lua), or 0 when the overlay was never sent to
-- this session.
-- ARGV[6] the version of the session as the caller last saw it stored ('' when it has
-- not kept it),
-- ARGV[7] the caller's own result of this feedback on it (kairos.session.record_feedback):
-- stored as it is if the session is still what the caller saw (compare and set, as
-- apply.lua), and then 1 is returned.
local oid, act = ARGV[1], ARGV[2]
local ttl, log_max = tonumber(ARGV[3]), tonumber(ARGV[4])
if unchanged(KEYS[1], ARGV[6]) then
  redis.call('SET', KEYS[1], ARGV[7], 'EX', ttl)
  log_and_expire(KEYS[2], 5, log_max, ttl, 5)
  return 1
end
local s = load_session(KEYS[1])
local rule = s and s['r:' .. oid]
if not rule then return 0 end
s['o:' .. oid] = act
if act ~= 'shown' and s['on'] == oid then
  s['on'] = nil
  s['w:' .. oid] = nil
end
if act == 'dismissed' then s['d:' .. rule] = '1' end
local stored = save_session(KEYS[1], s, ttl)
log_and_expire(KEYS[2], 5, log_max, ttl, 5)
return {rule, stored}
