-- The dial cannot succeed (Twilio refused it, or retries ran out).
-- ARGV: prefix, session id, member id, now, message
local sid, mid, now, message = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local err = require_control()
if err then return err end
if redis.call('EXISTS', mkey(sid, mid)) == 0 then return 'missing' end
local ended = finalize(sid, mid, now, message)
flush_control(sid, now)  -- a blind transfer to this member is over
if ended then return 'ended' end
return 'final'
