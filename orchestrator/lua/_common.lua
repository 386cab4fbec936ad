-- Shared by every script (prepended by orchestrator/scripts.py).
-- Key layout: see orchestrator/store.py. ARGV[1] is always the key prefix.
local P = ARGV[1]

local function skey(sid) return P .. 'session:' .. sid end
local function mkey(sid, mid) return P .. 'session:' .. sid .. ':member:' .. mid end
local function lkey(sid) return P .. 'session:' .. sid .. ':log' end
local function idskey(sid) return P .. 'session:' .. sid .. ':members' end
local function activekey(sid) return P .. 'session:' .. sid .. ':active' end
local function mjkey(sid) return P .. 'session:' .. sid .. ':membersjson' end
local function mvkey(sid) return P .. 'session:' .. sid .. ':memberversions' end
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

-- Live events (SPEC 8): every change a client can see marks its session with
-- touched(), and the script's last step (flush_events, run after the script's own
-- body by orchestrator/scripts.py) writes one entry per changed session to its
-- account's event stream. So an event exists exactly when its change does, in the
-- order Redis applied them. `name` adds one of the seed's more specific
-- notifications (SessionAnswered, ...) to the SessionInfoChanged every change has.
local CHANGED, CHANGED_ORDER, CHANGED_MEMBERS = {}, {}, {}
local function touched(sid, name)
  local names = CHANGED[sid]
  if not names then
    names = {}
    CHANGED[sid] = names
    CHANGED_ORDER[#CHANGED_ORDER + 1] = sid
  end
  if name and not names[name] then
    names[name] = true
    names[#names + 1] = name
  end
end

-- Every change to a member a client can see goes through here: it also drops the
-- session's cached members JSON (see prepare_render), which is rebuilt on the next
-- read, and marks the member for a new version of its JSON (see sync_members).
local function set_member(sid, m, ...)
  redis.call('HSET', m, ...)
  redis.call('DEL', mjkey(sid))
  touched(sid)
  local changed = CHANGED_MEMBERS[sid]
  if not changed then
    changed = {}
    CHANGED_MEMBERS[sid] = changed
  end
  changed[m] = true
end

local function append_log(sid, now, message)
  redis.call('RPUSH', lkey(sid), '{"date":' .. jstr(now) .. ',"message":' .. jstr(message) .. '}')
  redis.call('HSET', skey(sid), 'dateLastModified', now)
  touched(sid)
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

-- Twilio work that a change calls for (end a leg, hold, mute, end the conference)
-- goes to the control queue as an RQ job written by the same script as the change:
-- no change without its job. The job is a copy of a template RQ built
-- (orchestrator/jobs.py; every web and worker process installs it); its id names
-- the session, and the job does whatever the session's state then asks of Twilio.
-- A script asks for one with want_control() and writes it last, with flush_control().
local CONTROL_TEMPLATE = P .. 'jobtemplate:control'
local CONTROL_WANTED = false
local function control_ready()
  return redis.call('EXISTS', CONTROL_TEMPLATE) == 1
end
local function want_control() CONTROL_WANTED = true end
local function flush_control(sid, now)
  if not CONTROL_WANTED then return end
  CONTROL_WANTED = false
  local keys = redis.call('HMGET', CONTROL_TEMPLATE .. ':keys', 'queue', 'queues', 'job')
  local id = 'ctl-' .. sid .. '-' .. redis.call('HINCRBY', skey(sid), '_ctlseq', 1)
  local jk = keys[3] .. id
  redis.call('HSET', jk, unpack(redis.call('HGETALL', CONTROL_TEMPLATE)))
  redis.call('HSET', jk, 'created_at', now, 'enqueued_at', now, 'description', 'settle ' .. sid)
  redis.call('RPUSH', keys[1], id)
  redis.call('SADD', keys[2], keys[1])
end
-- Every script that may ask for Twilio work calls this before it changes anything.
local function require_control()
  if not control_ready() then
    return redis.error_reply('NOTEMPLATE the control job template is not installed')
  end
  return nil
end

local function caller_of(sid)
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
  local caller = caller_of(sid)
  if caller then redis.call('HSET', mkey(sid, caller), '_wanthold', '0') end
  append_log(sid, now, message)
  want_control()
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
  end_redirect(sid, now, mid, member_name(m) .. ' did not connect; the caller stays in the session')
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

-- Twilio's retry of a callback carries the first attempt's I-Twilio-Idempotency-Token:
-- the first delivery of a token wins, later ones change nothing. Twilio retries within
-- seconds; a token is remembered as long as the events its callback wrote.
local IDEMPOTENCY_SECONDS = EVENTS_KEEP_SECONDS
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

-- Each member's JSON is kept as it was after each change that touched it, in the
-- session's memberversions hash ("<position>:<version>" -> JSON; positions follow the
-- members list, which only grows), and the session hash's _members field holds the
-- current version of each, VERSION_WIDTH hex digits apiece ("000003000001" for two).
-- A live event then records the session's members in a few bytes, the versions it
-- had (see flush_events), and a change writes the JSON of the members it changed, not
-- of all of them. The fixed width lets a change replace its member's digits in place:
-- splitting the field into numbers would cost Lua ~2 µs per member on every change.
local VERSION_WIDTH = 6
local function version_at(members, at)
  local from = (at - 1) * VERSION_WIDTH + 1
  return tonumber(string.sub(members, from, from + VERSION_WIDTH - 1), 16) or 0
end
local function version_field(at, members)
  local from = (at - 1) * VERSION_WIDTH + 1
  return at .. ':' .. string.sub(members, from, from + VERSION_WIDTH - 1)
end

-- Returns _members once every member changed so far in this script (and every member
-- added) has its new version; `current` is its value before, if the caller read it.
local function sync_members(sid, current)
  local sk = skey(sid)
  if current == nil then current = redis.call('HGET', sk, '_members') or '' end
  local changed = CHANGED_MEMBERS[sid]
  CHANGED_MEMBERS[sid] = nil
  local known = #current / VERSION_WIDTH
  local count = redis.call('LLEN', idskey(sid))
  if not changed and count == known then return current end
  local written = {}
  if changed then
    local prefix = #mkey(sid, '')
    for m in pairs(changed) do
      local at = redis.call('LPOS', idskey(sid), string.sub(m, prefix + 1))
      if at and at < known then  -- else added in this script: its first version is below
        at = at + 1
        local digits = string.format('%0' .. VERSION_WIDTH .. 'x', version_at(current, at) + 1)
        local from = (at - 1) * VERSION_WIDTH
        current = string.sub(current, 1, from) .. digits
          .. string.sub(current, from + VERSION_WIDTH + 1)
        written[#written + 1] = version_field(at, current)
        written[#written + 1] = member_json(m)
      end
    end
  end
  -- Members added since the last version (an invite, the caller) get their first one.
  if count > known then
    local first = string.format('%0' .. VERSION_WIDTH .. 'x', 1)
    for i, mid in ipairs(redis.call('LRANGE', idskey(sid), known, -1)) do
      current = current .. first
      written[#written + 1] = version_field(known + i, current)
      written[#written + 1] = member_json(mkey(sid, mid))
    end
  end
  if #written > 0 then redis.call('HSET', mvkey(sid), unpack(written)) end
  redis.call('HSET', sk, '_members', current)
  return current
end

-- The fields of the memberversions hash that a _members value names, in order.
local function version_fields(members)
  local fields = {}
  for at = 1, #members / VERSION_WIDTH do fields[at] = version_field(at, members) end
  return fields
end

-- The session's members' JSON, joined, is cached (membersjson) while none of
-- them changes; an invite appends to it. So answering with a session of a
-- hundred members is a few commands, not a hundred; after a member changes, the
-- next read joins the members' current versions again (one HMGET). A script that
-- answers with a session makes sure the cache is there; the web process reads it,
-- the session hash and the log with plain commands right after the script (see
-- AsyncScripts). The cache lapses by itself as the events do, so an ended session
-- leaves nothing behind that retain() has not set to expire.
local MEMBERS_JSON_SECONDS = EVENTS_KEEP_SECONDS
local function prepare_render(sid)
  local members = sync_members(sid)
  local k = mjkey(sid)
  if redis.call('EXISTS', k) == 1 then return end
  local fields = version_fields(members)
  local parts = {}
  if #fields > 0 then parts = redis.call('HMGET', mvkey(sid), unpack(fields)) end
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

-- The account's sessions, for listing: all it keeps (by creation time), the
-- live ones, and the ended ones by end time (to forget them after a week).
local function sessionsidx(account) return P .. 'account:' .. account .. ':sessions' end
local function activeidx(account) return P .. 'account:' .. account .. ':active' end
local function endedidx(account) return P .. 'account:' .. account .. ':ended' end

local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
  retain(sid)
  want_control()  -- the conference ended at Twilio, every leg still up hung up
  return true
end

-- A member's leg is in the call: who answered, whether the session was missed,
-- and whatever Twilio work waited for the leg to connect.
local function on_connected(sid, mid, m, now)
  local f = redis.call('HMGET', m, 'role', 'identity', 'displayName', '_removed', '_wanthold',
    '_wantmute')
  if f[1] == 'Caller' then return end
  local sk = skey(sid)
  touched(sid, 'SessionAnswered')
  redis.call('HSET', sk, '_anyconnected', '1')
  if f[1] == 'Agent' and not redis.call('HGET', sk, 'answeredById') then
    redis.call('HSET', sk, 'answeredById', f[2], 'answeredByName', f[3] or f[2])
  end
  if f[4] == '1' or f[5] == '1' or f[6] == 'true'
    or redis.call('HGET', sk, 'ended') == 'true' then
    want_control()
  end
  end_redirect(sid, now, mid, 'Transferred to ' .. (f[3] or f[2] or '?'))
end

-- job = {queue key, queues set key, job key, job id, field, value, ...}.
local function enqueue_dial(job)
  local hash = {}
  for i = 5, #job do hash[#hash + 1] = job[i] end
  redis.call('HSET', job[3], unpack(hash))
  redis.call('RPUSH', job[1], job[4])
  redis.call('SADD', job[2], job[1])
end

-- Adds a member and enqueues its dial job (shared by InviteChatMember and
-- RedirectSession): returns 'created'|'exists', the member id, or an error word.
-- With `defer` the caller enqueues the job itself (enqueue_dial), after its control
-- job: an idle worker takes the job whose queue was pushed first in a script.
local function add_member(sid, account, kind, ref, mid, now, caller, actor_name, job, defer)
  local to, fields
  if kind == 'user' then
    local uid = redis.call('GET', P .. 'account:' .. account .. ':user:' .. ref)
    if not uid then return 'nouser' end
    local u = redis.call('HMGET', P .. 'user:' .. uid, 'name', 'email', 'avatarUrl')
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
  append_log(sid, now, said(actor_name, 'invited ' .. member_name(m), 'Invited ' .. member_name(m)))
  if not defer then enqueue_dial(job) end
  return 'created', mid
end

-- The session a change through the API is for: its hash fields, or an error word.
local function live_session(sid, account)
  local s = redis.call('HMGET', skey(sid), 'accountId', 'ended')
  if not s[1] or s[1] ~= account then return 'notfound' end
  if s[2] == 'true' then return 'ended' end
  return nil
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
  local uid = redis.call('GET', P .. 'account:' .. account .. ':user:' .. string.lower(ref))
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
  want_control()
end

-- The event stream of an account: each entry is what SessionInfo is made of right
-- after the change: the session hash's own fields, its members' versions (_members:
-- their JSON is in memberversions) and how many log entries it had (the log only
-- grows), which the web process renders as GET would (orchestrator/events.py). So an
-- entry's size does not grow with the session's members. Entries are kept at least
-- EVENTS_KEEP_SECONDS (an hour unless EVENT_RETENTION_SECONDS says otherwise; XADD trims
-- older ones as it goes); a stream idle that long goes by itself.
local function eventskey(account) return P .. 'account:' .. account .. ':events' end
local function flush_events()
  for _, sid in ipairs(CHANGED_ORDER) do
    local h = redis.call('HGETALL', skey(sid))
    local entry = {}
    local account, members = nil, ''
    for i = 1, #h, 2 do
      if string.byte(h[i], 1) ~= 95 then  -- '_': internals stay out
        entry[#entry + 1] = h[i]
        entry[#entry + 1] = h[i + 1]
        if h[i] == 'accountId' then account = h[i + 1] end
      elseif h[i] == '_members' then
        members = h[i + 1]
      end
    end
    if account then
      local names = CHANGED[sid]
      names[#names + 1] = 'SessionInfoChanged'
      entry[#entry + 1] = '@sid'
      entry[#entry + 1] = sid
      entry[#entry + 1] = '@events'
      entry[#entry + 1] = table.concat(names, ',')
      entry[#entry + 1] = '@log'
      entry[#entry + 1] = redis.call('LLEN', lkey(sid))
      entry[#entry + 1] = '@members'
      entry[#entry + 1] = sync_members(sid, members)
      local key = eventskey(account)
      redis.call('XADD', key, 'MINID', '~', clock_ms() - EVENTS_KEEP_SECONDS * 1000, '*',
        unpack(entry))
      redis.call('EXPIRE', key, EVENTS_KEEP_SECONDS + 60)
    end
  end
  CHANGED, CHANGED_ORDER = {}, {}
end
