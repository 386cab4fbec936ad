-- An operator makes a user an agent of a queue, after those already there, or no longer
-- one (orchestrator queues add|remove): the queue's list, the user's set of queues and
-- the queue's free set, in one step, the free set as every other script keeps it.
-- ARGV: prefix, queue id, user id, 'add' or 'remove'.
-- Returns 1 if the queue's agents changed, else 0.
local qid, uid, op = ARGV[2], ARGV[3], ARGV[4]
if op == 'add' then
  local added = 0
  if not redis.call('LPOS', queueagentskey(qid), uid) then
    redis.call('RPUSH', queueagentskey(qid), uid)
    added = 1
  end
  redis.call('SADD', userqueueskey(uid), qid)
  agent_changed(uid)
  return added
end
local removed = redis.call('LREM', queueagentskey(qid), 0, uid)
redis.call('SREM', userqueueskey(uid), qid)
redis.call('ZREM', queuefreekey(qid), uid)
return math.min(removed, 1)
