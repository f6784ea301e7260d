-- Record the queued jobs of every queue in the current minute (its 'd:'..q fields),
-- unless every queue has one already (another process sampled this minute); the
-- minute's key then expires ARGV[2] seconds after the minute starts. Answers how many
-- queues were sampled (0: none needed it).
local key = minute_key(MINUTE)
local names = redis.call('HKEYS', P .. 'queues')
local missing = false
for _, q in ipairs(names) do
  if redis.call('HEXISTS', key, 'd:' .. q) == 0 then
    missing = true
    break
  end
end
if not missing then return 0 end
for _, q in ipairs(names) do
  redis.call('HSET', key, 'd:' .. q, redis.call('ZCARD', ready_key(q)))
end
redis.call('EXPIREAT', key, MINUTE + math.floor(tonumber(ARGV[2])))
return #names
