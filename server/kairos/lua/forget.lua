-- Erase one session of a visitor who withdrew consent, if it is theirs.
-- Needs lib/ops.lua (prepended at load: kairos.engine.redis._script).
-- KEYS[1] session, KEYS[2] session log (one hash tag: one slot).
-- ARGV[1] the visitor id; ARGV[2] '1' when the session came from the visitor's own
-- index (a session that names no visitor is then theirs too: a batch re-created it
-- after it expired), '0' when the caller only named it.
-- Returns 1 erased, 0 no such session (its log, if any, erased when indexed), -1 not theirs.
local s = load_session(KEYS[1])
local owner = s and s['vid']
if owner == ARGV[1] or (not owner and ARGV[2] == '1') then
  redis.call('DEL', KEYS[1], KEYS[2])
  return s and 1 or 0
end
return s and -1 or 0
