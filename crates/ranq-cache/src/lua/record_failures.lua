-- Records failed refreshes and quarantines groups that keep failing.
--
-- KEYS[1]  <ns>:{quarantine}:failures  hash: group -> health JSON (see ranq_core::GroupHealth)
-- KEYS[2]  <ns>:{quarantine}:due       zset: quarantined group -> ms of its next retry
-- ARGV[1]  now, ms since the epoch
-- ARGV[2]  quarantine_after: consecutive failures that quarantine a group
-- ARGV[3]  quarantine_retry, ms
-- ARGV[4..] pairs of (group, error)
--
-- Returns two lists: the groups this call quarantined (they were not before), and the groups that
-- are still short of quarantine, to be tried again soon.
-- Both keys share the {quarantine} hash tag, so this runs on Redis Cluster too.

local now = tonumber(ARGV[1])
local after = tonumber(ARGV[2])
local retry = tonumber(ARGV[3])
local newly = {}
local again = {}

for i = 4, #ARGV - 1, 2 do
    local group, err = ARGV[i], ARGV[i + 1]
    local rec = nil
    local raw = redis.call('HGET', KEYS[1], group)
    if raw then
        local ok, decoded = pcall(cjson.decode, raw)
        if ok and type(decoded) == 'table' then rec = decoded end
    end
    if not rec then rec = { failures = 0, since_ms = now } end
    rec.failures = (tonumber(rec.failures) or 0) + 1
    rec.error = err
    rec.last_ms = now
    if rec.failures >= after then
        if not rec.quarantined then table.insert(newly, group) end
        rec.quarantined = true
        rec.retry_at_ms = now + retry
        redis.call('ZADD', KEYS[2], now + retry, group)
    else
        table.insert(again, group)
    end
    redis.call('HSET', KEYS[1], group, cjson.encode(rec))
end

return { newly, again }
