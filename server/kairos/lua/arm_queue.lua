-- Redis Cluster: arm (or re-arm) timers in one shard of the timer queue, the queue's
-- half of arm_timers.lua. The timeline's half is timer_lines.lua, a call in the
-- session's slot made after this one (the two cannot share a script on a cluster).
-- KEYS[1] due times, KEYS[2] payloads, KEYS[3] leases, KEYS[4] holders: one shard, {timers:k}.
-- ARGV[1] ttl_s, then per timer: member, due_ms, payload.
-- Returns the shard's earliest due time, then per timer the payload it superseded
-- ('' for none, or for one being fired: its outcome is its own line, not `replaced`).
local out = {false}
for i = 2, #ARGV, 3 do
  local member = ARGV[i]
  local old = redis.call('HGET', KEYS[2], member)
  if redis.call('ZREM', KEYS[3], member) == 1 then
    redis.call('HDEL', KEYS[4], member)
    old = false
  end
  redis.call('ZADD', KEYS[1], ARGV[i + 1], member)
  redis.call('HSET', KEYS[2], member, ARGV[i + 2])
  out[#out + 1] = old or ''
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
out[1] = first[2]
return out
