-- ARGV: prefix, session id, account id.
-- Returns {session, member JSON, log JSON}, or {} if the account has no such session.
if redis.call('HGET', skey(ARGV[2]), 'accountId') ~= ARGV[3] then return {} end
return render(ARGV[2])
