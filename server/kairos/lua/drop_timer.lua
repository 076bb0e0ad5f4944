-- Redis Cluster: take a fired timer off its shard of the queue, the queue's half of
-- finish_timer.lua (whose session half then runs in the session's slot: KEYS of two).
-- Off the queue first, then recorded: a process killed between the two loses the
-- outcome's line, never fires the timer twice (docs/scaling.md).
-- KEYS[1] due times, KEYS[2] payloads, KEYS[3] leases, KEYS[4] holders (one shard).
-- ARGV[1] member, ARGV[2] the payload claimed.
-- Returns 0: gone (another process whose lease this one outlived finished it);
-- 1: taken off; 2: left, re-armed while it fired (the new timer must survive).
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return 0 end
if current ~= ARGV[2] then return 2 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
