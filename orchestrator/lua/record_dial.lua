-- Twilio accepted the participant: remember its call leg. A status callback
-- may have recorded the CallSid first; the dial is still logged once.
-- ARGV: prefix, session id, member id, call sid, now, conference sid ('' if unknown)
local sid, mid, callsid, now, conf = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local m = mkey(sid, mid)
if redis.call('EXISTS', m) == 0 then return 'missing' end
record_call_sid(sid, mid, callsid)
if redis.call('HSETNX', m, '_dialled', '1') == 0 then return 'known' end
redis.call('HSET', skey(sid), 'mostRecentParticipantCallSid', callsid)
if conf ~= '' and not redis.call('HGET', skey(sid), 'conferenceSid') then
  redis.call('HSET', skey(sid), 'conferenceSid', conf)
end
append_log(sid, now, 'Dialled ' .. member_name(m) .. ' (' .. callsid .. ')')
return 'recorded'
