-- Which of a ring queue's agents are free (docs/queues.md): Ready, with no leg in any
-- session. Each queue keeps its free agents in a sorted set by when they became idle,
-- so finding a free agent, or the one idle longest, reads only the free ones, however
-- many agents the queue has. Every script that changes what decides it (an agent's
-- state, the sessions a user has a leg in, the queues a user is in) calls
-- agent_changed in the same step, so the set never disagrees with what it summarises.

local function agent_free(uid)
  return redis.call('HGET', userkey(uid), 'agentState') == 'Ready'
    and redis.call('SCARD', usersessionskey(uid)) == 0
end

local function agent_changed(uid)
  local qids = redis.call('SMEMBERS', userqueueskey(uid))
  if #qids == 0 then return end
  local free = agent_free(uid)
  local idle = tonumber(redis.call('HGET', userkey(uid), '_idlesince') or '0')
  for _, qid in ipairs(qids) do
    if free then
      redis.call('ZADD', queuefreekey(qid), idle, uid)
    else
      redis.call('ZREM', queuefreekey(qid), uid)
    end
  end
end
