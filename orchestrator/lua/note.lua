-- A line in the session's log for what the worker could not do ("Could not end ...").
-- ARGV: prefix, session id, now, message
if redis.call('EXISTS', skey(ARGV[2])) == 0 then return 0 end
append_log(ARGV[2], ARGV[3], ARGV[4])
return 1
