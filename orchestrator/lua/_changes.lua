-- What a script changed, for the live events (docs/events.md): every change a client can see marks its session with
-- touched(), and the script's last step (flush_events, run after the script's own
-- body by orchestrator/scripts.py, see _events.lua) writes one entry per changed session to its
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
