-- GetMySessions: the sessions not ended in which the user has a leg not yet over, each
-- made ready to render (see prepare_render). The user's set holds only those, but a
-- session that ended while it was being read, or before a restart, may linger: such an
-- entry is dropped here.
-- ARGV: prefix, user id, account id. Returns {sid, sid, ...}.
local uid, account = ARGV[2], ARGV[3]
local out = {}
for _, sid in ipairs(redis.call('SMEMBERS', usersessionskey(uid))) do
  local s = redis.call('HMGET', skey(sid), 'accountId', 'ended')
  if s[1] == account and s[2] ~= 'true' then
    prepare_render(sid)
    out[#out + 1] = sid
  elseif not s[1] or s[2] == 'true' then
    redis.call('SREM', usersessionskey(uid), sid)
    agent_changed(uid)
  end
end
return out
