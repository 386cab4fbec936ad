-- Adds a member and enqueues its dial job in one step: an invite answered 200
-- always has its job, and a member already in the session is not added twice.
-- ARGV: prefix, session id, account id, kind ('phone'|'user'), address or user ref,
--       new member id, now, caller id ('' for the session's own), queue key,
--       queues set key, job key, job id, then the job hash as field/value pairs.
local sid, account, kind, ref, mid, now, caller = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local qkey, queues, jobkey, jobid = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local s = redis.call('HMGET', skey(sid), 'accountId', 'ended')
if not s[1] or s[1] ~= account then return {'notfound'} end
if s[2] == 'true' then return {'ended'} end

local to, fields
if kind == 'user' then
  local uid = redis.call('GET', P .. 'account:' .. account .. ':user:' .. ref)
  if not uid then return {'nouser'} end
  local u = redis.call('HMGET', P .. 'user:' .. uid, 'name', 'email', 'avatarUrl')
  to = 'client:' .. uid
  fields = {'identity', uid, 'endpointId', uid, 'displayName', u[1] or u[2] or uid, 'role', 'Agent'}
  if u[3] then table.insert(fields, 'avatarUrl'); table.insert(fields, u[3]) end
else
  to = ref
  fields = {'identity', ref, 'displayName', ref, 'role', 'Transfer'}
end

local existing = redis.call('HGET', activekey(sid), to)
if existing then
  prepare_render(sid)
  return {'exists', existing}
end

local m = mkey(sid, mid)
redis.call('HSET', m, 'id', mid, 'isOriginalMember', 'false', 'callState', 'None',
  'muted', 'false', '_rank', '0', '_hold', '0', '_to', to, '_job', jobid, unpack(fields))
if caller ~= '' then redis.call('HSET', m, '_from', caller) end
redis.call('RPUSH', idskey(sid), mid)
cache_new_member(sid, m)
redis.call('HSET', activekey(sid), to, mid)
append_log(sid, now, 'Invited ' .. member_name(m))

local job = {}
for i = 13, #ARGV do job[#job + 1] = ARGV[i] end
redis.call('HSET', jobkey, unpack(job))
redis.call('RPUSH', qkey, jobid)
redis.call('SADD', queues, qkey)
prepare_render(sid)
return {'created', mid}
