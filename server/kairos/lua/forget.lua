-- Erase one session of a visitor who withdrew consent, if it is theirs.
-- KEYS[1] session hash, KEYS[2] session log (one hash tag: one slot).
-- ARGV[1] the visitor id; ARGV[2] '1' when the session came from the visitor's own
-- index (a hash that names no visitor is then theirs too: a batch re-created it
-- after it expired), '0' when the caller only named it.
-- Returns 1 erased, 0 no such session (its log, if any, erased when indexed), -1 not theirs.
local owner = redis.call('HGET', KEYS[1], 'vid')
if owner == ARGV[1] or (not owner and ARGV[2] == '1') then
  local existed = redis.call('EXISTS', KEYS[1])
  redis.call('DEL', KEYS[1], KEYS[2])
  return existed
end
if owner or redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
return 0
