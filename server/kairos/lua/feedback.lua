-- Record what the visitor did with an overlay. Mirrors kairos.session.record_feedback.
-- KEYS[1] session hash, KEYS[2] session log
-- ARGV[1] oid, ARGV[2] act, ARGV[3] ttl_s, ARGV[4] log_max, ARGV[5] log line
-- KEYS[3] the counters' current bucket, ARGV[6] its ttl_s, ARGV[7] "1" if this act is counted
local h, log = KEYS[1], KEYS[2]
local oid, act = ARGV[1], ARGV[2]
local ttl, log_max = tonumber(ARGV[3]), tonumber(ARGV[4])
local rule = redis.call('HGET', h, 'r:' .. oid)
if not rule then return 0 end
redis.call('HSET', h, 'o:' .. oid, act)
if act ~= 'shown' and redis.call('HGET', h, 'on') == oid then redis.call('HDEL', h, 'on') end
if act == 'dismissed' then redis.call('HSET', h, 'd:' .. rule, '1') end
redis.call('LPUSH', log, ARGV[5])
redis.call('LTRIM', log, 0, log_max - 1)
redis.call('EXPIRE', h, ttl)
redis.call('EXPIRE', log, ttl)
if ARGV[7] == '1' then
  redis.call('HINCRBY', KEYS[3], rule .. '|' .. act, 1)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
end
return 1
