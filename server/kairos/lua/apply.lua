-- Apply one event batch to a session, atomically, in one round trip.
-- Needs lib/ops.lua (prepended at load: kairos.engine.redis._script).
-- KEYS[1] session, KEYS[2] session log
-- ARGV[1] ttl_s, ARGV[2] log_max, ARGV[3] the ops as one MessagePack array of
-- kind, field, value, kind, field, value, ... (one argument instead of dozens:
-- redis-py encodes every argument in Python), ARGV[4] the session as the caller
-- last saw it stored ('' when it has not kept it), ARGV[5] the caller's own result
-- of these ops on it, then log lines (newest last).
--
-- The caller's result is stored as it is when the session is still what the caller
-- saw (compare and set): no decoding, no ops, no encoding here, which were two
-- thirds of this script's time. Any other writer since (a claim, feedback, a timer,
-- another process) makes the comparison fail, and the ops are applied here as ever.
-- Returns 1 when the caller's result was stored; else the session as stored
-- (MessagePack), or nil.
local ttl, log_max = tonumber(ARGV[1]), tonumber(ARGV[2])
if unchanged(KEYS[1], ARGV[4]) then
  redis.call('SET', KEYS[1], ARGV[5], 'EX', ttl)
  log_and_expire(KEYS[2], 6, log_max, ttl)
  return 1
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
