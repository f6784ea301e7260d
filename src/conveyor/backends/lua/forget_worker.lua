-- Remove worker ARGV[2]'s registration if its last heartbeat is still before ARGV[3]
-- (store clock, seconds): 1 if removed, 0 if not (gone already, or beating again).
-- In one script, so that a heartbeat cannot come between the look and the removal.
local doc = redis.call('HGET', P .. 'workers', ARGV[2])
if not doc then return 0 end
local beat = tonumber(cjson.decode(doc)['heartbeat_at'])
if not beat or beat >= tonumber(ARGV[3]) then return 0 end
redis.call('HDEL', P .. 'workers', ARGV[2])
redis.call('HDEL', P .. 'workers:started', ARGV[2])
return 1
