-- Push the leases of ARGV[4..] that worker ARGV[2] holds to now + ARGV[3] seconds.
-- Answers per id its state (running / cancelling), or '' where the worker lost it.
run_when_out_of_memory()
local worker = ARGV[2]
local lease_until = fmt(NOW + tonumber(ARGV[3]))
local out = {}
for k = 4, #ARGV do
  local id = ARGV[k]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'worker_id', 'state')
  if holds(f[1], worker) then
    redis.call('HSET', key, 'lease_until', lease_until)
    redis.call('ZADD', LEASES, lease_until, id)
    out[#out + 1] = f[2]
  else
    out[#out + 1] = ''
  end
end
return out
