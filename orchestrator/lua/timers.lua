-- The workers' sweep (workers/timers.py): runs the queues' timers that are due (a ring
-- round over, a wait too long, a wrap-up over), each once, whichever worker pops it; then,
-- level-triggered, offers what waits in a few queues, so that a call never waits for an
-- event that a crash lost while an agent is free (a few of each such queue's agents
-- checked against its free set first).
-- ARGV: prefix, now, how many timers at most, how many queues at most.
-- Returns the number of timers run.
local now, most, most_queues = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local err = require_control()
if err then return err end
local due = redis.call('ZRANGEBYSCORE', timerskey(), '-inf', clock_ms(), 'LIMIT', 0, most)
for _, name in ipairs(due) do
  redis.call('ZREM', timerskey(), name)
  queues().run_timer(name, now)
end
for _, qid in ipairs(redis.call('SRANDMEMBER', queueswaitingkey(), most_queues)) do
  queues().audit_agents(qid)
  queues().distribute(qid, now)
end
flush_control('', now)
return #due
