-- Apply one event batch to a session, atomically, in one round trip.
-- Needs lib/ops.lua (prepended at load: kairos.engine.redis._script).
-- KEYS[1] session, KEYS[2] session log
-- ARGV[1] ttl_s, ARGV[2] log_max, ARGV[3] the ops as one MessagePack array of
-- kind, field, value, kind, field, value, ... (one argument instead of dozens:
-- redis-py encodes every argument in Python), or '' when the caller applied them
-- itself, ARGV[4] the version of the session as the caller last saw it stored (''
-- when it has not kept it), ARGV[5] the caller's own result of these ops on it,
-- then log lines (newest last).
--
-- The caller's result is stored as it is when the session is still what the caller
-- saw (compare and set): no decoding, no ops, no encoding here, which were two
-- thirds of this script's time. Any other writer since (a claim, feedback, a timer,
-- another process) makes the comparison fail: the ops, if sent, are applied here as
-- ever; if not, nothing is written, and the caller applies them again to the session
-- as it is now, which it is sent.
-- Returns 1 when the caller's result was stored; the session as stored (MessagePack)
-- when the ops were applied here, or nil when there is none; {the session as stored,
-- or false} when neither (then the caller sends the ops).
local ttl, log_max = tonumber(ARGV[1]), tonumber(ARGV[2])
if unchanged(KEYS[1], ARGV[4]) then
  redis.call('SET', KEYS[1], ARGV[5], 'EX', ttl)
  log_and_expire(KEYS[2], 6, log_max, ttl)
  return 1
end
if ARGV[3] == '' then
  local raw = redis.pcall('GET', KEYS[1])
  return {type(raw) == 'string' and raw}  -- a hash of an older Kairos: false, as none
end
local ops = cmsgpack.unpack(ARGV[3])
local s = load_session(KEYS[1])
-- A batch for a session Redis lost is refused (nil), never applied to an empty one.
if not s then
  if not opens_session(ops) then return false end
  s = {}
end
apply_ops(s, ops)
log_and_expire(KEYS[2], 6, log_max, ttl)
return save_session(KEYS[1], s, ttl)
