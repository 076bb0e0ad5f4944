-- Library (prepended at load by kairos.engine.redis._script; not a script of its own):
-- apply a session's ops. Mirrors kairos.session.apply_ops; the contract tests hold
-- the two together.
-- The ops are one flat array of kind, field, value, kind, field, value, ...

-- Whether ops may create a session: only those that give it its visitor (a hello's);
-- a batch for a session Redis lost is never applied to an empty hash
-- (kairos.engine.base.opens_session).
local function opens_session(ops)
  for i = 1, #ops, 3 do
    if ops[i + 1] == 'vid' and ops[i + 2] ~= '' then return true end
  end
  return false
end

-- `fresh`: the hash did not exist before these ops (a new session). Consecutive
-- writes that need no reading go to Redis as one HSET: a new session's hello is
-- ~30 ops, and a redis.call costs about a microsecond of Redis CPU each. In a
-- fresh hash a field no op has touched yet holds nothing, so setnx, incr and max
-- of it are plain sets of their value (HINCRBY and HSETNX on a missing field store
-- the value as given; the ops' values are the integers and numbers Python wrote).
local function apply_ops(h, ops, fresh)
  -- n: fields and values gathered in batch for the next HSET; touched: only for a fresh hash
  local batch, n, touched = {}, 0, fresh and {} or nil
  for i = 1, #ops, 3 do
    local kind, f, v = ops[i], ops[i + 1], ops[i + 2]
    local plain = kind == 'set'
    if touched then
      plain = plain or (not touched[f] and (kind == 'setnx' or kind == 'incr' or kind == 'max'))
      touched[f] = true
    end
    if plain then
      batch[n + 1], batch[n + 2] = f, v
      n = n + 2
      -- unpack() puts every argument on Lua's stack: a batch stays well under its limit
      if n >= 200 then
        redis.call('HSET', h, unpack(batch, 1, n))
        n = 0
      end
    else
      if n > 0 then
        redis.call('HSET', h, unpack(batch, 1, n))
        n = 0
      end
      if kind == 'setnx' then
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
        if touched then touched[f .. t] = true end
      elseif kind == 'count' then
        local tally = string.match(f, '^([^:]*)') .. '#'
        if touched then touched[tally] = true end
        if redis.call('HEXISTS', h, f) == 1 then
          redis.call('HINCRBY', h, f, 1)
        else
          if tonumber(redis.call('HGET', h, tally) or '0') < tonumber(v) then
            redis.call('HINCRBY', h, tally, 1)
            redis.call('HSET', h, f, 1)
          end
        end
      else
        error('unknown op ' .. kind)
      end
    end
  end
  if n > 0 then redis.call('HSET', h, unpack(batch, 1, n)) end
end

-- Append log lines (ARGV from `first` on, newest last), keep the newest `log_max`,
-- and renew the session's expiry (its log's too, if it has one).
local function log_and_expire(h, log, first, log_max, ttl)
  if #ARGV >= first then
    for j = first, #ARGV do redis.call('LPUSH', log, ARGV[j]) end
    redis.call('LTRIM', log, 0, log_max - 1)
  end
  redis.call('EXPIRE', h, ttl)
  if redis.call('EXISTS', log) == 1 then redis.call('EXPIRE', log, ttl) end
end
