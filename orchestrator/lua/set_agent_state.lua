-- An agent sets their own state (SetAgentState): Ready, NotReady or LoggedOut, reason
-- SetByUser. Becoming Ready offers them what waits in their queues at once; leaving
-- Ready may leave a queue with nobody to come, whose calls then give up at once.
-- ARGV: prefix, user id, account id, state, now.
-- Returns {state, reason}, or {} if the user is not of the account.
local uid, account, state, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local err = require_control()
if err then return err end
if redis.call('HGET', userkey(uid), 'accountId') ~= account then return {} end
local q = queues()
q.set_agent(uid, state, 'SetByUser')
q.distribute_for(uid, now)
flush_control('', now)
local u = redis.call('HMGET', userkey(uid), 'agentState', 'agentStateReason')
return {u[1], u[2]}
