-- The worker's claim before it calls Twilio. Counting attempts lets a retried
-- or restarted job know it must look for an earlier dial before dialling again.
-- The lease keeps two runs of the job (which RQ should never allow) from dialling
-- the same member at once; it outlives the job's own timeout.
-- ARGV: prefix, session id, member id, now, default caller id ('' if none), lease seconds
-- A member removed while an earlier attempt was under way is not dialled again;
-- that attempt's leg, if Twilio placed it, must still be found and ended
-- ('removed-lookup').
local sid, mid, now, default, lease = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local err = require_control()
if err then return err end
local m = mkey(sid, mid)
if redis.call('EXISTS', m) == 0 then return {'skip', 'missing'} end
local f = redis.call('HMGET', m, '_rank', 'callSid', '_to', '_from', '_removed', '_attempts',
  '_waitmusic', '_offer')
if tonumber(f[1] or '0') >= 3 then return {'skip', 'final'} end
if f[2] then
  -- A worker died after Twilio took the dial; its callbacks told us the CallSid.
  mark_dialled(sid, mid, f[2], now, '')
  if f[5] == '1' then want_control(sid) end
  flush_control(sid, now)
  return {'skip', 'dialled'}
end
if f[5] == '1' then
  if tonumber(f[6] or '0') == 0 then
    finalize(sid, mid, now, 'Not dialled ' .. member_name(m) .. ': removed')
    flush_control(sid, now)
    return {'skip', 'removed'}
  end
  return {'removed-lookup', f[3], tostring(f[6])}
end
local s = redis.call('HMGET', skey(sid), 'ended', '_number')
if s[1] == 'true' then
  finalize(sid, mid, now, 'Not dialled ' .. member_name(m) .. ': the session has ended')
  flush_control(sid, now)
  return {'skip', 'ended'}
end
local from = f[4] or s[2] or default
if not from or from == '' then
  finalize(sid, mid, now, 'Not dialled ' .. member_name(m) .. ': no caller ID')
  flush_control(sid, now)
  return {'skip', 'nocaller'}
end
local t = redis.call('TIME')
local clock = tonumber(t[1])
local held = tonumber(redis.call('HGET', m, '_lease') or '0')
if held > clock then return {'skip', 'busy'} end
redis.call('HSET', m, '_lease', tostring(clock + lease))
local attempt = redis.call('HINCRBY', m, '_attempts', 1)
-- When the first attempt went to Twilio (Redis's clock, seconds): a retry looks for the
-- call it may have placed among the calls started since (workers/dial.py).
if attempt == 1 then redis.call('HSET', m, '_dialAt', tostring(clock)) end
-- A progressive dial's customer waits for an agent with hold music (worker: WaitUrl);
-- a queue's offer rings for the queue's ring timeout (Twilio's Timeout), so a phone
-- stops by itself when its round ends even if the withdrawal's cancel never comes.
local ring = ''
if f[8] then ring = redis.call('HGET', queuekey(f[8]), 'ringTimeout') or '' end
return {'dial', f[3], from, tostring(attempt), f[7] or '', ring}
