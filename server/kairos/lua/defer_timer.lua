-- Put a claimed timer back in the queue for later (its visitor's page is reconnecting),
-- releasing the lease, if it is still the timer claimed (a re-arm supersedes it).
-- KEYS[1] due times, KEYS[2] payloads, KEYS[3] leases, KEYS[4] holders.
-- ARGV[1] member, ARGV[2] the payload claimed, ARGV[3] the payload to keep, ARGV[4] due_ms.
-- Returns 1 when put back, 0 when superseded or gone.
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
