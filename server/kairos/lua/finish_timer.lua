-- A claimed timer's outcome: record it on the session and take the timer off the
-- queue, in one call, so a timer is never gone without its outcome (nor recorded twice).
-- KEYS[1] due times, KEYS[2] payloads, KEYS[3] leases, KEYS[4] holders,
-- KEYS[5] session, KEYS[6] session log; or, on Redis Cluster, only those two (drop_timer.lua).
-- Needs lib/ops.lua (prepended at load: kairos.engine.redis._script).
-- ARGV[1] member, ARGV[2] the payload claimed, ARGV[3] session ttl_s, ARGV[4] log_max,
-- ARGV[5] a session count to add one to ("" for none), then log lines (newest last).
-- The timer is removed only if its payload is still the one claimed: a re-arm while
-- it fired (arm_timers.lua) queued a new timer that must survive. Nothing is recorded
-- when the timer is gone altogether (another process, whose lease this one's outlived,
-- recorded it). Returns {1 recorded / 0 not, the session as stored (MessagePack; '': no session)}.
local s_key, log_key = KEYS[5], KEYS[6]
if #KEYS == 2 then
  -- Redis Cluster: the queue's half ran before, in the queue's slot (drop_timer.lua)
  s_key, log_key = KEYS[1], KEYS[2]
else
  local current = redis.call('HGET', KEYS[2], ARGV[1])
  if not current then return {0, ''} end
  if current == ARGV[2] then
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
    redis.call('HDEL', KEYS[4], ARGV[1])
  end
end
-- a session that expired gets no orphan state or log
local s = load_session(s_key)
if not s then return {1, ''} end
local ttl = tonumber(ARGV[3])
if ARGV[5] ~= '' then s[ARGV[5]] = int(tonumber(s[ARGV[5]] or '0') + 1) end
for i = 6, #ARGV do redis.call('LPUSH', log_key, ARGV[i]) end
redis.call('LTRIM', log_key, 0, tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', log_key, ttl)
return {1, save_session(s_key, s, ttl)}
