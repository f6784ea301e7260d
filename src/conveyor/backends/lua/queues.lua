-- Every queue: name, created_at, paused (0/1), then the count of each state ARGV[2..].
-- Running and cancelling jobs are counted from the lease set.
local held = {}
for _, id in ipairs(redis.call('ZRANGE', LEASES, 0, -1)) do
  local f = redis.call('HMGET', job_key(id), 'queue', 'state')
  if f[1] then
    local key = f[1] .. ':' .. f[2]
    held[key] = (held[key] or 0) + 1
  end
end
local out = {}
local names = redis.call('HGETALL', P .. 'queues')
for i = 1, #names, 2 do
  local q = names[i]
  local row = {q, names[i + 1], redis.call('SISMEMBER', P .. 'paused', q)}
  for k = 2, #ARGV do
    local state = ARGV[k]
    if HELD[state] then
      row[#row + 1] = held[q .. ':' .. state] or 0
    else
      row[#row + 1] = redis.call('ZCARD', state_key(q, state))
    end
  end
  out[#out + 1] = row
end
return out
