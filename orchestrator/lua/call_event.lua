-- One call-progress callback for a dialled member. Callbacks come late, twice
-- and out of order: the member's rank only moves forward, a final state stays
-- final, and a callback that changes nothing writes nothing (so no duplicate log).
-- ARGV: prefix, session id, member id, CallStatus, CallSid, SequenceNumber ('' if none), now,
--       idempotency token ('' if none)
local sid, mid, status, callsid, seq, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local err = require_control()
if err then return err end
if replayed(ARGV[8]) then return 'replayed' end
local m = mkey(sid, mid)
if redis.call('EXISTS', m) == 0 then return 'unknown' end
local f = redis.call('HMGET', m, '_rank', '_hold', '_callseq', '_removed')
local rank = tonumber(f[1] or '0')
if rank >= 3 then return 'final' end
local n = tonumber(seq)
if n and f[3] and n <= tonumber(f[3]) then return 'stale' end
if n then redis.call('HSET', m, '_callseq', seq) end

local finals = {
  ['completed'] = ' left the call', ['busy'] = ' was busy', ['no-answer'] = ' did not answer',
  ['failed'] = ': the call failed', ['canceled'] = ': the call was canceled',
}
local target = 0
if status == 'queued' or status == 'initiated' or status == 'ringing' then target = 1
elseif status == 'in-progress' or status == 'answered' then target = 2
elseif finals[status] then target = 3 end

-- The leg's own callbacks may be the first to tell of it (the create's answer was lost).
local changed = record_call_sid(sid, mid, callsid)
if changed then mark_dialled(sid, mid, callsid, now, '') end
-- A leg that shows up for a removed member, or in an ended session, is ended at Twilio.
if changed and (f[4] == '1' or redis.call('HGET', skey(sid), 'ended') == 'true') then
  want_control(sid)
end
if target == 3 then
  finalize(sid, mid, now, member_name(m) .. finals[status])
  flush_control(sid, now)
  return 'applied'
end
if target <= rank then
  flush_control(sid, now)
  if changed then return 'applied' end
  return 'unchanged'
end
set_member(sid, m, '_rank', tostring(target), 'callState', derive(target, f[2]))
if target == 1 then
  append_log(sid, now, member_name(m) .. ' is ringing')
else
  append_log(sid, now, member_name(m) .. ' answered')
  on_connected(sid, mid, m, now)
end
flush_control(sid, now)
return 'applied'
