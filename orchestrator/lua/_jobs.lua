-- Twilio work that a change calls for (end a leg, hold, mute, end the conference)
-- goes to the control queue as an RQ job written by the same script as the change:
-- no change without its job. The job is a copy of a template RQ built
-- (orchestrator/jobs.py; every web and worker process installs it); its id names
-- the session, and the job does whatever the session's state then asks of Twilio.
-- A script asks for one with want_control() and writes it last, with flush_control().
local CONTROL_TEMPLATE, CONTROL_TEMPLATE_KEYS = templatekey(), templatekeyskey()
local CONTROL_WANTED = false
local function control_ready()
  return redis.call('EXISTS', CONTROL_TEMPLATE) == 1
end
local function want_control() CONTROL_WANTED = true end
local function flush_control(sid, now)
  if not CONTROL_WANTED then return end
  CONTROL_WANTED = false
  local keys = redis.call('HMGET', CONTROL_TEMPLATE_KEYS, 'queue', 'queues', 'job')
  local id = 'ctl-' .. sid .. '-' .. redis.call('HINCRBY', skey(sid), '_ctlseq', 1)
  local jk = keys[3] .. id
  redis.call('HSET', jk, unpack(redis.call('HGETALL', CONTROL_TEMPLATE)))
  redis.call('HSET', jk, 'created_at', now, 'enqueued_at', now, 'description', 'settle ' .. sid)
  redis.call('RPUSH', keys[1], id)
  redis.call('SADD', keys[2], keys[1])
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
end
