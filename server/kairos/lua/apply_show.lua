-- Store a batch and the show it earned, in one call: the push waits for one round trip,
-- not two (kairos.engine.redis.RedisEngine.apply_showing).
-- Needs lib/ops.lua lib/shows.lua (prepended at load: kairos.engine.redis._script).
-- The caller applied the batch to the session as it last saw it stored, checked the
-- session's own caps there (kairos.session.session_verdict) and recorded the show on a
-- copy (kairos.session.record_show); what is left to check is the visitor's caps, which
-- live beside the session, and that no one wrote the session meanwhile.
-- KEYS[1] session, KEYS[2] session log, KEYS[3] this visitor's shows of the rule,
-- KEYS[4] this visitor's shows of every rule.
-- ARGV[1] ttl_s, ARGV[2] log_max, ARGV[3] the version of the session as the caller saw
-- it stored, ARGV[4] the caller's result of the batch, ARGV[5] the same with the show
-- recorded, ARGV[6] oid, ARGV[7] now_ms, ARGV[8] shows ttl_s, ARGV[9] to ARGV[14] the
-- visitor's caps (lib/shows.lua), then the batch's log lines and, last, the show's.
-- Returns 1 when both were stored; the reason, as claim_show.lua gives it, when the
-- visitor's caps stop the show (the batch alone is stored, and the caller claims as
-- ever: claim_show.lua logs the refusal once per reason in a row); {the session as
-- stored, or false} when it is no longer at that version: nothing is stored, and the
-- caller applies the batch again to the session as it is.
local ttl, log_max, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[7])
if not unchanged(KEYS[1], ARGV[3]) then
  local raw = redis.pcall('GET', KEYS[1])
  return {type(raw) == 'string' and raw}  -- a hash of an older Kairos: false, as none
end
local why = visitor_verdict(KEYS[3], KEYS[4], now, 9)
if why ~= 'ok' then
  redis.call('SET', KEYS[1], ARGV[4], 'EX', ttl)
  log_and_expire(KEYS[2], 15, log_max, ttl, #ARGV - 1)
  return why
end
redis.call('SET', KEYS[1], ARGV[5], 'EX', ttl)
log_and_expire(KEYS[2], 15, log_max, ttl)
record_visitor_show(KEYS[3], KEYS[4], now, ARGV[6], tonumber(ARGV[8]))
return 1
