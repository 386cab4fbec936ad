-- The dial cannot succeed (Twilio refused it, or retries ran out).
-- ARGV: prefix, session id, member id, now, message
local sid, mid, now, message = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', mkey(sid, mid)) == 0 then return 'missing' end
if finalize(sid, mid, now, message) then return 'ended' end
return 'final'
