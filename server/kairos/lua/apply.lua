-- Apply one event batch to a session, atomically, in one round trip.
-- Mirrors kairos.session.apply_ops; the contract tests hold the two together.
-- KEYS[1] session hash, KEYS[2] session log
-- ARGV[1] ttl_s, ARGV[2] log_max, ARGV[3] the ops as one MessagePack array of
-- kind, field, value, kind, field, value, ... (one argument instead of dozens:
-- redis-py encodes every argument in Python), then log lines (newest last).
local h, log = KEYS[1], KEYS[2]
local ttl, log_max = tonumber(ARGV[1]), tonumber(ARGV[2])
local ops = cmsgpack.unpack(ARGV[3])
-- A session is created only by ops that give it its visitor (a hello's); a batch
-- for a session Redis lost is refused (nil), never applied to an empty hash
-- (kairos.engine.base.opens_session).
if redis.call('EXISTS', h) == 0 then
  local opens = false
  for i = 1, #ops, 3 do
    if ops[i + 1] == 'vid' and ops[i + 2] ~= '' then opens = true break end
  end
  if not opens then return false end
end
for i = 1, #ops, 3 do
  local kind, f, v = ops[i], ops[i + 1], ops[i + 2]
  if kind == 'set' then
    redis.call('HSET', h, f, v)
  elseif kind == 'setnx' then
    redis.call('HSETNX', h, f, v)
  elseif kind == 'incr' then
    redis.call('HINCRBY', h, f, v)
  elseif kind == 'incrf' then
    redis.call('HINCRBYFLOAT', h, f, v)
  elseif kind == 'max' then
    local cur = tonumber(redis.call('HGET', h, f))
    if cur == nil or tonumber(v) > cur then redis.call('HSET', h, f, v) end
  elseif kind == 'del' then
    redis.call('HDEL', h, f)
  elseif kind == 'copy' then
    local cur = redis.call('HGET', h, v)
    if cur then redis.call('HSET', h, f, cur) else redis.call('HDEL', h, f) end
  elseif kind == 'score' then
    -- an intent score's part (kairos.scores.add_part): decay the stored value to
    -- the op's time, then add the weight; same operations, same order, same doubles
    local add, now, hl = string.match(v, '^(%S+) (%S+) (%S+)$')
    local new = tonumber(add)
    local cur = redis.call('HGET', h, f)
    if cur then
      local val, t = string.match(cur, '^(%S+) (%S+)')
      new = tonumber(val) * math.exp(-(tonumber(now) - tonumber(t)) * 0.6931471805599453 / tonumber(hl)) + tonumber(add)
    end
    redis.call('HSET', h, f, string.format('%.17g', new) .. ' ' .. now .. ' ' .. hl)
  elseif kind == 'incr_pt' then
    -- per page type: the field named by the prefix and the page type as it is now
    local t = redis.call('HGET', h, 'page_type') or 'other'
    redis.call('HINCRBY', h, f .. t, v)
  elseif kind == 'count' then
    if redis.call('HEXISTS', h, f) == 1 then
      redis.call('HINCRBY', h, f, 1)
    else
      local tally = string.match(f, '^([^:]*)') .. '#'
      if tonumber(redis.call('HGET', h, tally) or '0') < tonumber(v) then
        redis.call('HINCRBY', h, tally, 1)
        redis.call('HSET', h, f, 1)
      end
    end
  else
    return redis.error_reply('unknown op ' .. kind)
  end
end
if #ARGV >= 4 then
  for j = 4, #ARGV do redis.call('LPUSH', log, ARGV[j]) end
  redis.call('LTRIM', log, 0, log_max - 1)
end
redis.call('EXPIRE', h, ttl)
if redis.call('EXISTS', log) == 1 then redis.call('EXPIRE', log, ttl) end
return redis.call('HGETALL', h)
