-- Library (prepended at load by kairos.engine.redis._script): the visitor's caps on a
-- show and what a show leaves beside the session. Shared by claim_show.lua and
-- apply_show.lua, which take the caps as the same six arguments from ARGV[i]: per
-- visitor max and window_ms, all rules per visitor max and window_ms (a max of 0 means
-- no such cap), '1' when the rule's window is full (the caller reserved this show's
-- place in it and found none), and cooldown_ms.

-- 'ok', or which of the visitor's caps stops the show (kairos.caps.visitor_verdict).
-- `vrule`: this visitor's shows of this rule (sorted set, ms); `vall`: of every rule.
local function visitor_verdict(vrule, vall, now, i)
  local vr_max, vr_per = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local va_max, va_per = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local cooldown = tonumber(ARGV[i + 5])
  if cooldown > 0 then
    local last = redis.call('ZRANGE', vrule, -1, -1, 'WITHSCORES')
    if last[2] and tonumber(last[2]) > now - cooldown then return 'cooldown' end
  end
  if vr_max > 0 and redis.call('ZCOUNT', vrule, '(' .. (now - vr_per), '+inf') >= vr_max then return 'visitor_capped' end
  if va_max > 0 and redis.call('ZCOUNT', vall, '(' .. (now - va_per), '+inf') >= va_max then return 'globally_capped' end
  if ARGV[i + 4] == '1' then return 'rule_capped' end
  return 'ok'
end

-- The show among the visitor's shows, of the rule and of every rule, each kept
-- `shows_ttl` seconds.
local function record_visitor_show(vrule, vall, now, oid, shows_ttl)
  for _, k in ipairs({vrule, vall}) do
    redis.call('ZADD', k, now, oid)
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now - shows_ttl * 1000)
    redis.call('EXPIRE', k, shows_ttl)
  end
end
