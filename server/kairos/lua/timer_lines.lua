-- Redis Cluster: the timeline's half of arming timers (arm_queue.lua has the queue's):
-- push lines on a session's log, in the session's slot, if the session still lives.
-- KEYS[1] session, KEYS[2] session log. ARGV[1] log_max, then the lines (oldest first).
-- A session that expired gets no orphan log; its log lives as long as it does.
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
for i = 2, #ARGV do redis.call('LPUSH', KEYS[2], ARGV[i]) end
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[1]) - 1)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
