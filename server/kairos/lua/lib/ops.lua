-- Library (prepended at load by kairos.engine.redis._script; not a script of its own):
-- a session's state, and its ops. Mirrors kairos.session (SessionState's stored
-- fields, apply_ops); the contract tests hold the two together.
--
-- A session is one string key holding a MessagePack map of field -> string, read and
-- written whole by the script that changes it. As a Redis hash it cost 2.3-3.6 KB:
-- one value over 64 bytes (a product, a URL) turns a hash into a hashtable, ~60 B a
-- field; as a string it costs its bytes (~1.1 KB). And a batch's ops are Lua table
-- writes instead of a redis.call each, its reply one bulk string instead of 90.

-- A session's stored bytes begin with its version, a MessagePack string of 14
-- characters new at every write, then the map. A caller that kept a session's bytes
-- sends back their version alone, and a script compares it with GETRANGE
-- (`unchanged`), instead of the caller sending and Redis comparing the whole
-- kilobyte: each kilobyte argument costs a script ~3 µs of Redis CPU
-- (kairos.engine.redis, compare-and-set).

-- The session stored at `key` as a table of field -> string, or nil if there is none.
-- A session stored as a hash (by a Kairos older than this layout, during an upgrade) is read as
-- one, and one stored without a version as its map: the script's save writes it back
-- as this layout (SET replaces a key of any type).
local function load_session(key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' and raw.err then
    local flat = redis.call('HGETALL', key)
    local s = {}
    for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
    return s
  end
  if not raw then return nil end
  local first, map = cmsgpack.unpack(raw)
  return map or first
end

-- Store the session under a new version and renew its expiry; the bytes stored (a
-- batch's reply). Versions written here are 'L' and the server's clock in
-- microseconds (unique per key: a script takes more than a microsecond); those the
-- processes write are 'P' and a counter of their own (kairos.engine.redis._versioned).
local function save_session(key, s, ttl)
  local t = redis.call('TIME')
  local version = string.format('L%013x', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  local raw = cmsgpack.pack(version) .. cmsgpack.pack(s)
  redis.call('SET', key, raw, 'EX', ttl)
  return raw
end

-- Whether ops may create a session: only those that give it its visitor (a hello's);
-- a batch for a session Redis lost is never applied to an empty one
-- (kairos.engine.base.opens_session).
-- The ops are one flat array of kind, field, value, kind, field, value, ...
local function opens_session(ops)
  for i = 1, #ops, 3 do
    if ops[i + 1] == 'vid' and ops[i + 2] ~= '' then return true end
  end
  return false
end

-- Integers as Python's str(int) writes them (tostring would switch to exponents past 14 digits).
local function int(n)
  return string.format('%d', n)
end

-- Apply ops to the session's table in place (kairos.session.apply_ops).
local function apply_ops(s, ops)
  for i = 1, #ops, 3 do
    local kind, f, v = ops[i], ops[i + 1], ops[i + 2]
    if kind == 'set' then
      s[f] = v
    elseif kind == 'setnx' then
      if s[f] == nil then s[f] = v end
    elseif kind == 'incr' then
      s[f] = int(tonumber(s[f] or '0') + tonumber(v))
    elseif kind == 'max' then
      if s[f] == nil or tonumber(v) > tonumber(s[f]) then s[f] = v end
    elseif kind == 'del' then
      s[f] = nil
    elseif kind == 'copy' then
      s[f] = s[v]
    elseif kind == 'score' then
      -- an intent score's part (kairos.scores.add_part): decay the stored value to
      -- the op's time, then add the weight; same operations, same order, same doubles
      local add, now, hl = string.match(v, '^(%S+) (%S+) (%S+)$')
      local new = tonumber(add)
      local cur = s[f]
      if cur then
        local val, t = string.match(cur, '^(%S+) (%S+)')
        new = tonumber(val) * math.exp(-(tonumber(now) - tonumber(t)) * 0.6931471805599453 / tonumber(hl)) + tonumber(add)
      end
      s[f] = string.format('%.17g', new) .. ' ' .. now .. ' ' .. hl
    elseif kind == 'incr_pt' then
      -- per page type: the field named by the prefix and the page type as it is now
      local key = f .. (s['page_type'] or 'other')
      s[key] = int(tonumber(s[key] or '0') + tonumber(v))
    elseif kind == 'count' then
      if s[f] then
        s[f] = int(tonumber(s[f]) + 1)
      else
        local tally = string.match(f, '^([^:]*)') .. '#'
        local n = tonumber(s[tally] or '0')
        if n < tonumber(v) then
          s[tally] = int(n + 1)
          s[f] = '1'
        end
      end
    else
      error('unknown op ' .. kind)
    end
  end
end

-- Append log lines (ARGV from `first` to `last`, by default the last argument; newest
-- last), keep the newest `log_max`, and renew the log's expiry to the session's (EXPIRE
-- of a session with no log yet is a no-op: no orphan log). One LPUSH for them all, and
-- LTRIM only once the log is longer than it keeps: each redis.call costs a script a
-- microsecond or two of Redis's time beside the command's own (issue 16).
local function log_and_expire(log, first, log_max, ttl, last)
  last = last or #ARGV
  if last >= first and redis.call('LPUSH', log, unpack(ARGV, first, last)) > log_max then
    redis.call('LTRIM', log, 0, log_max - 1)
  end
  redis.call('EXPIRE', log, ttl)
end

-- Whether the session at `key` is still at `version`, the stored version of the
-- bytes the caller kept ('' when it kept none, or bytes without one): then the
-- caller's own result of the write may be stored as it is (compare and set,
-- kairos.engine.redis.RedisEngine._seen). A session stored as a hash by an older
-- Kairos is not a string: never unchanged.
local function unchanged(key, version)
  return version ~= nil and version ~= '' and redis.pcall('GETRANGE', key, 0, #version - 1) == version
end
