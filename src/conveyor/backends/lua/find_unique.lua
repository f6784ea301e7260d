-- The newest stored job carrying unique key ARGV[2], in any state: its fields, or
-- nothing. The key's sorted set holds every job enqueued with it since that set is
-- kept; the active holder is looked at too, for a job an older conveyor enqueued.
local unique_key = ARGV[2]
local newest = redis.call('ZREVRANGEBYLEX', P .. 'unique:' .. unique_key, '+', '-', 'LIMIT', 0,
  1)[1]
local holder = redis.call('HGET', P .. 'unique', unique_key)
if holder and (not newest or holder > newest) then newest = holder end
if not newest then return {} end
return redis.call('HGETALL', job_key(newest))
