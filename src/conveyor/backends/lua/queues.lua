-- Every queue: name, created_at, paused (0/1), then the count of each state ARGV[2..].
-- Running and cancelling jobs are counted from the lease set. A queue dropped while
-- some of its jobs ran is listed by its jobs (created_at 0, as the SQL stores list a
-- queue without its row) until none is left, then forgotten.
local held = held_counts()
local function row_of(q, created_at)
  local row = {q, created_at, redis.call('SISMEMBER', P .. 'paused', q)}
  local total = 0
  for k = 2, #ARGV do
    local state, n = ARGV[k], nil
    if HELD[state] then
      n = (held[q] and held[q][state]) or 0
    else
      n = redis.call('ZCARD', state_key(q, state))
    end
    row[#row + 1] = n
    total = total + n
  end
  return row, total
end
local out = {}
local names = redis.call('HGETALL', P .. 'queues')
local listed = {}
for i = 1, #names, 2 do
  listed[names[i]] = true
  out[#out + 1] = row_of(names[i], names[i + 1])
end
for _, q in ipairs(redis.call('SMEMBERS', DROPPED)) do
  if not listed[q] then
    local row, total = row_of(q, '0')
    if total > 0 then
      out[#out + 1] = row
    else
      redis.call('SREM', DROPPED, q)
    end
  end
end
return out
