-- One conference callback. The conference is named after the session; a
-- participant is found by its Label (our member id) or else by its CallSid.
-- Hold and mute are ordered by the conference's SequenceNumber, so a late
-- 'hold' cannot undo a newer 'unhold'.
-- ARGV: prefix, FriendlyName, StatusCallbackEvent, ConferenceSid, CallSid,
--       ParticipantLabel, SequenceNumber ('' if none), now, idempotency token ('' if none)
local sid, event, conf, callsid, label, seq, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local err = require_control()
if err then return err end
if replayed(ARGV[9]) then return 'replayed' end
local sk = skey(sid)
if redis.call('EXISTS', sk) == 0 then return 'unknown' end
local ended = redis.call('HGET', sk, 'ended') == 'true'
if conf ~= '' and not redis.call('HGET', sk, 'conferenceSid') then
  redis.call('HSET', sk, 'conferenceSid', conf)
  touched(sid)
end

if event == 'conference-start' then
  if ended or redis.call('HGET', sk, 'callState') ~= 'Ringing' then return 'unchanged' end
  redis.call('HSET', sk, 'callState', 'Connected')
  append_log(sid, now, 'Conference started')
  return 'applied'
end
if event == 'conference-end' then
  if ended then return 'final' end
  -- Legs still ringing are not ended with the conference: the control job cancels them.
  end_session(sid, now, '', 'Conference ended')
  flush_control(sid, now)
  return 'applied'
end

local mid = nil
if label ~= '' and redis.call('EXISTS', mkey(sid, label)) == 1 then mid = label end
if not mid and callsid ~= '' then
  local known = redis.call('GET', callkey(callsid))
  if known then
    local ksid, kmid = string.match(known, '^(%S+) (%S+)$')
    if ksid == sid then mid = kmid end
  end
end
if not mid then return 'unknown-member' end

local m = mkey(sid, mid)
local f = redis.call('HMGET', m, '_rank', '_hold', '_holdseq', '_muteseq', 'muted')
local rank = tonumber(f[1] or '0')
if rank >= 3 then return 'final' end
local changed = record_call_sid(sid, mid, callsid)
if changed then mark_dialled(sid, mid, callsid, now, conf) end
local n = tonumber(seq)

if event == 'participant-leave' then
  -- When the original member's leg ends (the caller, or the agent of an outgoing call),
  -- finalize ends the session: the conference and every other leg.
  finalize(sid, mid, now, member_name(m) .. ' left the conference')
  flush_control(sid, now)
  return 'applied'
end
if event == 'participant-join' then
  if rank >= 2 then
    if changed then return 'applied' end
    return 'unchanged'
  end
  set_member(sid, m, '_rank', '2', 'callState', derive(2, f[2]))
  append_log(sid, now, member_name(m) .. ' joined the conference')
  on_connected(sid, mid, m, now)
  flush_control(sid, now)
  return 'applied'
end

local function newer(seqfield)
  if not n then return true end
  if f[seqfield] and n <= tonumber(f[seqfield]) then return false end
  return true
end

if event == 'participant-hold' or event == 'participant-unhold' then
  if not newer(3) then return 'stale' end
  local hold = '0'
  if event == 'participant-hold' then hold = '1' end
  if n then redis.call('HSET', m, '_holdseq', seq) end
  if hold == f[2] then return 'unchanged' end
  set_member(sid, m, '_hold', hold, 'callState', derive(rank, hold))
  if hold == '1' then append_log(sid, now, member_name(m) .. ' is on hold')
  else append_log(sid, now, member_name(m) .. ' is off hold') end
  return 'applied'
end
if event == 'participant-mute' or event == 'participant-unmute' then
  if not newer(4) then return 'stale' end
  local muted = 'false'
  if event == 'participant-mute' then muted = 'true' end
  if n then redis.call('HSET', m, '_muteseq', seq) end
  if muted == f[5] then return 'unchanged' end
  set_member(sid, m, 'muted', muted)
  if muted == 'true' then append_log(sid, now, member_name(m) .. ' was muted')
  else append_log(sid, now, member_name(m) .. ' was unmuted') end
  return 'applied'
end
return 'ignored'
