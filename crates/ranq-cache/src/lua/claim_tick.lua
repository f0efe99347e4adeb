-- Claim one scheduled tick for the current leader, fenced by its token.
--
-- KEYS[1]  <ns>:{producer}:leader      the lease
-- KEYS[2]  <ns>:{producer}:tick:<id>   the tick claim
-- KEYS[3]  <ns>:{producer}:ticks       tick counters
-- ARGV[1]  the claimer's fencing token
-- ARGV[2]  the claimer's holder id
-- ARGV[3]  claim lifetime in seconds
--
-- Returns 1 claimed, 0 already claimed (counted as a duplicate), -1 not the leader (any more).
-- All keys share the {producer} hash tag.
local lease = redis.call('GET', KEYS[1])
if not lease or string.match(lease, '^(%d+)|') ~= ARGV[1] then
    return -1
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then
    return 1
end
-- The field is ranq_core::TickCounters::DUPLICATES, which status reads.
redis.call('HINCRBY', KEYS[3], 'duplicates_skipped', 1)
return 0
