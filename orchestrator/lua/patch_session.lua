-- PatchSession and HoldSession. Holding puts every member in the call other than
-- the holder on hold (hold music at Twilio, through the control job) and marks
-- them as held by the session; callState Connected takes exactly those members
-- off hold again. A member who joins while the session is held is not held: it
-- is the colleague of a warm transfer, who must hear the agent. consoleData and
-- queueState are notes and may still be written once the session has ended.
-- ARGV: prefix, session id, account id, now, actor id, actor name, callState ('' to keep),
--       holdReason ('' to keep), holder's CallSid (''), the key's user id (''), then
--       field/value pairs stored as given (consoleData, queueState)
local sid, account, now, actor, actor_name = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local state, reason, holder_sid, user = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local err = require_control()
if err then return err end
local sk = skey(sid)
local s = redis.call('HMGET', sk, 'accountId', 'ended', 'callState')
if not s[1] or s[1] ~= account then return {'notfound'} end
if s[2] == 'true' and (state ~= '' or reason ~= '') then return {'ended'} end
-- A holder named by a CallSid that is no leg of this session is an unknown member (404),
-- not a reason to hold everyone, the agent who asked included.
if state == 'Hold' and holder_sid ~= '' then
  local known = redis.call('GET', callkey(holder_sid))
  if not known or string.match(known, '^(%S+) ') ~= sid then return {'nomember'} end
end

local changed = false
for i = 11, #ARGV, 2 do
  if redis.call('HGET', sk, ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', sk, ARGV[i], ARGV[i + 1])
    changed = true
  end
end

local function holder()
  if holder_sid ~= '' then
    local known = redis.call('GET', callkey(holder_sid))
    if known then
      local ksid, kmid = string.match(known, '^(%S+) (%S+)$')
      if ksid == sid then return kmid end
    end
    return nil
  end
  if user ~= '' then return find_member(sid, account, user) end
  return nil
end

if state == 'Hold' and s[3] ~= 'Hold' then
  local keep = holder()
  for _, mid in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
    local m = mkey(sid, mid)
    local f = redis.call('HMGET', m, '_rank', '_removed', '_wanthold')
    -- A member already held on its own (UpdateConferenceMember) stays its own: resuming
    -- the session must not take it off hold.
    if mid ~= keep and f[1] == '2' and f[2] ~= '1' and f[3] ~= '1' then
      redis.call('HSET', m, '_wanthold', '1', '_sessionhold', '1')
    end
  end
  if reason == '' then reason = 'None' end
  redis.call('HSET', sk, 'callState', 'Hold', 'holdReason', reason, 'heldByUserId', actor)
  local why = ''
  if reason == 'Transferring' then why = ' to transfer it' end
  append_log(sid, now, said(actor_name, 'put the call on hold' .. why,
    'The call was put on hold' .. why))
  touched(sid, 'SessionHeld')
  want_control(sid)
  changed = true
elseif state == 'Connected' and s[3] == 'Hold' then
  for _, mid in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
    local m = mkey(sid, mid)
    if redis.call('HGET', m, '_sessionhold') == '1' then
      redis.call('HSET', m, '_wanthold', '0', '_sessionhold', '0')
    end
  end
  redis.call('HSET', sk, 'callState', 'Connected', 'holdReason', 'None')
  redis.call('HDEL', sk, 'heldByUserId')
  append_log(sid, now, said(actor_name, 'took the call off hold', 'The call was taken off hold'))
  want_control(sid)
  changed = true
elseif state == '' and reason ~= '' and s[3] == 'Hold' then
  if redis.call('HGET', sk, 'holdReason') ~= reason then
    redis.call('HSET', sk, 'holdReason', reason)
    changed = true
  end
end
if changed then touch_api(sid, actor, now) end
flush_control(sid, now)
prepare_render(sid)
return {'ok'}
