-- How values leave Redis as JSON: log entries and members, in SessionInfo's field
-- order, so the web process can answer without re-encoding them.
local function jstr(v)
  if v then return cjson.encode(v) end
  return 'null'
end
local function jbool(v)
  if v == 'true' then return 'true' end
  return 'false'
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
