-- ListSessions and GetActiveSessions: one page of the account's sessions by
-- creation time, each made ready to render (see prepare_render). A page costs
-- O(log n + offset + count) whatever the number of sessions kept: the indexes are
-- sorted sets, and sessions that ended more than a week ago leave them here, a
-- bounded batch at a time, as their keys expire by themselves.
-- ARGV: prefix, account id, 'all'|'active', from (ms, or '-inf'), to (ms, or '+inf'),
--       offset, count, 'desc'|'asc'
-- Returns {total, sid, sid, ...}.
local account, which, from, to = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local offset, count, order = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
purge_ended(account, clock_ms())
local idx = sessionsidx(account)
if which == 'active' then idx = activeidx(account) end
local total = redis.call('ZCOUNT', idx, from, to)
local sids
if order == 'asc' then
  sids = redis.call('ZRANGEBYSCORE', idx, from, to, 'LIMIT', offset, count)
else
  sids = redis.call('ZREVRANGEBYSCORE', idx, to, from, 'LIMIT', offset, count)
end
local out = {total}
for _, sid in ipairs(sids) do
  if redis.call('EXISTS', skey(sid)) == 1 then
    prepare_render(sid)
    out[#out + 1] = sid
  end
end
return out
