-- EndSession: the session ends now; the control job ends the conference at
-- Twilio and hangs up every leg still up, whose callbacks then end each member.
-- ARGV: prefix, session id, account id, now, actor id, actor name
local sid, account, now, actor, actor_name = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local err = require_control()
if err then return err end
local s = redis.call('HMGET', skey(sid), 'accountId', 'ended')
if not s[1] or s[1] ~= account then return 'notfound' end
if s[2] == 'true' then return 'ended' end
touch_api(sid, actor, now)
local by = actor
if actor_name ~= '' then by = actor_name end
end_session(sid, now, 'Ended by ' .. by, said(actor_name, 'ended the call', 'The call was ended'))
flush_control(sid, now)
return 'ended-now'
