-- Acquire or renew the producer leader lease.
--
-- KEYS[1]  <ns>:{producer}:leader        value "<token>|<holder>|<since ms>" (ranq_core::LeaseValue)
-- KEYS[2]  <ns>:{producer}:leader_token  fencing-token counter
-- ARGV[1]  holder id (unique per process start)
-- ARGV[2]  lease time-to-live in milliseconds
-- ARGV[3]  now, in milliseconds since the epoch
--
-- Returns {token, 1} when newly acquired, {token, 0} when renewed, {0, 0} when another holds it.
local current = redis.call('GET', KEYS[1])
if current then
    local token, holder = string.match(current, '^(%d+)|([^|]*)|')
    if holder == ARGV[1] then
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return {tonumber(token), 0}
    end
    return {0, 0}
end
local token = redis.call('INCR', KEYS[2])
if token == 1 then
    -- A fresh counter (new namespace, or Redis lost its data): start from the server's clock in
    -- milliseconds, so tokens stay above any a paused ex-leader may still hold from before.
    local now = redis.call('TIME')
    token = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    redis.call('SET', KEYS[2], token)
end
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1] .. '|' .. ARGV[3], 'PX', ARGV[2])
return {token, 1}
