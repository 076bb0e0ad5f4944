-- Record a page view under the visitor and count the views of the last 24 h.
-- Needs lib/visit.lua (prepended at load: kairos.engine.redis._script).
-- KEYS[1] visitor info hash, KEYS[2] page views, KEYS[3] the visitor's sessions.
-- ARGV[1] now_ms, ARGV[2] session id, ARGV[3] path, ARGV[4] page type,
-- ARGV[5] '1' to record this view, ARGV[6] info ttl_s, ARGV[7] window_ms, ARGV[8] most views kept,
-- ARGV[9] the sessions index's ttl_s
return visit(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1',
             tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]))
