-- Ring queues (docs/queues.md): an incoming call to a queue's number waits in the queue,
-- and the queue offers it to its free agents; the first whose leg connects takes it.
--
-- An offer is an invite of the agent (add_member), written with its dial job in the
-- step that decides it, so an agent is reserved in the same step that offers it the
-- call: an agent is free while Ready with no leg in any session (their sessions set,
-- which add_member fills and finalize empties), and two offers can never take one agent.
-- Each queue keeps its free agents in a set (_agents.lua), so a call finds its agent
-- by reading the free ones only. A withdrawn offer is a removal (remove: the control
-- job cancels the ringing leg). A timer is an entry in the timers sorted set, which the
-- workers' sweep runs when due (timers.lua); so nothing that must happen later lives in
-- a process.
-- The queue logic is built only by a script that needs it (queues()): Redis runs the
-- whole text of a script on every call, and defining these functions on every callback
-- of every call, queued or not, cost each one a third more of Redis's time.
local built_queues = nil
local function queues()
  if built_queues then return built_queues end

  -- Answered calls' waits, by bucket upper bound in seconds (the last bucket is +Inf):
  -- orchestrator/queue_reads.py renders them as a Prometheus histogram.
  local WAIT_BUCKETS = {1, 2, 5, 10, 20, 30, 60, 120, 300}
  local AGENT_STATES = {Ready = true, NotReady = true, LoggedOut = true, WrapUp = true}

  local function now_ms() return clock_ms() end

  -- Session fields a client sees (queueState, ...): written, and the change's event marked.
  local function set_session(sid, ...)
    redis.call('HSET', skey(sid), ...)
    touched(sid)
  end

  -- An agent's state changes: the user hash, the states index, the timers it ends, and an
  -- AgentStateChanged entry on the account's event stream. False if nothing changed, nil
  -- if there is no such user.
  local function set_agent(uid, state, reason)
    local u = redis.call('HMGET', userkey(uid), 'accountId', 'agentState', 'agentStateReason')
    if not u[1] then return nil end
    local was = u[2] or 'LoggedOut'
    if was == state and (u[3] or 'Unknown') == reason then return false end
    redis.call('HSET', userkey(uid), 'agentState', state, 'agentStateReason', reason)
    redis.call('HSET', agentstateskey(), uid, state)
    if state == 'Ready' and was ~= 'Ready' then
      -- Idle from now: longest-idle counts from here; misses in a row start again.
      redis.call('HSET', userkey(uid), '_idlesince', tostring(now_ms()), '_misses', '0')
    end
    if state ~= 'WrapUp' then redis.call('ZREM', timerskey(), 'wrapup:' .. uid) end
    agent_changed(uid)
    local key = eventskey(u[1])
    redis.call('XADD', key, 'MINID', '~', now_ms() - EVENTS_KEEP_SECONDS * 1000, '*',
      '@agent', uid, '@events', 'AgentStateChanged', 'userId', uid, 'agentState', state,
      'agentStateReason', reason)
    redis.call('EXPIRE', key, EVENTS_KEEP_SECONDS + 60)
    return true
  end

  local function set_timer(name, due_ms) redis.call('ZADD', timerskey(), due_ms, name) end
  local function clear_timer(name) redis.call('ZREM', timerskey(), name) end

  local function queue_config(qid)
    local q = redis.call('HMGET', queuekey(qid), 'accountId', 'strategy', 'ringTimeout',
      'maxWait', 'wrapUp', 'maxMisses', 'overflow', 'name', '_last')
    if not q[1] then return nil end
    return {account = q[1], strategy = q[2] or 'ring-all', ring = tonumber(q[3] or '20'),
      wait = tonumber(q[4] or '300'), wrapup = tonumber(q[5] or '10'),
      misses = tonumber(q[6] or '3'), overflow = q[7], name = q[8] or qid, last = q[9]}
  end

  local function bump(qid, field, by) redis.call('HINCRBY', queuestatskey(qid), field, by or 1) end

  -- The offers of a call still live: members offered it whose leg is not over.
  local function live_offers(sid)
    local out = {}
    for _, mid in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
      local f = redis.call('HMGET', mkey(sid, mid), '_offer', '_rank', '_removed')
      if f[1] and tonumber(f[2] or '0') < 3 and f[3] ~= '1' then out[#out + 1] = mid end
    end
    return out
  end

  -- Withdraws every live offer of a call but `keep`'s, each with a log line: a ringing leg
  -- is cancelled, one not yet dialled is never dialled, one connected is removed.
  local function withdraw(sid, now, keep, why)
    for _, mid in ipairs(live_offers(sid)) do
      if mid ~= keep then
        local m = mkey(sid, mid)
        redis.call('HSET', m, '_withdrawn', '1')
        remove(sid, mid, now, 'Offer to ' .. member_name(m) .. ' withdrawn: ' .. why,
          'Offer to ' .. member_name(m) .. ' withdrawn: ' .. why)
      end
    end
  end

  -- The call leaves the queue's waiting list (answered, abandoned, overflowed, missed).
  local function leave_queue(sid, qid)
    redis.call('ZREM', queuewaitingkey(qid), sid)
    if redis.call('ZCARD', queuewaitingkey(qid)) == 0 then
      redis.call('SREM', queueswaitingkey(), qid)
    end
    clear_timer('ring:' .. sid)
    clear_timer('wait:' .. sid)
  end

  -- One agent missed an offer (it rang out, was not answered, was busy or declined): after
  -- maxMisses in a row they go NotReady (MissedCall), so calls stop ringing for nobody.
  local function count_miss(uid, q)
    local n = redis.call('HINCRBY', userkey(uid), '_misses', 1)
    if n >= q.misses and redis.call('HGET', userkey(uid), 'agentState') == 'Ready' then
      set_agent(uid, 'NotReady', 'MissedCall')
    end
  end

  -- The queue's free agents, {position, user id}: longest idle first, or in the queue's
  -- order for the strategies that go by it (linear, round-robin).
  local function free_agents(qid, q)
    local free = {}
    local ids = redis.call('ZRANGE', queuefreekey(qid), 0, -1)
    if #ids == 0 then return free end
    local pos = {}
    local ordered = q.strategy == 'linear' or q.strategy == 'round-robin'
    if ordered then
      for i, uid in ipairs(redis.call('LRANGE', queueagentskey(qid), 0, -1)) do pos[uid] = i end
    end
    for _, uid in ipairs(ids) do free[#free + 1] = {pos[uid] or 0, uid} end
    if ordered then table.sort(free, function(a, b) return a[1] < b[1] end) end
    return free
  end

  -- Whether `uid` is free as the agent's own state says; the free set is mended if not.
  -- (Each agent is checked as it is chosen: a set that disagreed with the state it
  -- summarises would reserve nobody twice, but it must not ring anyone busy either.)
  local function still_free(uid)
    if agent_free(uid) then return true end
    agent_changed(uid)
    return false
  end

  -- The agents to offer a call to now, out of `free` (taken out of it), by the queue's
  -- strategy (docs/queues.md): every free one for ring-all, else the next one. An agent
  -- who had this call in the current round (until its ring timer) is not offered it
  -- again: a decline does not ring back at once.
  local function choose(sid, q, free)
    local offered = redis.call('HGET', skey(sid), '_offered') or ','
    local open = {}
    for k, a in ipairs(free) do
      if not string.find(offered, ',' .. a[2] .. ',', 1, true) then open[#open + 1] = k end
    end
    if #open == 0 then return {} end
    local picked = {}
    if q.strategy == 'ring-all' then
      for _, k in ipairs(open) do
        if still_free(free[k][2]) then picked[#picked + 1] = k end
      end
    else
      -- longest-idle: the first of the free set's order; linear and round-robin: the
      -- first free agent after the last one offered this call, wrapping round.
      local from = 1
      if q.strategy ~= 'longest-idle' then
        local pos = tonumber(redis.call('HGET', skey(sid), '_qpos') or '0')
        from = #open + 1
        for i, k in ipairs(open) do
          if free[k][1] > pos then from = i; break end
        end
      end
      for n = 0, #open - 1 do
        local k = open[(from - 1 + n) % #open + 1]
        if still_free(free[k][2]) then picked = {k}; break end
      end
      if picked[1] and q.strategy ~= 'longest-idle' then
        redis.call('HSET', skey(sid), '_qpos', tostring(free[picked[1]][1]))
      end
    end
    if #picked == 0 then return {} end
    local chosen = {}
    for i = #picked, 1, -1 do
      chosen[#chosen + 1] = free[picked[i]][2]
      table.remove(free, picked[i])
    end
    redis.call('HSET', skey(sid), '_offered', offered .. table.concat(chosen, ',') .. ',')
    return chosen
  end

  -- Offers the call to `uid`: an invite of the agent, its dial job from the template.
  local function offer(sid, qid, q, uid, now)
    local seq = redis.call('HINCRBY', skey(sid), '_offerseq', 1)
    local mid = 'mem_' .. string.sub(sid, 5, 20) .. string.format('%08x', seq)
    local job = dial_job_for(sid, mid, now)
    -- The agent's phone shows the customer's number (the caller's, or a progressive
    -- dial's destination).
    local a = redis.call('HMGET', skey(sid), 'fromAddress', 'toAddress')
    local shown = ''
    if a[1] and string.sub(a[1], 1, 1) == '+' then shown = a[1]
    elseif a[2] and string.sub(a[2], 1, 1) == '+' then shown = a[2] end
    local outcome = add_member(sid, q.account, 'user', uid, mid, now, shown, '', job, true, true)
    if outcome ~= 'created' then return false end
    -- When, by Redis' clock (the agents' state events' clock too): what an audit of the
    -- strategy's choices compares.
    redis.call('HSET', mkey(sid, mid), '_offer', qid, '_offeredat', tostring(now_ms()))
    append_log(sid, now, 'Offered to ' .. member_name(mkey(sid, mid)))
    enqueue_dial(job)
    return true
  end

  -- Overflow or missed: nobody took the call in time, or nobody of the queue will be free.
  local function give_up(sid, qid, q, now, why)
    withdraw(sid, now, nil, why)
    leave_queue(sid, qid)
    if q.overflow then
      local kind = 'phone'
      if string.sub(q.overflow, 1, 1) ~= '+' then kind = 'user' end
      local mid = 'mem_' .. string.sub(sid, 5, 20) .. string.format('%08x',
        redis.call('HINCRBY', skey(sid), '_offerseq', 1))
      local job = dial_job_for(sid, mid, now)
      set_session(sid, 'queueState', 'Disconnected')
      append_log(sid, now, why .. ': the call goes to the overflow')
      local outcome = add_member(sid, q.account, kind, q.overflow, mid, now, '', '', job, true)
      if outcome == 'created' then enqueue_dial(job) end
      bump(qid, 'calls:Overflowed')
    else
      bump(qid, 'calls:Missed')
      end_session(sid, now, 'Missed', why .. ': nobody took the call')
    end
  end

  -- Whether any agent of the queue could take a call at some point without doing anything
  -- (Ready, or WrapUp, or on a call): with none, a waiting call gives up at once.
  local function anyone_coming(qid)
    local ids = redis.call('LRANGE', queueagentskey(qid), 0, -1)
    for i = 1, #ids, 1000 do
      local states = redis.call('HMGET', agentstateskey(), unpack(ids, i, math.min(i + 999, #ids)))
      for _, st in ipairs(states) do
        if st == 'Ready' or st == 'WrapUp' then return true end
      end
    end
    return false
  end

  -- Offers the queue's waiting calls, oldest first, to its free agents; a call whose offers
  -- are still ringing waits for them (or for its ring timer). The free agents are found
  -- once, so a queue of many waiting calls and no free agent costs one look at its agents.
  local function distribute(qid, now)
    local q = queue_config(qid)
    if not q then return end
    local waiting = redis.call('ZRANGE', queuewaitingkey(qid), 0, -1)
    if #waiting == 0 then return end
    local free = free_agents(qid, q)
    local coming = nil
    for _, sid in ipairs(waiting) do
      local s = redis.call('HMGET', skey(sid), 'ended', 'queueState')
      if s[1] ~= 'false' then
        leave_queue(sid, qid)
      elseif #free == 0 then
        if coming == nil then coming = anyone_coming(qid) end
        if coming then break end
        if #live_offers(sid) == 0 then
          give_up(sid, qid, q, now, 'No agent of the queue is available')
        end
      elseif #live_offers(sid) == 0 then
        local any = false
        for _, uid in ipairs(choose(sid, q, free)) do
          if offer(sid, qid, q, uid, now) then any = true end
        end
        if any then
          if s[2] ~= 'Ringing' then set_session(sid, 'queueState', 'Ringing') end
          -- One ring timer a round: an agent offered later in it rings for less.
          redis.call('ZADD', timerskey(), 'NX', now_ms() + q.ring * 1000, 'ring:' .. sid)
        end
      end
    end
  end

  -- A few of the queue's agents checked against its free set, round the queue by a cursor:
  -- the sweep does it for each queue it looks at (one with calls waiting), so a free set
  -- that disagreed with its agents' states, whatever the cause, is mended within seconds.
  local AUDIT_AGENTS = 16
  local function audit_agents(qid)
    local n = redis.call('LLEN', queueagentskey(qid))
    if n == 0 then return end
    local at = tonumber(redis.call('HGET', queuekey(qid), '_audit') or '0') % n
    for _, uid in ipairs(redis.call('LRANGE', queueagentskey(qid), at, at + AUDIT_AGENTS - 1)) do
      agent_changed(uid)
    end
    redis.call('HSET', queuekey(qid), '_audit', tostring((at + AUDIT_AGENTS) % n))
  end

  local function distribute_for(uid, now)
    for _, qid in ipairs(redis.call('SMEMBERS', userqueueskey(uid))) do distribute(qid, now) end
  end

  -- A call enters a queue: it waits (the caller hears hold music), and is offered at once
  -- if an agent is free.
  local function enter_queue(sid, qid, now)
    local q = queue_config(qid)
    if not q then return false end
    local ms = now_ms()
    redis.call('HSET', skey(sid), 'ringQueueId', qid, 'queueState', 'Queued', '_queuedat',
      tostring(ms))
    local at = 0
    if q.strategy == 'round-robin' and q.last then
      at = redis.call('LPOS', queueagentskey(qid), q.last) or -1
      at = at + 1  -- LPOS is 0-based; positions here are 1-based
    end
    redis.call('HSET', skey(sid), '_qpos', tostring(at))
    redis.call('ZADD', queuewaitingkey(qid), ms, sid)
    redis.call('SADD', queueswaitingkey(), qid)
    set_timer('wait:' .. sid, ms + q.wait * 1000)
    append_log(sid, now, 'Waiting in queue ' .. q.name)
    distribute(qid, now)
    return true
  end

  -- An offered agent's leg connected: the first takes the call, every other offer is
  -- withdrawn at once; one that connects after that is removed.
  local function connected(sid, mid, m, now)
    local after = redis.call('HMGET', skey(sid), '_queueafter', '_destmember')
    if after[1] and after[2] == mid then
      -- A progressive dial's customer answered: now the call waits in its queue.
      redis.call('HDEL', skey(sid), '_queueafter')
      enter_queue(sid, after[1], now)
      return
    end
    local o = redis.call('HMGET', m, '_offer', '_removed', '_withdrawn')
    local qid = o[1]
    if not qid then return end
    local s = redis.call('HMGET', skey(sid), 'queueState', 'ended', '_queuedat')
    local uid = redis.call('HGET', m, 'endpointId')
    local waiting = s[2] ~= 'true' and (s[1] == 'Queued' or s[1] == 'Ringing')
    if o[2] == '1' then
      -- Removed through the API, or withdrawn: its leg is being ended (on_connected asked
      -- the control job). Only an offer withdrawn as its ring round ended, by a call still
      -- waiting, was answered in time after all: Twilio connected it, so it takes the call
      -- (its cancel finds the call answered; the control job then sees it kept).
      if o[3] ~= '1' or not waiting then return end
      redis.call('HDEL', m, '_removed', '_withdrawn')
      if tonumber(redis.call('HGET', userkey(uid), '_misses') or '0') > 0 then
        redis.call('HINCRBY', userkey(uid), '_misses', -1)
      end
      append_log(sid, now, member_name(m) .. ' answered as the ring round ended')
    end
    if not waiting then
      redis.call('HSET', m, '_withdrawn', '1')
      local message = member_name(m) .. ' answered after the call was taken; removed'
      remove(sid, mid, now, message, message)
      return
    end
    set_session(sid, 'queueState', 'Connected', 'queueMemberId', uid)
    redis.call('HSET', m, '_won', '1')
    leave_queue(sid, qid)
    redis.call('HSET', queuekey(qid), '_last', uid)
    redis.call('HSET', userkey(uid), '_misses', '0')
    bump(qid, 'calls:Answered')
    local waited = (now_ms() - tonumber(s[3] or now_ms())) / 1000
    local bucket = #WAIT_BUCKETS
    for i, bound in ipairs(WAIT_BUCKETS) do
      if waited <= bound then bucket = i - 1; break end
    end
    bump(qid, 'wait:' .. bucket)
    bump(qid, 'wait:sum_ms', math.floor(waited * 1000))
    bump(qid, 'wait:count')
    append_log(sid, now, member_name(m) .. ' took the call')
    withdraw(sid, now, mid, member_name(m) .. ' took the call')
  end

  -- A member's leg is over. An offer not taken by its agent counts as a miss unless it was
  -- withdrawn; the winner goes to WrapUp; a queue call with nobody left but its customer
  -- ends (an answered one, or one whose overflow is over); and an agent whose leg ended,
  -- in any session, may be free for what waits in their queues.
  local function member_over(sid, mid, m, now)
    local f = redis.call('HMGET', m, '_offer', 'endpointId', '_withdrawn', '_won')
    local sk = skey(sid)
    local qid = f[1] or redis.call('HGET', sk, 'ringQueueId')
    local q = qid and queue_config(qid)
    if q then
      local s = redis.call('HMGET', sk, 'ended', 'queueState')
      local waiting = s[1] == 'false' and (s[2] == 'Queued' or s[2] == 'Ringing')
      if f[1] and f[4] == '1' then
        if redis.call('HGET', userkey(f[2]), 'agentState') == 'Ready' then
          set_agent(f[2], 'WrapUp', 'SetBySystem')
          set_timer('wrapup:' .. f[2], now_ms() + q.wrapup * 1000)
        end
      elseif f[1] and f[3] ~= '1' and waiting then
        count_miss(f[2], q)
        -- Nobody left ringing: the call waits again (the round's ring timer stays).
        if #live_offers(sid) == 0 then set_session(sid, 'queueState', 'Queued') end
      end
      if s[1] == 'false' and not waiting then
        local customer, alone = customer_of(sid), true
        for _, other in ipairs(redis.call('LRANGE', idskey(sid), 0, -1)) do
          if other ~= customer
            and tonumber(redis.call('HGET', mkey(sid, other), '_rank') or '0') < 3 then
            alone = false
            break
          end
        end
        if alone then end_session(sid, now, '', 'Nobody is left with the caller') end
      end
      if waiting then distribute(qid, now) end
    end
    if f[2] then distribute_for(f[2], now) end
  end

  -- The session ended: a call still waiting leaves its queue (abandoned when its caller
  -- hung up) and every offer still live is withdrawn with the rest of the call.
  local function session_ended(sid, now, outcome)
    local s = redis.call('HMGET', skey(sid), 'ringQueueId', 'queueState')
    if not s[1] or (s[2] ~= 'Queued' and s[2] ~= 'Ringing') then return end
    for _, mid in ipairs(live_offers(sid)) do redis.call('HSET', mkey(sid, mid), '_withdrawn', '1') end
    leave_queue(sid, s[1])
    set_session(sid, 'queueState', 'Disconnected')
    if outcome == 'Abandoned' then bump(s[1], 'calls:Abandoned') end
  end

  -- A due timer: `name` is ring:<sid>, wait:<sid>, wrapup:<uid> or release:<sid>.
  local function run_timer(name, now)
    local kind, id = string.match(name, '^(%a+):(.+)$')
    if kind == 'release' then
      -- The session ended a while ago; a leg Twilio never said ended (its last callback
      -- lost) no longer holds its member: no agent stays busy forever.
      for _, mid in ipairs(redis.call('LRANGE', idskey(id), 0, -1)) do
        local m = mkey(id, mid)
        if tonumber(redis.call('HGET', m, '_rank') or '3') < 3 then
          finalize(id, mid, now, member_name(m) .. ': no word that the call ended; released')
        end
      end
      return
    end
    if kind == 'wrapup' then
      if redis.call('HGET', userkey(id), 'agentState') == 'WrapUp' then
        set_agent(id, 'Ready', 'SetBySystem')
        distribute_for(id, now)
      end
      return
    end
    local s = redis.call('HMGET', skey(id), 'ended', 'queueState', 'ringQueueId')
    if s[1] ~= 'false' or not s[3] or (s[2] ~= 'Queued' and s[2] ~= 'Ringing') then return end
    local q = queue_config(s[3])
    if not q then return end
    if kind == 'wait' then
      give_up(id, s[3], q, now, 'Nobody answered within ' .. q.wait .. ' s')
    elseif kind == 'ring' then
      -- The round is over: what still rings is a miss, and a new round offers the call
      -- to whoever is free, those who had it included.
      for _, mid in ipairs(live_offers(id)) do
        local m = mkey(id, mid)
        local message = member_name(m) .. ' did not answer in time'
        count_miss(redis.call('HGET', m, 'endpointId'), q)
        redis.call('HSET', m, '_withdrawn', '1')
        remove(id, mid, now, message, message)
      end
      redis.call('HSET', skey(id), '_offered', ',')
      if s[2] ~= 'Queued' then set_session(id, 'queueState', 'Queued') end
      distribute(s[3], now)
    end
  end

  built_queues = {
    set_agent = set_agent, distribute = distribute, distribute_for = distribute_for,
    audit_agents = audit_agents, enter_queue = enter_queue, run_timer = run_timer,
    connected = connected, member_over = member_over, session_ended = session_ended,
  }
  return built_queues
end

-- The hooks the members' and sessions' code calls (declared in _sessions.lua). Each
-- looks first at what says whether the queues have a part in it, with as many commands
-- as the queue logic reads first anyway.

-- An offered agent's leg connected, or a progressive dial's customer answered.
queue_connected = function(sid, mid, m, now)
  if redis.call('HGET', skey(sid), '_queueafter') or redis.call('HGET', m, '_offer') then
    queues().connected(sid, mid, m, now)
  end
end

-- A member's leg is over: an offer's, any leg of a queue's call, or a user's (who may
-- now be free for a queue).
queue_member_over = function(sid, mid, m, now)
  local f = redis.call('HMGET', m, '_offer', 'endpointId')
  if f[1] or f[2] or redis.call('HGET', skey(sid), 'ringQueueId') then
    queues().member_over(sid, mid, m, now)
  end
end

-- The session ended while its call waited in a queue.
queue_session_ended = function(sid, now, outcome)
  local s = redis.call('HMGET', skey(sid), 'ringQueueId', 'queueState')
  if s[1] and (s[2] == 'Queued' or s[2] == 'Ringing') then
    queues().session_ended(sid, now, outcome)
  end
end
