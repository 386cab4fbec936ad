-- What Twilio's callbacks and the worker's dials report: a leg's CallSid, that it was
-- dialled, that it connected; and Twilio's retries of a callback, applied once.

-- Twilio's retry of a callback carries the first attempt's I-Twilio-Idempotency-Token:
-- the first delivery of a token wins, later ones change nothing. Twilio retries within
-- seconds; a token is remembered as long as the events its callback wrote.
local IDEMPOTENCY_SECONDS = EVENTS_KEEP_SECONDS
local function replayed(token)
  if token == nil or token == '' then return false end
  return not redis.call('SET', idemkey(token), '1', 'NX', 'EX', IDEMPOTENCY_SECONDS)
end

local function record_call_sid(sid, mid, callsid)
  if not callsid or callsid == '' then return false end
  local m = mkey(sid, mid)
  if redis.call('HGET', m, 'callSid') then return false end
  set_member(sid, m, 'callSid', callsid)
  redis.call('SET', callkey(callsid), sid .. ' ' .. mid)
  return true
end

-- The dial of a member is logged once, whoever learns its CallSid first.
local function mark_dialled(sid, mid, callsid, now, conf)
  local m = mkey(sid, mid)
  if redis.call('HSETNX', m, '_dialled', '1') == 0 then return false end
  redis.call('HSET', skey(sid), 'mostRecentParticipantCallSid', callsid)
  if conf ~= '' and not redis.call('HGET', skey(sid), 'conferenceSid') then
    redis.call('HSET', skey(sid), 'conferenceSid', conf)
  end
  append_log(sid, now, 'Dialled ' .. member_name(m) .. ' (' .. callsid .. ')')
  return true
end

-- A member's leg is in the call: who answered, whether the session was missed,
-- and whatever Twilio work waited for the leg to connect.
local function on_connected(sid, mid, m, now)
  local f = redis.call('HMGET', m, 'role', 'identity', 'displayName', '_removed', '_wanthold',
    '_wantmute')
  if f[1] == 'Caller' then return end
  local sk = skey(sid)
  if redis.call('HGET', sk, '_dialafter') == mid then release_pending_dial(sid) end
  queue_connected(sid, mid, m, now)
  touched(sid, 'SessionAnswered')
  redis.call('HSET', sk, '_anyconnected', '1')
  if f[1] == 'Agent' and not redis.call('HGET', sk, 'answeredById') then
    redis.call('HSET', sk, 'answeredById', f[2], 'answeredByName', f[3] or f[2])
  end
  if f[4] == '1' or f[5] == '1' or f[6] == 'true'
    or redis.call('HGET', sk, 'ended') == 'true' then
    want_control(sid)
  end
  end_redirect(sid, now, mid, 'Transferred to ' .. (f[3] or f[2] or '?'))
end
