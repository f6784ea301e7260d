-- Every queue: name, created_at, paused (0/1), then the count of each state ARGV[2..].
local out = {}
local names = redis.call('HGETALL', P .. 'queues')
for i = 1, #names, 2 do
  local q = names[i]
  local row = {q, names[i + 1], redis.call('SISMEMBER', P .. 'paused', q)}
  for k = 2, #ARGV do
    row[#row + 1] = redis.call('ZCARD', state_key(q, ARGV[k]))
  end
  out[#out + 1] = row
end
return out
