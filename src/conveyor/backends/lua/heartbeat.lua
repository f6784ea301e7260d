-- Store worker ARGV[2]'s figures (ARGV[3]: a JSON object without its times) with
-- its start (kept from the first heartbeat) and heartbeat times. Answers both.
local id = ARGV[2]
local started = redis.call('HGET', P .. 'workers:started', id)
if not started then
  started = SNOW
  redis.call('HSET', P .. 'workers:started', id, started)
end
local doc = string.sub(ARGV[3], 1, -2) .. ',"started_at":' .. started .. ',"heartbeat_at":'
  .. SNOW .. '}'
redis.call('HSET', P .. 'workers', id, doc)
return {started, SNOW}
