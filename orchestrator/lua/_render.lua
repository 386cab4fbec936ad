-- The members' JSON as clients read it, in live events and in answers.
--
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
