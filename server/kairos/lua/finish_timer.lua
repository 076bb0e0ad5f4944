-- A claimed timer's outcome: record it on the session and take the timer off the
-- queue, in one call, so a timer is never gone without its outcome (nor recorded twice).
-- KEYS[1] due times, KEYS[2] payloads, KEYS[3] leases, KEYS[4] holders,
-- KEYS[5] session hash, KEYS[6] session log.
-- ARGV[1] member, ARGV[2] the payload claimed, ARGV[3] session ttl_s, ARGV[4] log_max,
-- ARGV[5] a session count to add one to ("" for none), then log lines (newest last).
-- The timer is removed only if its payload is still the one claimed: a re-arm while
-- it fired (arm_timers.lua) queued a new timer that must survive. Nothing is recorded
-- when the timer is gone altogether (another process, whose lease this one's outlived,
-- recorded it). Returns {1 recorded / 0 not, the session hash flat (empty: no session)}.
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return {0, {}} end
if current == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
local h, log = KEYS[5], KEYS[6]
-- a session that expired gets no orphan hash or log
if redis.call('EXISTS', h) == 0 then return {1, {}} end
local ttl = tonumber(ARGV[3])
if ARGV[5] ~= '' then redis.call('HINCRBY', h, ARGV[5], 1) end
for i = 6, #ARGV do redis.call('LPUSH', log, ARGV[i]) end
redis.call('LTRIM', log, 0, tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', h, ttl)
redis.call('EXPIRE', log, ttl)
return {1, redis.call('HGETALL', h)}
