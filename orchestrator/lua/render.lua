-- ARGV: prefix, session id, account id.
-- 1 if the account has this session (its members' JSON is then ready to read), else 0.
if redis.call('HGET', skey(ARGV[2]), 'accountId') ~= ARGV[3] then return 0 end
prepare_render(ARGV[2])
return 1
