-- Arm (or re-arm) timers: one per session and rule, the newest arming wins.
-- KEYS[1] due times (sorted set), KEYS[2] timer payloads (hash); both carry the
-- {timers} hash tag, so this script and the claim stay in one cluster slot.
-- ARGV[1] ttl_s, then (member, due_ms, payload) triples.
-- Returns the earliest due time, so the caller can wake a sleeping timer loop.
for i = 2, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return first[2]
