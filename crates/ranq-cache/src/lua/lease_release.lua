-- Release the producer leader lease if, and only if, ARGV[1] holds it.
-- KEYS[1]  <ns>:{producer}:leader
local current = redis.call('GET', KEYS[1])
if current and string.match(current, '^%d+|([^|]*)|') == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
