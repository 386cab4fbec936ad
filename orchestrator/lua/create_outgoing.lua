-- A call an agent places (docs/api.md#calls-agents-place): from their softphone (the
-- TwiML App's voice webhook, idempotent on its CallSid) or by click to call
-- (NewOutgoingSession, which dials the agent first). One step creates the outgoing
-- session, the agent as its original member and the destination as a member whose dial
-- job waits in pendingdial until the agent's leg is in the conference (on_connected
-- releases it), so the destination is dialled once, and only after the agent is there.
-- ARGV: prefix, account id ('' for a softphone's call: the user's), agent user id,
--       agent's CallSid ('' for click to call), destination kind ('phone'|'user'),
--       destination (E.164, or a user id or lower-cased email), destination as dialled,
--       the number's country ('' for a user), the setting's countries ("US,CA"),
--       callerId asked for (E.164 or ''), now, new session id, agent member id,
--       destination member id, now in epoch ms, actor id, actor name, ring queue id
--       ('' for none), n, then the agent's dial job (n items; none for a softphone's
--       call or a queue's), then the destination's.
-- With a ring queue (NewOutgoingSession's flowId), a progressive dial: no agent is rung
-- first; the destination is dialled at once, and once their leg connects the call
-- enters the queue as an incoming call would (on_connected).
-- Returns {'created', sid} | {'exists', sid} | {'nouser'} | {'nodest'} | {'self'} |
--         {'notallowed', countries} | {'noqueue'}.
local account, uid, callsid, kind, ref, dialled = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local region, default_countries, asked = ARGV[8], ARGV[9], ARGV[10]
local now, sid, agent, dest, ms = ARGV[11], ARGV[12], ARGV[13], ARGV[14], tonumber(ARGV[15])
local actor, actor_name, flow = ARGV[16], ARGV[17], ARGV[18]
local n = tonumber(ARGV[19])
local agent_job, dest_job = {}, {}
for i = 20, 19 + n do agent_job[#agent_job + 1] = ARGV[i] end
for i = 20 + n, #ARGV do dest_job[#dest_job + 1] = ARGV[i] end

if callsid ~= '' then
  local known = redis.call('GET', callkey(callsid))
  if known then return {'exists', string.match(known, '^(%S+)')} end
end
local u = redis.call('HMGET', userkey(uid), 'accountId', 'name', 'email', 'avatarUrl')
if not u[1] or (account ~= '' and u[1] ~= account) then return {'nouser'} end
account = u[1]
local agent_name = u[2] or u[3] or uid
if flow ~= '' and redis.call('HGET', queuekey(flow), 'accountId') ~= account then
  return {'noqueue'}
end

local to, shown
if kind == 'phone' then
  -- The countries half of the dial policy (orchestrator/dial_policy.py checked the rest).
  local allowed = redis.call('HGET', accountkey(account), 'dialCountries') or default_countries
  if not string.find(',' .. allowed .. ',', ',' .. region .. ',', 1, true) then
    return {'notallowed', allowed}
  end
  to, shown = ref, ref
else
  local target = redis.call('GET', userrefkey(account, ref))
  if not target then return {'nodest'} end
  if target == uid then return {'self'} end
  local t = redis.call('HMGET', userkey(target), 'name', 'email')
  to, shown = 'client:' .. target, t[1] or t[2] or target
end

-- The caller ID: the number asked for if it is the account's, else its first number,
-- else none here (begin_dial then uses DEFAULT_CALLER_ID).
local caller = ''
if asked ~= '' and redis.call('GET', numberkey(asked)) == account then
  caller = asked
else
  caller = redis.call('LINDEX', accountnumberskey(account), 0) or ''
end

local sk = skey(sid)
redis.call('HSET', sk,
  'id', sid, 'accountId', account, 'fromAddress', 'client:' .. uid, 'toAddress', to,
  'destination', dialled, 'displayName', shown, 'direction', 'Outgoing', 'channel', 'Voice',
  'dialState', 'Active', 'callState', 'Ringing', 'queueState', 'None', 'holdReason', 'None',
  'ended', 'false', 'wasMissed', 'false', 'dateCreated', now, 'dateLastModified', now,
  'endpointId', uid, 'endpointName', agent_name, 'fromName', agent_name,
  '_dialafter', agent, '_destmember', dest)
if caller ~= '' then redis.call('HSET', sk, 'callbackNumber', caller, '_number', caller) end
local name = redis.call('HGET', accountkey(account), 'name')
if name then redis.call('HSET', sk, 'accountName', name) end
redis.call('ZADD', sessionsidx(account), ms, sid)
redis.call('ZADD', activeidx(account), ms, sid)
append_log(sid, now, 'Outgoing call from ' .. agent_name .. ' to ' .. shown)

if flow ~= '' then
  -- A progressive dial: the destination first, then the queue (on_connected).
  redis.call('HDEL', sk, '_dialafter')
  redis.call('HSET', sk, '_queueafter', flow)
  touch_api(sid, actor, now)
  add_member(sid, account, kind, ref, dest, now, '', actor_name, dest_job, false, true)
  redis.call('HSET', mkey(sid, dest), '_waitmusic', '1')
  touched(sid, 'ActiveSessionsChanged')
  prepare_render(sid)
  return {'created', sid}
elseif callsid ~= '' then
  -- The softphone's call is up: its leg joins the conference by the TwiML we answer.
  local m = mkey(sid, agent)
  redis.call('HSET', m, 'id', agent, 'identity', uid, 'endpointId', uid,
    'displayName', agent_name, 'isOriginalMember', 'true', 'role', 'Agent',
    'callState', 'Ringing', 'muted', 'false', '_rank', '1', '_hold', '0', '_to', 'client:' .. uid)
  if u[4] then redis.call('HSET', m, 'avatarUrl', u[4]) end
  redis.call('RPUSH', idskey(sid), agent)
  redis.call('HSET', activekey(sid), 'client:' .. uid, agent)
  redis.call('SADD', usersessionskey(uid), sid)
  agent_changed(uid)
  record_call_sid(sid, agent, callsid)
  redis.call('HSET', sk, 'callSid', callsid, 'mostRecentParticipantCallSid', callsid)
else
  -- Click to call: the agent is rung first, as an invited member that is the original.
  add_member(sid, account, 'user', uid, agent, now, '', actor_name, agent_job, false, true)
  redis.call('HSET', mkey(sid, agent), 'isOriginalMember', 'true')
  append_log(sid, now, 'Calling ' .. agent_name .. ' first')
end
touch_api(sid, actor, now)
add_member(sid, account, kind, ref, dest, now, '', actor_name, dest_job, true, true)
redis.call('RPUSH', pendingdialkey(sid), unpack(dest_job))
touched(sid, 'ActiveSessionsChanged')
prepare_render(sid)
return {'created', sid}
