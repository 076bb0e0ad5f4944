-- Keep an ended page load's session row for training (kairos export-sessions):
-- replace the session's row, drop rows older than the retention, keep at most N.
-- KEYS[1] index (sorted set: sid -> ms of its last row), KEYS[2] rows (hash: sid -> row)
-- ARGV[1] sid, ARGV[2] row, ARGV[3] now_ms, ARGV[4] retention ttl_s, ARGV[5] most rows kept
local idx, rows = KEYS[1], KEYS[2]
local now, ttl, keep = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZADD', idx, now, ARGV[1])
redis.call('HSET', rows, ARGV[1], ARGV[2])
local old = redis.call('ZRANGEBYSCORE', idx, '-inf', now - ttl * 1000)
local n = redis.call('ZCARD', idx)
if n - #old > keep then
  for _, sid in ipairs(redis.call('ZRANGE', idx, #old, n - keep - 1)) do old[#old + 1] = sid end
end
for i = 1, #old, 500 do
  local part = {unpack(old, i, math.min(i + 499, #old))}
  redis.call('ZREM', idx, unpack(part))
  redis.call('HDEL', rows, unpack(part))
end
redis.call('EXPIRE', idx, ttl)
redis.call('EXPIRE', rows, ttl)
return n
