-- Apply one event batch to a session, atomically, in one round trip.
-- Needs lib/ops.lua (prepended at load: kairos.engine.redis._script).
-- KEYS[1] session, KEYS[2] session log
-- ARGV[1] ttl_s, ARGV[2] log_max, ARGV[3] the ops as one MessagePack array of
-- kind, field, value, kind, field, value, ... (one argument instead of dozens:
-- redis-py encodes every argument in Python), then log lines (newest last).
-- Returns the session as stored (MessagePack), or nil.
local ttl, log_max = tonumber(ARGV[1]), tonumber(ARGV[2])
local ops = cmsgpack.unpack(ARGV[3])
local s = load_session(KEYS[1])
-- A batch for a session Redis lost is refused (nil), never applied to an empty one.
if not s then
  if not opens_session(ops) then return false end
  s = {}
end
apply_ops(s, ops)
log_and_expire(KEYS[2], 4, log_max, ttl)
return save_session(KEYS[1], s, ttl)
