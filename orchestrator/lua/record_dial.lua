-- Twilio accepted the participant: remember its call leg. A status callback
-- may have recorded the CallSid first; the dial is still logged once.
-- ARGV: prefix, session id, member id, call sid, now, conference sid ('' if unknown)
-- A member removed (or a session ended) while the create was in flight has its
-- new leg ended by the control job as soon as it exists: now.
local sid, mid, callsid, now, conf = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local err = require_control()
if err then return err end
local m = mkey(sid, mid)
if redis.call('EXISTS', m) == 0 then return 'missing' end
record_call_sid(sid, mid, callsid)
local dialled = mark_dialled(sid, mid, redis.call('HGET', m, 'callSid'), now, conf)
if redis.call('HGET', m, '_removed') == '1' or redis.call('HGET', skey(sid), 'ended') == 'true' then
  want_control(sid)
  flush_control(sid, now)
  return 'removed'
end
if dialled then return 'recorded' end
return 'known'
