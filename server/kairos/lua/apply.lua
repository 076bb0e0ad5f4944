-- Apply one event batch to a session, atomically, in one round trip.
-- Needs lib/ops.lua (prepended at load: kairos.engine.redis._script).
-- KEYS[1] session hash, KEYS[2] session log
-- ARGV[1] ttl_s, ARGV[2] log_max, ARGV[3] the ops as one MessagePack array of
-- kind, field, value, kind, field, value, ... (one argument instead of dozens:
-- redis-py encodes every argument in Python), then log lines (newest last).
local h, log = KEYS[1], KEYS[2]
local ttl, log_max = tonumber(ARGV[1]), tonumber(ARGV[2])
local ops = cmsgpack.unpack(ARGV[3])
-- A batch for a session Redis lost is refused (nil), never applied to an empty hash.
local fresh = redis.call('EXISTS', h) == 0
if fresh and not opens_session(ops) then return false end
apply_ops(h, ops, fresh)
log_and_expire(h, log, 4, log_max, ttl)
return redis.call('HGETALL', h)
