-- The worker's claim before it calls Twilio. Counting attempts lets a retried
-- or restarted job know it must look for an earlier dial before dialling again.
-- ARGV: prefix, session id, member id, now, default caller id ('' if none)
local sid, mid, now, default = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local m = mkey(sid, mid)
if redis.call('EXISTS', m) == 0 then return {'skip', 'missing'} end
local f = redis.call('HMGET', m, '_rank', 'callSid', '_to', '_from')
if tonumber(f[1] or '0') >= 3 then return {'skip', 'final'} end
if f[2] then return {'skip', 'dialled'} end
local s = redis.call('HMGET', skey(sid), 'ended', '_number')
if s[1] == 'true' then
  finalize(sid, mid, now, 'Not dialled ' .. member_name(m) .. ': the session has ended')
  return {'skip', 'ended'}
end
local from = f[4] or s[2] or default
if not from or from == '' then
  finalize(sid, mid, now, 'Not dialled ' .. member_name(m) .. ': no caller ID')
  return {'skip', 'nocaller'}
end
local attempt = redis.call('HINCRBY', m, '_attempts', 1)
return {'dial', f[3], from, tostring(attempt)}
