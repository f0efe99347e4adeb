-- Removes finished jobs, a bounded number per call, so Redis memory stays flat.
--
-- KEYS[1]  the done set (ids of finished jobs)
-- KEYS[2]  the job payload hash
-- ARGV[1]  how many to remove at most
-- ARGV[2]  prefix of the per-job metadata hashes (<prefix>:<id>), computed here as apalis-redis does
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
for _, id in ipairs(ids) do
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', ARGV[2] .. ':' .. id)
end
return #ids
