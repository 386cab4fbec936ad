-- An incoming call to one of our numbers. Idempotent on the CallSid, because
-- Twilio may fetch the voice URL again for the same call. A call to a ring queue's
-- number enters the queue in the same step (_queues.lua). Returns
-- {'created'|'exists', sid, queue id or ''} or {'nonumber'}.
-- ARGV: prefix, call sid, from, to, now, new session id, new member id, now in epoch ms
-- (the listing's order and date filters follow dateCreated; Redis' clock if absent)
local callsid, from, to, now, sid, mid = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local err = require_control()
if err then return err end
local known = redis.call('GET', callkey(callsid))
if known then
  local ksid = string.match(known, '^(%S+)')
  return {'exists', ksid, redis.call('HGET', skey(ksid), 'ringQueueId') or ''}
end
local account = redis.call('GET', numberkey(to))
if not account then return {'nonumber'} end
local name = redis.call('HGET', accountkey(account), 'name')
redis.call('HSET', skey(sid),
  'id', sid, 'accountId', account, 'callSid', callsid, 'fromAddress', from, 'toAddress', to,
  'displayName', from, 'direction', 'Incoming', 'channel', 'Voice', 'dialState', 'Active',
  'callState', 'Ringing', 'queueState', 'None', 'holdReason', 'None', 'ended', 'false',
  'wasMissed', 'false', 'dateCreated', now, 'dateLastModified', now,
  'mostRecentParticipantCallSid', callsid, '_number', to)
if name then redis.call('HSET', skey(sid), 'accountName', name) end
redis.call('HSET', mkey(sid, mid),
  'id', mid, 'identity', from, 'displayName', from, 'isOriginalMember', 'true', 'role', 'Caller',
  'callState', 'Ringing', 'muted', 'false', '_rank', '1', '_hold', '0', '_to', from)
redis.call('RPUSH', idskey(sid), mid)
redis.call('HSET', activekey(sid), from, mid)
record_call_sid(sid, mid, callsid)
local ms = tonumber(ARGV[8]) or clock_ms()
redis.call('ZADD', sessionsidx(account), ms, sid)
redis.call('ZADD', activeidx(account), ms, sid)
append_log(sid, now, 'Incoming call from ' .. from .. ' to ' .. to)
touched(sid, 'ActiveSessionsChanged')
-- A number of a ring queue: the call waits there, and is offered at once if it can be.
local qid = redis.call('GET', numberqueuekey(to))
if qid and not queues().enter_queue(sid, qid, now) then qid = nil end
flush_control(sid, now)
return {'created', sid, qid or ''}
