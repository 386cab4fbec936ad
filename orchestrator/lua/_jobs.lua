-- Twilio work that a change calls for (end a leg, hold, mute, end the conference)
-- goes to the control queue as an RQ job written by the same script as the change:
-- no change without its job. The job is a copy of a template RQ built
-- (orchestrator/jobs.py; every web and worker process installs it); its id names
-- the session, and the job does whatever the session's state then asks of Twilio.
-- A script asks for one with want_control(sid) and writes them last, with
-- flush_control(): one job for each session that wants one.
local CONTROL_TEMPLATE, CONTROL_TEMPLATE_KEYS = templatekey(), templatekeyskey()
local DIAL_TEMPLATE = dialtemplatekey()
local CONTROL_WANTED, CONTROL_ORDER = {}, {}
-- An idle worker waits on the doorbell, not on the queues (workers/worker.py claims a
-- job from either queue in one step): a token for each job wakes one at once.
-- Tokens nobody took (the workers were busy, and claimed the jobs without waiting) are
-- trimmed to DOORBELL_KEEP once there are twice as many: one command a job, and one
-- more for every DOORBELL_KEEP jobs while the workers are behind.
local DOORBELL, DOORBELL_KEEP = doorbellkey(), 64
local function ring_doorbell(jobs)
  local tokens = {}
  for i = 1, math.min(jobs, DOORBELL_KEEP) do tokens[i] = '1' end
  if redis.call('LPUSH', DOORBELL, unpack(tokens)) > 2 * DOORBELL_KEEP then
    redis.call('LTRIM', DOORBELL, 0, DOORBELL_KEEP - 1)
  end
end
local function control_ready()
  return redis.call('EXISTS', CONTROL_TEMPLATE, DIAL_TEMPLATE) == 2
end
local function want_control(sid)
  if CONTROL_WANTED[sid] then return end
  CONTROL_WANTED[sid] = true
  CONTROL_ORDER[#CONTROL_ORDER + 1] = sid
end
local function flush_control(_, now)
  if #CONTROL_ORDER == 0 then return end
  local keys = redis.call('HMGET', CONTROL_TEMPLATE_KEYS, 'queue', 'queues', 'job')
  local template = redis.call('HGETALL', CONTROL_TEMPLATE)
  for _, sid in ipairs(CONTROL_ORDER) do
    local id = 'ctl-' .. sid .. '-' .. redis.call('HINCRBY', skey(sid), '_ctlseq', 1)
    local jk = keys[3] .. id
    redis.call('HSET', jk, unpack(template))
    redis.call('HSET', jk, 'created_at', now, 'enqueued_at', now, 'description', 'settle ' .. sid)
    redis.call('RPUSH', keys[1], id)
  end
  redis.call('SADD', keys[2], keys[1])
  ring_doorbell(#CONTROL_ORDER)
  CONTROL_WANTED, CONTROL_ORDER = {}, {}
end
-- Every script that may ask for Twilio work calls this before it changes anything.
local function require_control()
  if not control_ready() then
    return redis.error_reply('NOTEMPLATE the control job template is not installed')
  end
  return nil
end

-- A member's dial job, as orchestrator/jobs.py built it for the script:
-- job = {queue key, queues set key, job key, job id, field, value, ...}.
local function enqueue_dial(job)
  local hash = {}
  for i = 5, #job do hash[#hash + 1] = job[i] end
  redis.call('HSET', job[3], unpack(hash))
  redis.call('RPUSH', job[1], job[4])
  redis.call('SADD', job[2], job[1])
  ring_doorbell(1)
end

-- The dial job of a member a script adds by itself (a ring queue's offer, its overflow):
-- a copy of the template orchestrator/jobs.py installs, with this session's and member's
-- ids in place of its placeholders, as enqueue_dial takes it.
local PLACEHOLDER_SESSION = 'ses_' .. string.rep('0', 24)
local PLACEHOLDER_MEMBER = 'mem_' .. string.rep('0', 24)
local function replaced(text, old, new)
  local at = string.find(text, old, 1, true)
  if not at then return text end
  return string.sub(text, 1, at - 1) .. new .. string.sub(text, at + #old)
end
local function dial_job_for(sid, mid, now)
  local keys = redis.call('HMGET', CONTROL_TEMPLATE_KEYS, 'dialqueue', 'queues', 'job')
  local id = 'dial-' .. mid
  local job = {keys[1], keys[2], keys[3] .. id, id}
  local t = redis.call('HGETALL', DIAL_TEMPLATE)
  for i = 1, #t, 2 do
    local value = t[i + 1]
    if t[i] == 'data' then
      value = replaced(replaced(value, PLACEHOLDER_SESSION, sid), PLACEHOLDER_MEMBER, mid)
    elseif t[i] == 'created_at' or t[i] == 'enqueued_at' then
      value = now
    elseif t[i] == 'description' then
      value = 'dial ' .. mid .. ' into ' .. sid
    end
    job[#job + 1] = t[i]
    job[#job + 1] = value
  end
  return job
end
