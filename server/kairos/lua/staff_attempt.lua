-- One presentation of the admin token by one client (kairos.lockout), atomically:
-- a client with its limit of wrong tokens counted waits for its window to end,
-- and nothing is counted; otherwise a wrong token is counted.
-- KEYS[1] the client's count (a string, expiring with its window)
-- ARGV[1] "1" when the token was wrong, ARGV[2] most wrong tokens, ARGV[3] window ms
-- Returns the ms to wait: 0 when the client may go ahead.
local key, window = KEYS[1], tonumber(ARGV[3])
local count = tonumber(redis.call('GET', key) or '0')
if count >= tonumber(ARGV[2]) then
  local left = redis.call('PTTL', key)
  if left < 0 then  -- never without an expiry: a key left so would lock the client out for good
    redis.call('PEXPIRE', key, window)
    left = window
  end
  return left
end
if ARGV[1] == '1' then
  if redis.call('INCR', key) == 1 or redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, window)
  end
end
return 0
