-- Library (prepended at load by kairos.engine.redis._script; not a script of its own):
-- record a page view under the visitor and count the views of the last 24 h.
-- Mirrors the memory engine's visit().
-- info: the visitor's info hash; views: their page views (sorted set by ms; members
-- "n|page_type|path", n making each view unique); index: their sessions (sorted set:
-- sid -> ms last seen; what forgetting walks), kept index_ttl_s
-- (engine.base.index_ttl_s: as long as what it points to lives).
-- Returns {sessions, first_ms, views of this path, views of this page type, pending rules, the
-- visitor's arms as field, value, field, value (x:<experiment>, "<arm>|<ms>")};
-- a recorded view (`record`) takes the nudges kept for the next page view (fields q:<rule>).
local function visit(info, views, index, now, sid, path, ptype, record, info_ttl, window, keep, index_ttl)
  redis.call('HSETNX', info, 'first', now)
  if redis.call('HGET', info, 'sid') ~= sid then
    redis.call('HSET', info, 'sid', sid)
    redis.call('HINCRBY', info, 'sessions', 1)
  end
  -- Every session, not the newest few: each one is erased when the visitor asks. Those
  -- past the index's time go when a session joins it (a page load of a session already
  -- in it adds nothing to prune).
  if redis.call('ZADD', index, now, sid) == 1 then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now - index_ttl * 1000)
  end
  redis.call('EXPIRE', index, index_ttl)
  local pending = {}
  if record then
    for _, f in ipairs(redis.call('HKEYS', info)) do
      if string.sub(f, 1, 2) == 'q:' then
        pending[#pending + 1] = string.sub(f, 3)
        redis.call('HDEL', info, f)
      end
    end
    local n = redis.call('HINCRBY', info, 'n', 1)
    redis.call('ZADD', views, now, n .. '|' .. ptype .. '|' .. path)
    redis.call('ZREMRANGEBYSCORE', views, '-inf', now - window)
    redis.call('ZREMRANGEBYRANK', views, 0, -keep - 1)
    redis.call('PEXPIRE', views, window)
  end
  local same_path, same_type = 0, 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', views, '(' .. (now - window), '+inf')) do
    local _, _, t, p = string.find(m, '^[^|]*|([^|]*)|(.*)$')
    if p == path then same_path = same_path + 1 end
    if t == ptype then same_type = same_type + 1 end
  end
  redis.call('EXPIRE', info, info_ttl)
  -- the visitor's arms (x:<experiment> = "<arm>|<ms>", kairos.engine.redis.expose) come
  -- with the rest: a page's nudges are planned in the arm recorded for them
  local sessions, first, arms = 0, 0, {}
  local all = redis.call('HGETALL', info)
  for i = 1, #all, 2 do
    local f = all[i]
    if f == 'sessions' then sessions = tonumber(all[i + 1])
    elseif f == 'first' then first = tonumber(all[i + 1])
    elseif string.sub(f, 1, 2) == 'x:' then
      arms[#arms + 1] = f
      arms[#arms + 1] = all[i + 1]
    end
  end
  return {sessions, first, same_path, same_type, pending, arms}
end
