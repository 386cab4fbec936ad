-- UpdateConferenceMember: hold or mute one member of the call. What is asked is
-- kept (_wanthold, _wantmute) and the control job asks Twilio for it; the
-- member's Hold and muted then follow Twilio's callbacks. A member not yet in the
-- call gets it once its leg connects.
-- ARGV: prefix, session id, account id, CallSid, hold ('true'|'false'|''), muted (same),
--       now, actor id, actor name
local sid, account, callsid, hold, muted = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now, actor, actor_name = ARGV[7], ARGV[8], ARGV[9]
local err = require_control()
if err then return err end
local bad = live_session(sid, account)
if bad then return {bad} end
local known = redis.call('GET', callkey(callsid))
if not known then return {'nomember'} end
local ksid, mid = string.match(known, '^(%S+) (%S+)$')
if ksid ~= sid then return {'nomember'} end
local m = mkey(sid, mid)
local f = redis.call('HMGET', m, '_rank', '_removed', '_wanthold', '_wantmute', '_hold', 'muted',
  '_sessionhold')
if tonumber(f[1] or '0') >= 3 or f[2] == '1' then return {'gone'} end
local name = member_name(m)
local changed = false
if hold ~= '' then
  local want = '0'
  if hold == 'true' then want = '1' end
  local current = f[3] or f[5] or '0'
  -- Held by the session and now on hold on its own too: resuming the session leaves it be.
  if want == '1' and current == '1' and f[7] == '1' then current = '' end
  if want ~= current then
    -- An agent's own hold is not the session's: resuming the session leaves it be.
    redis.call('HSET', m, '_wanthold', want, '_sessionhold', '0')
    append_log(sid, now, said(actor_name,
      (want == '1' and 'put ' or 'took ') .. name .. (want == '1' and ' on hold' or ' off hold'),
      (want == '1' and 'Hold' or 'Resume') .. ' requested for ' .. name))
    changed = true
  end
end
if muted ~= '' then
  local current = f[4] or f[6] or 'false'
  if muted ~= current then
    redis.call('HSET', m, '_wantmute', muted)
    append_log(sid, now, said(actor_name,
      (muted == 'true' and 'muted ' or 'unmuted ') .. name,
      (muted == 'true' and 'Mute' or 'Unmute') .. ' requested for ' .. name))
    changed = true
  end
end
if changed then
  touch_api(sid, actor, now)
  want_control(sid)
  flush_control(sid, now)
end
prepare_render(sid)
return {'ok', mid}
