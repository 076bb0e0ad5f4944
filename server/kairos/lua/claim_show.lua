-- Check a rule's session caps and record the show, atomically.
-- Mirrors kairos.session.claim_show.
-- KEYS[1] session hash, KEYS[2] session log; ARGV[1] rule, ARGV[2] oid,
-- ARGV[3] max per session (0: no cap), ARGV[4] priority, ARGV[5] ttl_s, ARGV[6] log_max, ARGV[7] log line
local h, log = KEYS[1], KEYS[2]
local rule, oid = ARGV[1], ARGV[2]
local max_per_session, priority, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', h) == 0 then return 'gone' end
if redis.call('HEXISTS', h, 'd:' .. rule) == 1 then return 'dismissed' end
local fired = tonumber(redis.call('HGET', h, 'f:' .. rule) or '0')
if max_per_session > 0 and fired >= max_per_session then return 'capped' end
local on = redis.call('HGET', h, 'on')
if on then
  if priority <= tonumber(redis.call('HGET', h, 'p:' .. on) or '0') then return 'busy' end
  redis.call('HSET', h, 'o:' .. on, 'replaced')
end
redis.call('HINCRBY', h, 'f:' .. rule, 1)
redis.call('HSET', h, 'o:' .. oid, 'sent', 'r:' .. oid, rule, 'p:' .. oid, priority, 'on', oid)
redis.call('LPUSH', log, ARGV[7])
redis.call('LTRIM', log, 0, tonumber(ARGV[6]) - 1)
redis.call('EXPIRE', h, ttl)
redis.call('EXPIRE', log, ttl)
return 'ok'
