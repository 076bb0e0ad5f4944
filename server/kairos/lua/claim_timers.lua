-- Claim due timers: whoever runs this gets them, and nobody else ever will.
-- KEYS[1] due times, KEYS[2] payloads; ARGV[1] now_ms, ARGV[2] most to claim.
-- Returns member, payload, member, payload, ...
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, member in ipairs(due) do
  local payload = redis.call('HGET', KEYS[2], member)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
  if payload then
    out[#out + 1] = member
    out[#out + 1] = payload
  end
end
return out
