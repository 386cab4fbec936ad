-- The script's last step (see _changes.lua). The event stream of an account: each entry is what SessionInfo is made of right
-- after the change: the session hash's own fields, its members' versions (_members:
-- their JSON is in memberversions) and how many log entries it had (the log only
-- grows), which the web process renders as GET would (orchestrator/events.py). So an
-- entry's size does not grow with the session's members. Entries are kept at least
-- EVENTS_KEEP_SECONDS (an hour unless EVENT_RETENTION_SECONDS says otherwise; XADD trims
-- older ones as it goes); a stream idle that long goes by itself.
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
