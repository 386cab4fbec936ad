-- Adds a member and enqueues its dial job in one step: an invite answered 200
-- always has its job, and a member already in the session is not added twice.
-- ARGV: prefix, session id, account id, kind ('phone'|'user'), address or user ref,
--       new member id, now, caller id ('' for the session's own), actor id, actor name
--       ('' for a key with no user), queue key, queues set key, job key, job id, then the
--       job hash as field/value pairs.
local sid, account, kind, ref, mid, now, caller = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local actor, actor_name = ARGV[9], ARGV[10]
local bad = live_session(sid, account)
if bad then return {bad} end
local job = {}
for i = 11, #ARGV do job[#job + 1] = ARGV[i] end
local outcome, id = add_member(sid, account, kind, ref, mid, now, caller, actor_name, job)
if outcome == 'created' then touch_api(sid, actor, now) end
prepare_render(sid)
if id then return {outcome, id} end
return {outcome}
