"""Every Redis key the service writes, spelled once; `lua/_keys.lua` spells the same
names for the scripts, and `docs/internals.md` describes what each one holds.

Python code, tests and benchmarks build keys only through these functions, so a
change of layout is one change here and one in `_keys.lua`. RQ's own keys (its
queues, jobs and registries) belong to RQ: ask RQ's `Queue`, `Job` and registry
classes for them.
"""

from __future__ import annotations

PREFIX = "orch:"


# --- accounts and what belongs to them ------------------------------------------------------


def account(account_id: str) -> str:
    """hash: id, name, dateCreated, and dialCountries ("US,CA") when the account has its
    own list (orchestrator/dial_policy.py)."""
    return f"{PREFIX}account:{account_id}"


def account_user(account_id: str, ref: str) -> str:
    """str: a user's id, for ref = the user id or the lower-cased email."""
    return f"{PREFIX}account:{account_id}:user:{ref}"


def account_keys(account_id: str) -> str:
    """set: the account's API key ids."""
    return f"{PREFIX}account:{account_id}:apikeys"


def account_events(account_id: str) -> str:
    """stream: one entry per change of the account's sessions (orchestrator/events.py)."""
    return f"{PREFIX}account:{account_id}:events"


def account_sessions(account_id: str) -> str:
    """zset: every session kept, by creation time (ListSessions)."""
    return f"{PREFIX}account:{account_id}:sessions"


def account_active(account_id: str) -> str:
    """zset: the sessions that have not ended, by creation time (GetActiveSessions)."""
    return f"{PREFIX}account:{account_id}:active"


def account_ended(account_id: str) -> str:
    """zset: ended sessions, by when they are forgotten."""
    return f"{PREFIX}account:{account_id}:ended"


def account_of_events(key: bytes | str) -> str:
    """The account id inside an `account_events` key."""
    text = key.decode() if isinstance(key, bytes) else key
    return text[len(account("")) : -len(":events")]


def account_numbers(account_id: str) -> str:
    """list: the account's numbers in the order they were added; the first is the caller
    ID of an agent's call that names none (docs/api.md#calls-agents-place)."""
    return f"{PREFIX}account:{account_id}:numbers"


def numbers() -> str:
    """set: every number of every account (`orchestrator twilio setup` points them at
    the service)."""
    return f"{PREFIX}numbers"


def number(e164: str) -> str:
    """str: the id of the account that owns the number."""
    return f"{PREFIX}number:{e164}"


def account_queues(account_id: str) -> str:
    """zset: the account's ring queue ids, by creation time."""
    return f"{PREFIX}account:{account_id}:queues"


def queues() -> str:
    """set: every ring queue's id, of every account (/metrics reads their stats at scrape)."""
    return f"{PREFIX}queues"


def queue(queue_id: str) -> str:
    """hash: a ring queue: id, accountId, name, strategy, ringTimeout, maxWait, wrapUp,
    maxMisses, overflow, dateCreated; _last (the agent who took its last call)."""
    return f"{PREFIX}queue:{queue_id}"


def queue_agents(queue_id: str) -> str:
    """list: the queue's agents' user ids, in the order they were added."""
    return f"{queue(queue_id)}:agents"


def queue_waiting(queue_id: str) -> str:
    """zset: the sessions waiting in the queue for an agent, by when they entered it (ms)."""
    return f"{queue(queue_id)}:waiting"


def queue_free(queue_id: str) -> str:
    """zset: the queue's free agents (Ready, with no leg in any session), by when they
    became idle (ms): kept by the scripts whenever an agent's state, sessions or queues
    change, so a queue finds a free agent without reading every agent."""
    return f"{queue(queue_id)}:free"


def queue_stats(queue_id: str) -> str:
    """hash: the queue's counters for /metrics: calls by outcome, waits by bucket."""
    return f"{queue(queue_id)}:stats"


def number_queue(e164: str) -> str:
    """str: the ring queue the number's incoming calls go to."""
    return f"{PREFIX}number:{e164}:queue"


def user_queues(user_id: str) -> str:
    """set: the ring queues the user is an agent of."""
    return f"{PREFIX}user:{user_id}:queues"


def queues_waiting() -> str:
    """set: the ring queues with calls waiting, which the workers' sweep looks at."""
    return f"{PREFIX}queues:waiting"


def agent_states() -> str:
    """hash: user id -> agent state, of every user whose state was ever set (/metrics
    counts agents by state from it at scrape)."""
    return f"{PREFIX}agentstates"


def timers() -> str:
    """zset: the queues' timers ("ring:{sid}", "wait:{sid}", "wrapup:{uid}") by when they
    are due (ms); the workers' sweep runs them (orchestrator/lua/timers.lua)."""
    return f"{PREFIX}timers"


def dial_job_template() -> str:
    """hash: the dial job as RQ builds it, with placeholder ids, which scripts copy to
    offer a queue's call to an agent (orchestrator/jobs.py)."""
    return f"{PREFIX}jobtemplate:dial"


def user(user_id: str) -> str:
    """hash: id, accountId, email, name, avatarUrl; agentState, agentStateReason, and
    _idlesince (ms), _misses (offers missed in a row) for ring queues."""
    return f"{PREFIX}user:{user_id}"


def user_sessions(user_id: str) -> str:
    """set: the sessions not ended in which the user has a leg not yet over (GetMySessions)."""
    return f"{PREFIX}user:{user_id}:sessions"


def api_key(digest: str) -> str:
    """hash: id, accountId, roles, dateCreated (+ userId, userName), by the key's sha256."""
    return f"{PREFIX}apikey:{digest}"


def api_key_id(key_id: str) -> str:
    """str: the key's sha256, to revoke it by id."""
    return f"{PREFIX}apikeyid:{key_id}"


# --- sessions and their members ---------------------------------------------------------------


def session(session_id: str) -> str:
    """hash: SessionInfo's scalars (+ internals such as _number and _members)."""
    return f"{PREFIX}session:{session_id}"


def session_members(session_id: str) -> str:
    """list: member ids in the order they joined."""
    return f"{session(session_id)}:members"


def member(session_id: str, member_id: str) -> str:
    """hash: SessionMemberInfo (+ _rank, _hold, _to and other internals)."""
    return f"{session(session_id)}:member:{member_id}"


def session_active(session_id: str) -> str:
    """hash: dialled address -> member id, while that member is not final."""
    return f"{session(session_id)}:active"


def session_log(session_id: str) -> str:
    """list: JSON {date, message}, oldest first."""
    return f"{session(session_id)}:log"


def pending_dial(session_id: str) -> str:
    """list: an outgoing session's destination's dial job (as `jobs.dial_job` builds it),
    held until the agent's leg is in the conference (docs/api.md#calls-agents-place)."""
    return f"{session(session_id)}:pendingdial"


def member_versions(session_id: str) -> str:
    """hash: "{position}:{version}" -> a member's JSON after each change (live events)."""
    return f"{session(session_id)}:memberversions"


def members_json(session_id: str) -> str:
    """str: the members' JSON, joined, until one of them changes."""
    return f"{session(session_id)}:membersjson"


def call(call_sid: str) -> str:
    """str: "{session id} {member id}", to find a member from a callback's CallSid."""
    return f"{PREFIX}call:{call_sid}"


# --- the machinery ----------------------------------------------------------------------------


def idempotency(token: str) -> str:
    """str: a callback's I-Twilio-Idempotency-Token, once it has been applied."""
    return f"{PREFIX}idem:{token}"


def dial_rate() -> str:
    """zset: recent dial times, shared by every worker (workers/ratelimit.py)."""
    return f"{PREFIX}cps"


def control_job_template() -> str:
    """hash: the control job as RQ builds it, which scripts copy (orchestrator/jobs.py)."""
    return f"{PREFIX}jobtemplate:control"


def control_job_keys() -> str:
    """hash: queue, queues, job: the RQ keys a script needs to enqueue a copy of the
    control job template (the control queue, RQ's set of queues, its job key prefix)."""
    return f"{control_job_template()}:keys"


def job_doorbell() -> str:
    """list: a token for each job a script enqueues, which wakes an idle worker at once
    (workers/worker.py); kept short, as a token only wakes: the job is in its queue."""
    return f"{PREFIX}jobs:doorbell"


def event_wakeups(process: str) -> str:
    """stream: wake-ups of one web process's event reader (orchestrator/api/hub.py)."""
    return f"{PREFIX}hub:{process}"
