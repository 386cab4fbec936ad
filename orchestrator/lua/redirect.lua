-- RedirectSession, a blind transfer: the destination is invited as with
-- InviteChatMember, every member other than the customer (the caller, or an outgoing
-- call's destination) leaves at once, and the customer hears hold music until the destination connects (end_redirect, called
-- when it connects or when it cannot).
-- ARGV: prefix, session id, account id, kind, address or user ref, new member id, now,
--       caller id (''), actor id, actor name, destination as given, queue key, queues set
--       key, job key, job id, then the job hash as field/value pairs.
local sid, account, kind, ref, mid, now, caller = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local actor, actor_name, destination = ARGV[9], ARGV[10], ARGV[11]
local err = require_control()
if err then return err end
local bad = live_session(sid, account)
if bad then return {bad} end
local job = {}
for i = 12, #ARGV do job[#job + 1] = ARGV[i] end
local outcome, target = add_member(sid, account, kind, ref, mid, now, caller, actor_name, job, true)
if outcome ~= 'created' and outcome ~= 'exists' then return {outcome} end
local sk = skey(sid)
local name = member_name(mkey(sid, target))
append_log(sid, now, said(actor_name, 'transferred the call to ' .. name,
  'The call was transferred to ' .. name))
local customer = customer_of(sid)
for _, other in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
  local m = mkey(sid, other)
  local f = redis.call('HMGET', m, '_rank', '_removed')
  if other ~= target and other ~= customer and tonumber(f[1] or '0') < 3 and f[2] ~= '1' then
    remove(sid, other, now, member_name(m) .. ' left for the transfer', nil)
  end
end
redis.call('HSET', sk, 'destination', destination)
if redis.call('HGET', mkey(sid, target), '_rank') == '2' then
  append_log(sid, now, 'Transferred to ' .. name)  -- already in the call
else
  redis.call('HSET', sk, '_redirect', target)
  if customer then redis.call('HSET', mkey(sid, customer), '_wanthold', '1') end
end
touch_api(sid, actor, now)
want_control(sid)
flush_control(sid, now)
-- Dialled after the control job is queued, so that the others leave and the caller is
-- held before the destination can answer (an idle worker serves the first queue pushed).
if outcome == 'created' then enqueue_dial(job) end
return {'ok', target}
