-- Fenced write of one group's snapshot: the version fence (ranq_core::fence), atomically.
--
-- KEYS[1]  <ns>:top:{<group>}   the snapshot JSON
-- KEYS[2]  <ns>:gone:{<group>}  tombstone: the version at which the group was found absent
-- ARGV[1]  the incoming version (microseconds since the epoch)
-- ARGV[2]  the snapshot JSON, or '' when the group is absent from the source
-- ARGV[3]  tombstone lifetime in seconds
--
-- Returns 1 written, 2 deleted, 0 fenced (the stored version is not older than the incoming one),
-- 3 fenced while no snapshot is stored (the group is absent at a newer version).
-- Both keys share the group's hash tag, so this runs on Redis Cluster too.

local incoming = tonumber(ARGV[1])
local stored = nil

-- Snapshots are written with "group" and "version" first, so their first bytes are enough: a
-- GETRANGE copies 96 bytes into Lua where a GET would copy the whole ~6 KB snapshot (measured:
-- 16 % less script time in a full refresh). A value that does not match is corrupt, and any write
-- may replace it.
local current = redis.call('GETRANGE', KEYS[1], 0, 95)
if current ~= '' then
    local v = string.match(current, '^{"group":%-?%d+,"version":(%d+)')
    if v then stored = tonumber(v) end
end
local tombstone = tonumber(redis.call('GET', KEYS[2]) or '')
if tombstone and (not stored or tombstone > stored) then stored = tombstone end

if stored and stored >= incoming then
    -- Fenced by a tombstone, with no snapshot stored: tell the caller, so that the group leaves
    -- the index even if the write that deleted it lost its reply and is being retried.
    if current == '' then return 3 end
    return 0
end

if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
    redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
    return 2
end

redis.call('SET', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
