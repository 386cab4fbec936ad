-- Twilio accepted the participant: remember its call leg. A status callback
-- may have recorded the CallSid first; the dial is still logged once.
-- ARGV: prefix, session id, member id, call sid, now, conference sid ('' if unknown)
local sid, mid, callsid, now, conf = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', mkey(sid, mid)) == 0 then return 'missing' end
record_call_sid(sid, mid, callsid)
if mark_dialled(sid, mid, redis.call('HGET', mkey(sid, mid), 'callSid'), now, conf) then
  return 'recorded'
end
return 'known'
