-- Removes dead jobs: their membership in the dead set, their payload and their metadata.
--
-- KEYS[1]  the dead job set
-- KEYS[2]  the job data hash
-- KEYS[3]  the job metadata prefix (per job: <prefix>:<id>)
-- ARGV     job ids
--
-- Returns how many were dead (and are now gone).

local removed = 0
for _, id in ipairs(ARGV) do
    if redis.call('SREM', KEYS[1], id) == 1 then
        redis.call('HDEL', KEYS[2], id)
        redis.call('DEL', KEYS[3] .. ':' .. id)
        removed = removed + 1
    end
end
return removed
