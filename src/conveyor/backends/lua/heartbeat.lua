-- Store worker ARGV[2]'s figures (ARGV[3]: a JSON object without its times) with
-- its start (kept from the first heartbeat) and heartbeat times. Answers both, and
-- 1 when the start was not there (a first heartbeat, or the namespace lost its keys).
local id = ARGV[2]
local started = redis.call('HGET', P .. 'workers:started', id)
local fresh = 0
if not started then
  started = SNOW
  fresh = 1
  redis.call('HSET', P .. 'workers:started', id, started)
end
local doc = string.sub(ARGV[3], 1, -2) .. ',"started_at":' .. started .. ',"heartbeat_at":'
  .. SNOW .. '}'
redis.call('HSET', P .. 'workers', id, doc)
return {started, SNOW, fresh}
