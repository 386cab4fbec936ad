-- DeleteChatMember. By the member's state when the request lands: never dialled,
-- it ends here and its dial job will find it final; being dialled, ringing or in
-- the call, it is marked removed and the control job ends its leg at Twilio (a
-- create still in flight is ended as soon as its CallSid is known, see record_dial).
-- The member's callState then follows Twilio's callbacks.
-- ARGV: prefix, session id, account id, member ref, now, actor id, actor name
local sid, account, ref, now, actor, actor_name = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local err = require_control()
if err then return err end
local bad = live_session(sid, account)
if bad then return {bad} end
local mid = find_member(sid, account, ref)
if not mid then return {'nomember'} end
local m = mkey(sid, mid)
local f = redis.call('HMGET', m, '_rank', '_removed')
if tonumber(f[1] or '0') >= 3 or f[2] == '1' then
  prepare_render(sid)
  return {'unchanged', mid}
end
local name = member_name(m)
local message = said(actor_name, 'removed ' .. name, name .. ' was removed')
if actor ~= '' and redis.call('HGET', m, 'identity') == actor then
  message = name .. ' left the call through the API'  -- an agent leaving (warm transfer)
end
touch_api(sid, actor, now)
remove(sid, mid, now, message, message)
flush_control(sid, now)
prepare_render(sid)
return {'removed', mid}
