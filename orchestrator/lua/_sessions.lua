-- The session itself: its log, who changed it through the API, its listing indexes,
-- how it ends and how long it is kept then.

-- Ring queues' part in a session's life, defined in _queues.lua, which needs members
-- and callbacks first: when an offered agent connects, when a member's leg is over,
-- when the session ends.
local queue_connected, queue_member_over, queue_session_ended = nil, nil, nil

local function append_log(sid, now, message)
  redis.call('RPUSH', lkey(sid), '{"date":' .. jstr(now) .. ',"message":' .. jstr(message) .. '}')
  redis.call('HSET', skey(sid), 'dateLastModified', now)
  touched(sid)
end

-- Changes made through the API name who made them.
local function touch_api(sid, actor, now)
  if actor == '' then return end
  touched(sid)
  local sk = skey(sid)
  redis.call('HSETNX', sk, 'createdBy', actor)
  redis.call('HSET', sk, 'lastModifiedBy', actor, 'dateLastModified', now)
end

-- "Ada Agent put the call on hold", or "The call was put on hold" for a key with no user.
local function said(name, active, passive)
  if name ~= '' then return name .. ' ' .. active end
  return passive
end

-- The session a change through the API is for: its hash fields, or an error word.
local function live_session(sid, account)
  local s = redis.call('HMGET', skey(sid), 'accountId', 'ended')
  if not s[1] or s[1] ~= account then return 'notfound' end
  if s[2] == 'true' then return 'ended' end
  return nil
end

-- Redis' clock in ms: the listing indexes' and the event stream's time.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An ended session is kept RETAIN_SECONDS (a week unless SESSION_RETENTION_SECONDS says
-- otherwise), then Redis forgets it by itself.
local function retain(sid)
  local ids = redis.call('LRANGE', idskey(sid), 0, -1)
  for _, mid in ipairs(ids) do
    local m = mkey(sid, mid)
    local callsid = redis.call('HGET', m, 'callSid')
    if callsid then redis.call('EXPIRE', callkey(callsid), RETAIN_SECONDS) end
    redis.call('EXPIRE', m, RETAIN_SECONDS)
  end
  for _, k in ipairs({skey(sid), lkey(sid), idskey(sid), activekey(sid), mvkey(sid)}) do
    redis.call('EXPIRE', k, RETAIN_SECONDS)
  end
end

-- Drops, a bounded batch at a time, the index entries of sessions that ended more
-- than RETAIN_SECONDS ago (their keys have expired by themselves).
local function purge_ended(account, ms)
  local old = redis.call('ZRANGEBYSCORE', endedidx(account), '-inf', '(' .. (ms - RETAIN_SECONDS * 1000),
    'LIMIT', 0, 100)
  if #old > 0 then
    redis.call('ZREM', endedidx(account), unpack(old))
    redis.call('ZREM', sessionsidx(account), unpack(old))
  end
end

-- A user's leg in the session is over: the session leaves the user's own list
-- (GetMySessions).
local function forget_user_session(sid, m)
  local uid = redis.call('HGET', m, 'endpointId')
  if uid then
    redis.call('SREM', usersessionskey(uid), sid)
    agent_changed(uid)
  end
end

-- An outgoing session's destination is dialled once the agent's leg is in the
-- conference (docs/api.md#calls-agents-place): its dial job waits in pendingdial until
-- then, and goes to the dial queue exactly once, here. Released when the session ends
-- first, it finds the session ended and logs that the member was not dialled.
local function release_pending_dial(sid)
  local sk = skey(sid)
  if not redis.call('HGET', sk, '_dialafter') then return false end
  redis.call('HDEL', sk, '_dialafter')
  local job = redis.call('LRANGE', pendingdialkey(sid), 0, -1)
  redis.call('DEL', pendingdialkey(sid))
  if #job > 0 then enqueue_dial(job) end
  return true
end

-- How long after its session ended a leg Twilio never said ended stops holding its user.
local RELEASE_SECONDS = 60

-- The session ends once: Disconnected, its outcome set, off the active list; its
-- keys expire a week later (retain). '' lets the outcome follow from what happened.
local function end_session(sid, now, outcome, message)
  local sk = skey(sid)
  local f = redis.call('HMGET', sk, 'ended', 'accountId', '_anyconnected', 'direction')
  if f[1] == 'true' then return false end
  local missed = f[4] == 'Incoming' and f[3] ~= '1'
  if outcome == '' then
    if missed then outcome = 'Missed' else outcome = 'Completed' end
  end
  redis.call('HSET', sk, 'ended', 'true', 'callState', 'Disconnected', 'dialState', 'None',
    'dateCompleted', now, 'outcome', outcome, 'wasMissed', tostring(missed))
  redis.call('HDEL', sk, '_redirect')
  append_log(sid, now, message)
  touched(sid, 'SessionDisconnected')
  touched(sid, 'ActiveSessionsChanged')
  if f[2] then
    local ms = clock_ms()
    redis.call('ZREM', activeidx(f[2]), sid)
    redis.call('ZADD', endedidx(f[2]), ms, sid)
    purge_ended(f[2], ms)
  end
  -- A user whose leg is still up stays busy (not offered a queue's call) until Twilio
  -- says it ended; if it never does, a timer releases them (release: in _queues.lua).
  for _, mid in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
    local m = redis.call('HMGET', mkey(sid, mid), 'endpointId', '_rank')
    if m[1] and tonumber(m[2] or '0') < 3 then
      redis.call('ZADD', timerskey(), 'NX', clock_ms() + RELEASE_SECONDS * 1000, 'release:' .. sid)
      break
    end
  end
  release_pending_dial(sid)
  queue_session_ended(sid, now, outcome)
  retain(sid)
  want_control(sid)  -- the conference ended at Twilio, every leg still up hung up
  return true
end
