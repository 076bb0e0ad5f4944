-- Arm (or re-arm) timers: one per session and rule, the newest arming wins.
-- KEYS[1] due times (sorted set), KEYS[2] timer payloads (hash); both carry the
-- {timers} hash tag, so this script and the claim stay in one cluster slot.
-- KEYS[3] leases and KEYS[4] their holders (claim_timers.lua): re-arming a timer
-- being fired ends its lease, so that firing finishes without taking the new one off.
-- Then each timer's session hash and log (KEYS[2k+3], KEYS[2k+4]): the timeline
-- learns of the timer in the same call (as claim_show.lua, this crosses slots).
-- ARGV[1] ttl_s, ARGV[2] log_max, then per timer: member, due_ms, payload, the
-- armed line, and the head of a `replaced` line (JSON without its closing brace)
-- for the pending timer it supersedes, finished here with that one's due time.
-- Returns the earliest due time, so the caller can wake a sleeping timer loop.
local log_max = tonumber(ARGV[2])
local k = 1
for i = 3, #ARGV, 5 do
  local member, due, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local h, log = KEYS[2 * k + 3], KEYS[2 * k + 4]
  k = k + 1
  local old = redis.call('HGET', KEYS[2], member)
  if redis.call('ZREM', KEYS[3], member) == 1 then
    -- it came due and is firing: its outcome is its own line, not `replaced`
    redis.call('HDEL', KEYS[4], member)
    old = nil
  end
  redis.call('ZADD', KEYS[1], due, member)
  redis.call('HSET', KEYS[2], member, payload)
  local ttl = redis.call('PTTL', h)
  if ttl > 0 then
    -- a session that expired gets no orphan log; its log lives as long as it does
    if old then
      local was = cjson.decode(old)
      local late = math.max(0, cjson.decode(payload).armed - was.due)
      redis.call('LPUSH', log, ARGV[i + 4] .. string.format(',"due_ms":%d,"late_ms":%d}', was.due, late))
    end
    redis.call('LPUSH', log, ARGV[i + 3])
    redis.call('LTRIM', log, 0, log_max - 1)
    redis.call('PEXPIRE', log, ttl)
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return first[2]
