-- Every Redis key the scripts touch, spelled here and nowhere else in Lua; they are the
-- names orchestrator/keys.py builds, which describes what each one holds
-- (tests/test_scripts.py holds the two to the same spelling). ARGV[1] of every script
-- is the key prefix, keys.PREFIX.
local P = ARGV[1]

-- A session and what hangs off it.
local function skey(sid) return P .. 'session:' .. sid end
local function mkey(sid, mid) return P .. 'session:' .. sid .. ':member:' .. mid end
local function lkey(sid) return P .. 'session:' .. sid .. ':log' end
local function idskey(sid) return P .. 'session:' .. sid .. ':members' end
local function activekey(sid) return P .. 'session:' .. sid .. ':active' end
local function mjkey(sid) return P .. 'session:' .. sid .. ':membersjson' end
local function mvkey(sid) return P .. 'session:' .. sid .. ':memberversions' end
local function pendingdialkey(sid) return P .. 'session:' .. sid .. ':pendingdial' end
local function callkey(callsid) return P .. 'call:' .. callsid end

-- An account and what belongs to it. The sessions indexes: all it keeps (by creation
-- time), the live ones, and the ended ones by end time (to forget them after a week).
local function accountkey(account) return P .. 'account:' .. account end
local function sessionsidx(account) return P .. 'account:' .. account .. ':sessions' end
local function activeidx(account) return P .. 'account:' .. account .. ':active' end
local function endedidx(account) return P .. 'account:' .. account .. ':ended' end
local function eventskey(account) return P .. 'account:' .. account .. ':events' end
-- A user's id, by the user id or the lower-cased email.
local function userrefkey(account, ref) return P .. 'account:' .. account .. ':user:' .. ref end
local function userkey(uid) return P .. 'user:' .. uid end
local function usersessionskey(uid) return P .. 'user:' .. uid .. ':sessions' end
local function numberkey(e164) return P .. 'number:' .. e164 end
local function accountnumberskey(account) return P .. 'account:' .. account .. ':numbers' end
-- Ring queues.
local function accountqueueskey(account) return P .. 'account:' .. account .. ':queues' end
local function queueskey() return P .. 'queues' end
local function queuekey(qid) return P .. 'queue:' .. qid end
local function queueagentskey(qid) return P .. 'queue:' .. qid .. ':agents' end
local function queuewaitingkey(qid) return P .. 'queue:' .. qid .. ':waiting' end
local function queuestatskey(qid) return P .. 'queue:' .. qid .. ':stats' end
local function queuefreekey(qid) return P .. 'queue:' .. qid .. ':free' end
local function numberqueuekey(e164) return P .. 'number:' .. e164 .. ':queue' end
local function userqueueskey(uid) return P .. 'user:' .. uid .. ':queues' end
local function timerskey() return P .. 'timers' end
local function queueswaitingkey() return P .. 'queues:waiting' end
local function agentstateskey() return P .. 'agentstates' end

-- The machinery.
local function idemkey(token) return P .. 'idem:' .. token end
local function templatekey() return P .. 'jobtemplate:control' end
local function templatekeyskey() return P .. 'jobtemplate:control:keys' end
local function dialtemplatekey() return P .. 'jobtemplate:dial' end
local function doorbellkey() return P .. 'jobs:doorbell' end
