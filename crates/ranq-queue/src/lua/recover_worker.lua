-- Takes back the jobs a stopped worker had fetched, each only if it is still in that worker's
-- in-flight set (an orphan sweep may have taken it first).
--
-- KEYS[1]  the stopped worker's in-flight set
-- KEYS[2]  the active job list
-- KEYS[3]  the dead job set
-- KEYS[4]  the job metadata prefix (per job: <prefix>:<id>)
-- ARGV[1]  now, seconds since the epoch
-- ARGV[2..] triples of (job id, "requeue" | "dead", reason)
--
-- Returns {requeued, dead}.

local requeued, dead = 0, 0
for i = 2, #ARGV - 2, 3 do
    local id, action, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if redis.call('SREM', KEYS[1], id) == 1 then
        if action == 'dead' then
            redis.call('SADD', KEYS[3], id)
            redis.call('HSET', KEYS[4] .. ':' .. id, 'status', 'Killed', 'result', cjson.encode({ Err = reason }),
                'done_at', ARGV[1])
            dead = dead + 1
        else
            -- To the front: these jobs were already due when the worker fetched them.
            redis.call('LPUSH', KEYS[2], id)
            requeued = requeued + 1
        end
    end
end
return { requeued, dead }
