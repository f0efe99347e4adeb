-- Take the dirty set for one tick.
--
-- KEYS[1]  <ns>:dirty          public set of groups to refresh
-- KEYS[2]  <ns>:dirty:claimed{<ns>:dirty}  marks taken by a tick and not yet enqueued (same
--          Cluster slot as KEYS[1], so the RENAME below works there too)
--
-- Marks left in KEYS[2] by a tick whose producer died are merged back first, so they are taken
-- again now. The set is then renamed away before it is read: a mark added meanwhile lands in a
-- new KEYS[1] and is taken next tick. The caller deletes KEYS[2] once every job is enqueued.
if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('SUNIONSTORE', KEYS[1], KEYS[1], KEYS[2])
    redis.call('DEL', KEYS[2])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {}
end
redis.call('RENAME', KEYS[1], KEYS[2])
return redis.call('SMEMBERS', KEYS[2])
