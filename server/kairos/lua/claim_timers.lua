-- Claim due timers as leases: whoever runs this holds them until its lease ends;
-- nobody else gets them while the holder lives. A timer leaves the queue only
-- when its outcome is recorded (finish_timer.lua), so one whose process died
-- mid-way comes back: its lease is taken over here once the holder's heartbeat
-- has lapsed (kairos:{timers}:nodes), or its lease deadline has passed.
-- KEYS[1] due times, KEYS[2] payloads, KEYS[3] leases (member -> deadline ms),
-- KEYS[4] holders (member -> node), KEYS[5] live nodes (node -> alive until ms).
-- ARGV[1] now_ms, ARGV[2] most to claim, ARGV[3] this node, ARGV[4] lease_ms, ARGV[5] ttl_s.
-- Returns member, payload, member, payload, ...
local now, limit, node, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
-- Redis Cluster: the live nodes are in another slot; the caller read them (node, alive
-- until ms, ...) into ARGV[6...], and KEYS[5] is absent.
local alive_until = {}
for i = 6, #ARGV, 2 do alive_until[ARGV[i]] = ARGV[i + 1] end
local until_ms = now + lease
local out = {}
local function take(member)
  local payload = redis.call('HGET', KEYS[2], member)
  if payload then
    redis.call('ZADD', KEYS[3], until_ms, member)
    redis.call('HSET', KEYS[4], member, node)
    out[#out + 1] = member
    out[#out + 1] = payload
  else
    redis.call('ZREM', KEYS[3], member)
    redis.call('HDEL', KEYS[4], member)
  end
end
-- Leases in flight are few (the timers being fired right now), so all are looked at.
local leased = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #leased, 2 do
  if #out >= 2 * limit then break end
  local member, deadline = leased[i], tonumber(leased[i + 1])
  local lapsed = deadline <= now
  if not lapsed then
    local holder = redis.call('HGET', KEYS[4], member)
    local alive = holder and (KEYS[5] and redis.call('ZSCORE', KEYS[5], holder) or alive_until[holder])
    -- a holder that never beat (a bare engine in a test) is held to its deadline only
    lapsed = alive and tonumber(alive) <= now
  end
  if lapsed then take(member) end
end
local left = limit - #out / 2
if left > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, left)
  for _, member in ipairs(due) do
    redis.call('ZREM', KEYS[1], member)
    take(member)
  end
end
if #out > 0 then
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
return out
