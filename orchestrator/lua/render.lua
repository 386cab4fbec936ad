-- ARGV: prefix, session id.  Returns {session, members, log} or {} if missing.
if redis.call('EXISTS', skey(ARGV[2])) == 0 then return {} end
return render(ARGV[2])
