-- A session's members: their call state, finding them, adding and removing them.

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

-- The customer: the caller of an incoming call, the destination of an outgoing one. A
-- blind transfer keeps them; their leg ending ends the session.
local function customer_of(sid)
  local dest = redis.call('HGET', skey(sid), '_destmember')
  if dest then return dest end
  for _, mid in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
    if redis.call('HGET', mkey(sid, mid), 'role') == 'Caller' then return mid end
  end
  return nil
end

-- A blind transfer (RedirectSession) is over once its destination connects or
-- cannot: the caller comes off the hold music either way.
local function end_redirect(sid, now, mid, message)
  local sk = skey(sid)
  if redis.call('HGET', sk, '_redirect') ~= mid then return end
  redis.call('HDEL', sk, '_redirect')
  local caller = customer_of(sid)
  if caller then redis.call('HSET', mkey(sid, caller), '_wanthold', '0') end
  append_log(sid, now, message)
  want_control(sid)
end

-- A session ends with its customer's leg: the caller of an incoming call, the
-- destination of an outgoing one (customer_of). An outgoing session ends with its agent's
-- leg too, unless the agent was taken off the call (a transfer, a removal): the customer
-- then stays with whoever the agent brought in.
local function end_with_member(sid, mid, m, now)
  local sk = skey(sid)
  local s = redis.call('HMGET', sk, 'ended', 'direction', '_destmember')
  if s[1] == 'true' then return end
  local f = redis.call('HMGET', m, 'isOriginalMember', '_removed')
  if s[2] ~= 'Outgoing' then
    if f[1] ~= 'true' then return end
    local queued = redis.call('HGET', sk, 'queueState')
    if queued == 'Queued' or queued == 'Ringing' then
      end_session(sid, now, 'Abandoned', 'The caller hung up while waiting in the queue')
    else
      end_session(sid, now, '', 'The caller hung up')
    end
    return
  end
  if s[3] == mid then
    local queued = redis.call('HGET', sk, 'queueState')
    if queued == 'Queued' or queued == 'Ringing' then
      end_session(sid, now, 'Abandoned', member_name(m) .. ' hung up while waiting in the queue')
    else
      end_session(sid, now, '', 'The call ended: ' .. member_name(m) .. ' is no longer on it')
    end
  elseif f[1] == 'true' and f[2] ~= '1' then
    end_session(sid, now, '', 'The call ended: ' .. member_name(m) .. ' hung up')
  end
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
    -- A user has one live leg per session at most (add_member): this was it.
    if not holder or holder == mid then forget_user_session(sid, m) end
  end
  append_log(sid, now, message)
  end_redirect(sid, now, mid, member_name(m) .. ' did not connect; the caller stays in the session')
  end_with_member(sid, mid, m, now)
  queue_member_over(sid, mid, m, now)
  return true
end

-- Adds a member and enqueues its dial job (shared by InviteChatMember and
-- RedirectSession): returns 'created'|'exists', the member id, or an error word.
-- With `defer` the caller enqueues the job itself (enqueue_dial), after its control
-- job: an idle worker takes the job whose queue was pushed first in a script.
local function add_member(sid, account, kind, ref, mid, now, caller, actor_name, job, defer, quiet)
  local to, fields
  if kind == 'user' then
    local uid = redis.call('GET', userrefkey(account, ref))
    if not uid then return 'nouser' end
    local u = redis.call('HMGET', userkey(uid), 'name', 'email', 'avatarUrl')
    -- A user's Client identity is its id (tokens.client_identity), the identity of
    -- the access token its softphone registers with (docs/api.md, GetAppConfig).
    to = 'client:' .. uid
    fields = {'identity', uid, 'endpointId', uid, 'displayName', u[1] or u[2] or uid, 'role', 'Agent'}
    if u[3] then table.insert(fields, 'avatarUrl'); table.insert(fields, u[3]) end
  else
    to = ref
    fields = {'identity', ref, 'displayName', ref, 'role', 'Transfer'}
  end

  local existing = redis.call('HGET', activekey(sid), to)
  if existing then return 'exists', existing end

  local m = mkey(sid, mid)
  redis.call('HSET', m, 'id', mid, 'isOriginalMember', 'false', 'callState', 'None',
    'muted', 'false', '_rank', '0', '_hold', '0', '_to', to, '_job', job[4], unpack(fields))
  if caller ~= '' then redis.call('HSET', m, '_from', caller) end
  redis.call('RPUSH', idskey(sid), mid)
  cache_new_member(sid, m)
  redis.call('HSET', activekey(sid), to, mid)
  if kind == 'user' then
    redis.call('SADD', usersessionskey(fields[2]), sid)
    agent_changed(fields[2])
  end
  if not quiet then
    append_log(sid, now, said(actor_name, 'invited ' .. member_name(m), 'Invited ' .. member_name(m)))
  end
  if not defer then enqueue_dial(job) end
  return 'created', mid
end

-- A member of the session by its id, its CallSid, its identity (E.164 or user id)
-- or a user's email; the live one first when several share an identity.
local function find_member(sid, account, ref)
  if ref == '' then return nil end
  if redis.call('EXISTS', mkey(sid, ref)) == 1 then return ref end
  local known = redis.call('GET', callkey(ref))
  if known then
    local ksid, kmid = string.match(known, '^(%S+) (%S+)$')
    if ksid == sid then return kmid end
    return nil
  end
  local ident = ref
  local uid = redis.call('GET', userrefkey(account, string.lower(ref)))
  if uid then ident = uid end
  local found = nil
  for _, mid in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
    local f = redis.call('HMGET', mkey(sid, mid), 'identity', '_rank')
    if f[1] == ident then
      if tonumber(f[2] or '0') < 3 then return mid end
      found = mid
    end
  end
  return found
end

-- Removes a member still in the session (DeleteChatMember, a blind transfer). One never
-- dialled ends here, with `ended`; any other is marked removed, logged with `marked` (if
-- given), and the control job ends its leg, now or once Twilio has placed it.
local function remove(sid, mid, now, ended, marked)
  local m = mkey(sid, mid)
  local f = redis.call('HMGET', m, '_rank', '_lease', '_attempts', 'callSid')
  local clock = tonumber(redis.call('TIME')[1])
  local dialling = tonumber(f[2] or '0') > clock or tonumber(f[3] or '0') > 0
  if f[1] == '0' and not dialling and not f[4] then
    finalize(sid, mid, now, ended)
    return
  end
  redis.call('HSET', m, '_removed', '1')
  if marked then append_log(sid, now, marked) end
  want_control(sid)
end
