-- Shared by every script (prepended by orchestrator/scripts.py).
-- Key layout: see orchestrator/store.py. ARGV[1] is always the key prefix.
local P = ARGV[1]

local function skey(sid) return P .. 'session:' .. sid end
local function mkey(sid, mid) return P .. 'session:' .. sid .. ':member:' .. mid end
local function lkey(sid) return P .. 'session:' .. sid .. ':log' end
local function idskey(sid) return P .. 'session:' .. sid .. ':members' end
local function activekey(sid) return P .. 'session:' .. sid .. ':active' end
local function mjkey(sid) return P .. 'session:' .. sid .. ':membersjson' end
local function callkey(callsid) return P .. 'call:' .. callsid end

-- Log entries and members leave Redis as JSON in SessionInfo's field order,
-- so the web process can answer without re-encoding them.
local function jstr(v)
  if v then return cjson.encode(v) end
  return 'null'
end
local function jbool(v)
  if v == 'true' then return 'true' end
  return 'false'
end

-- Every change a client can see goes through here: it also drops the session's
-- cached members JSON (see prepare_render), which is rebuilt on the next read.
local function set_member(sid, m, ...)
  redis.call('HSET', m, ...)
  redis.call('DEL', mjkey(sid))
end

local function append_log(sid, now, message)
  redis.call('RPUSH', lkey(sid), '{"date":' .. jstr(now) .. ',"message":' .. jstr(message) .. '}')
  redis.call('HSET', skey(sid), 'dateLastModified', now)
end

-- Member call state is derived, never stored independently of its inputs:
-- _rank 0 invited, 1 ringing, 2 in the call, 3 final; _hold is the latest hold flag.
local function derive(rank, hold)
  if rank == 1 then return 'Ringing' end
  if rank == 2 then
    if hold == '1' then return 'Hold' end
    return 'Connected'
  end
  return 'None'
end

local function member_name(m)
  local f = redis.call('HMGET', m, 'displayName', 'identity')
  return f[1] or f[2] or '?'
end

-- Ends a member for good: callState None, no longer counted as in the session.
local function finalize(sid, mid, now, message)
  local m = mkey(sid, mid)
  local f = redis.call('HMGET', m, '_rank', '_to')
  if tonumber(f[1] or '0') >= 3 then return false end
  -- Hold and mute describe a member in the call; one who has left is neither.
  set_member(sid, m, '_rank', '3', 'callState', 'None', '_hold', '0', 'muted', 'false')
  if f[2] then
    local holder = redis.call('HGET', activekey(sid), f[2])
    if holder == mid then redis.call('HDEL', activekey(sid), f[2]) end
  end
  append_log(sid, now, message)
  return true
end

local function record_call_sid(sid, mid, callsid)
  if not callsid or callsid == '' then return false end
  local m = mkey(sid, mid)
  if redis.call('HGET', m, 'callSid') then return false end
  set_member(sid, m, 'callSid', callsid)
  redis.call('SET', callkey(callsid), sid .. ' ' .. mid)
  return true
end

-- The dial of a member is logged once, whoever learns its CallSid first.
local function mark_dialled(sid, mid, callsid, now, conf)
  local m = mkey(sid, mid)
  if redis.call('HSETNX', m, '_dialled', '1') == 0 then return false end
  redis.call('HSET', skey(sid), 'mostRecentParticipantCallSid', callsid)
  if conf ~= '' and not redis.call('HGET', skey(sid), 'conferenceSid') then
    redis.call('HSET', skey(sid), 'conferenceSid', conf)
  end
  append_log(sid, now, 'Dialled ' .. member_name(m) .. ' (' .. callsid .. ')')
  return true
end

-- An ended session is kept for a week, then Redis forgets it by itself.
local RETAIN_SECONDS = 7 * 24 * 3600
local function retain(sid)
  local ids = redis.call('LRANGE', idskey(sid), 0, -1)
  for _, mid in ipairs(ids) do
    local m = mkey(sid, mid)
    local callsid = redis.call('HGET', m, 'callSid')
    if callsid then redis.call('EXPIRE', callkey(callsid), RETAIN_SECONDS) end
    redis.call('EXPIRE', m, RETAIN_SECONDS)
  end
  for _, k in ipairs({skey(sid), lkey(sid), idskey(sid), activekey(sid)}) do
    redis.call('EXPIRE', k, RETAIN_SECONDS)
  end
end

-- Twilio's retry of a callback carries the first attempt's I-Twilio-Idempotency-Token:
-- the first delivery of a token wins, later ones change nothing.
local IDEMPOTENCY_SECONDS = 3600
local function replayed(token)
  if token == nil or token == '' then return false end
  return not redis.call('SET', P .. 'idem:' .. token, '1', 'NX', 'EX', IDEMPOTENCY_SECONDS)
end

local function member_json(m)
  local f = redis.call('HMGET', m, 'identity', 'endpointId', 'displayName', 'isOriginalMember',
    'avatarUrl', 'applicationData', 'callState', 'role', 'callSid', 'muted')
  return '{"identity":' .. jstr(f[1]) .. ',"endpointId":' .. jstr(f[2])
    .. ',"displayName":' .. jstr(f[3]) .. ',"isOriginalMember":' .. jbool(f[4])
    .. ',"avatarUrl":' .. jstr(f[5]) .. ',"applicationData":' .. (f[6] or 'null')
    .. ',"callState":' .. jstr(f[7] or 'None') .. ',"role":' .. jstr(f[8] or 'None')
    .. ',"callSid":' .. jstr(f[9]) .. ',"muted":' .. jbool(f[10]) .. '}'
end

-- The session's members' JSON, joined, is cached (membersjson) while none of
-- them changes; an invite appends to it. So answering with a session of a
-- hundred members is a few commands, not a hundred; after a member changes, the
-- next read renders every member again (about 4 µs each). A script that answers
-- with a session makes sure the cache is there; the web process reads it, the
-- session hash and the log with plain commands right after the script (see
-- AsyncScripts). The cache lapses by itself after an hour, so an ended session
-- leaves nothing behind that retain() has not set to expire.
local MEMBERS_JSON_SECONDS = 3600
local function prepare_render(sid)
  local k = mjkey(sid)
  if redis.call('EXISTS', k) == 1 then return end
  local parts = {}
  for i, mid in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
    parts[i] = member_json(mkey(sid, mid))
  end
  redis.call('SET', k, table.concat(parts, ','), 'EX', MEMBERS_JSON_SECONDS)
end

-- A new member joins the session's cached JSON, if there is one to join.
local function cache_new_member(sid, m)
  if redis.call('STRLEN', mjkey(sid)) > 0 then
    redis.call('APPEND', mjkey(sid), ',' .. member_json(m))
  else
    redis.call('DEL', mjkey(sid))  -- none, or an empty one: rebuilt on the next read
  end
end
