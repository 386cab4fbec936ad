"""Reading ring queues as they stand, for people and for Prometheus: an account's queues
with their agents and waiting calls (ListQueues, `orchestrator queues list`), and every
queue's counters and the agents by state (`GET /metrics`).

Only reads: the queue engine (lua/_queues.lua) writes all of it. Each read is a few
pipelined round trips whatever the number of queues, agents or calls (never one per
field): the plan is a generator that yields the commands of one round trip and gets
their replies back, so the same plan runs on the web's asyncio client and on the
CLI's synchronous one.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio

from orchestrator import keys

# Answered calls' waits, by bucket upper bound in seconds, then +Inf: the queue stats'
# "wait:0".."wait:9" count each bucket on its own (not cumulatively). lua/_queues.lua's
# WAIT_BUCKETS is the same list (tests/test_queue_admin.py checks that it is).
WAIT_BUCKETS: tuple[int, ...] = (1, 2, 5, 10, 20, 30, 60, 120, 300)
OUTCOMES = ("Answered", "Abandoned", "Missed", "Overflowed")
# What a user's hash holds when nothing set their state yet: logged out.
DEFAULT_STATE, DEFAULT_REASON = "LoggedOut", "Unknown"
AGENT_STATES = ("Unknown", "Ready", "NotReady", "LoggedOut", "WrapUp", "Outgoing", "Other")
AGENT_REASONS = ("Unknown", "SetByUser", "MissedCall", "SetBySystem")
QUEUE_STATES = ("None", "Queued", "Ringing", "Connected", "Hold", "Disconnected")

# One command of a round trip: the client's method name and its arguments.
Command = tuple[str, tuple[Any, ...], dict[str, Any]]
Plan = Generator[list[Command], list[Any], Any]


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _cmd(name: str, *args: Any, **kwargs: Any) -> Command:
    return (name, args, kwargs)


def _queue_pipeline(client: Any, commands: list[Command]) -> Any:
    pipe = client.pipeline(transaction=False)
    for name, args, kwargs in commands:
        getattr(pipe, name)(*args, **kwargs)
    return pipe


def run_sync(r: redis.Redis, plan: Plan) -> Any:
    """Runs a plan on a synchronous client: one pipeline per round trip it asks for."""
    try:
        commands = next(plan)
        while True:
            commands = plan.send(_queue_pipeline(r, commands).execute() if commands else [])
    except StopIteration as done:
        return done.value


async def run(r: redis.asyncio.Redis, plan: Plan) -> Any:
    """Runs a plan on an asyncio client: one pipeline per round trip it asks for."""
    try:
        commands = next(plan)
        while True:
            replies = await _queue_pipeline(r, commands).execute() if commands else []
            commands = plan.send(replies)
    except StopIteration as done:
        return done.value


# --- an account's queues ----------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    user_id: str
    name: str
    agent_state: str
    agent_state_reason: str
    busy: bool  # a leg in some session not yet over (invited, ringing, in a call, held)

    def to_wire(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "name": self.name,
            "agentState": self.agent_state,
            "agentStateReason": self.agent_state_reason,
            "busy": self.busy,
        }


@dataclass(frozen=True)
class WaitingCall:
    session_id: str
    since_ms: int
    from_address: str | None
    queue_state: str

    def to_wire(self, now_ms: int) -> dict[str, Any]:
        since = datetime.fromtimestamp(self.since_ms / 1000, UTC)
        return {
            "sessionId": self.session_id,
            "since": since.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "waitSeconds": max(0, (now_ms - self.since_ms) // 1000),
            "fromAddress": self.from_address,
            "queueState": self.queue_state,
        }


@dataclass(frozen=True)
class Queue:
    id: str
    account_id: str
    name: str
    strategy: str
    ring_timeout: int
    max_wait: int
    wrap_up: int
    max_misses: int
    overflow: str | None
    date_created: str
    agents: list[Agent] = field(default_factory=list)
    waiting: list[WaitingCall] = field(default_factory=list)  # longest waiting first

    def to_wire(self, now_ms: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "strategy": self.strategy,
            "ringTimeout": self.ring_timeout,
            "maxWait": self.max_wait,
            "wrapUp": self.wrap_up,
            "maxMisses": self.max_misses,
            "overflow": self.overflow,
            "waiting": [w.to_wire(now_ms) for w in self.waiting],
            "agents": [a.to_wire() for a in self.agents],
        }


def _int(value: Any, default: int) -> int:
    try:
        return int(_text(value))
    except (TypeError, ValueError):
        return default


def account_queues(account_id: str) -> Plan:
    """The account's queues, oldest first, with their agents (in the order they were
    added) and waiting calls: three round trips, whatever their number."""
    (qids,) = yield [_cmd("zrange", keys.account_queues(account_id), 0, -1)]
    qids = [_text(q) for q in qids]
    if not qids:
        return []
    reads: list[Command] = []
    for qid in qids:
        reads += [
            _cmd("hgetall", keys.queue(qid)),
            _cmd("lrange", keys.queue_agents(qid), 0, -1),
            _cmd("zrange", keys.queue_waiting(qid), 0, -1, withscores=True),
        ]
    replies = yield reads
    found = []
    for at, qid in enumerate(qids):
        raw, agents, waiting = replies[3 * at : 3 * at + 3]
        queue = {_text(k): _text(v) for k, v in raw.items()}
        if queue.get("accountId") != account_id:
            continue  # deleted meanwhile
        queue.setdefault("id", qid)
        found.append(
            (queue, [_text(u) for u in agents], [(_text(s), int(ms)) for s, ms in waiting])
        )
    users = list(dict.fromkeys(uid for _, agents, _ in found for uid in agents))
    sids = list(dict.fromkeys(sid for _, _, waiting in found for sid, _ in waiting))
    reads = []
    for uid in users:
        reads += [
            _cmd("hmget", keys.user(uid), "accountId", "name", "email", "agentState"),
            _cmd("hget", keys.user(uid), "agentStateReason"),
            _cmd("scard", keys.user_sessions(uid)),
        ]
    for sid in sids:
        reads.append(_cmd("hmget", keys.session(sid), "accountId", "fromAddress", "queueState"))
    replies = yield reads
    by_user: dict[str, Agent] = {}
    for at, uid in enumerate(users):
        fields, reason, legs = replies[3 * at : 3 * at + 3]
        owner, name, email, state = (_text(f) for f in fields)
        reason = _text(reason)
        if owner != account_id:
            continue  # the user is gone
        by_user[uid] = Agent(
            uid,
            name or email or uid,
            state if state in AGENT_STATES else DEFAULT_STATE,
            reason if reason in AGENT_REASONS else DEFAULT_REASON,
            int(legs) > 0,
        )
    by_session: dict[str, tuple[str | None, str]] = {}
    for sid, fields in zip(sids, replies[3 * len(users) :], strict=True):
        owner, from_address, state = (_text(f) for f in fields)
        if owner == account_id:  # else it expired
            by_session[sid] = (from_address, state if state in QUEUE_STATES else "Queued")
    queues = []
    for queue, agents, waiting in found:
        queues.append(
            Queue(
                id=queue["id"],
                account_id=account_id,
                name=queue.get("name", ""),
                strategy=queue.get("strategy", "ring-all"),
                ring_timeout=_int(queue.get("ringTimeout"), 20),
                max_wait=_int(queue.get("maxWait"), 300),
                wrap_up=_int(queue.get("wrapUp"), 10),
                max_misses=_int(queue.get("maxMisses"), 3),
                overflow=queue.get("overflow") or None,
                date_created=queue.get("dateCreated", ""),
                agents=[by_user[u] for u in agents if u in by_user],
                waiting=[
                    WaitingCall(sid, ms, *by_session[sid])
                    for sid, ms in waiting
                    if sid in by_session
                ],
            )
        )
    return queues


# --- every queue, for /metrics ----------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    """One queue's counters: calls by outcome, and its answered calls' waits."""

    calls: dict[str, int]  # outcome -> calls
    wait_buckets: tuple[int, ...]  # per bucket of WAIT_BUCKETS, then +Inf; not cumulative
    wait_sum_seconds: float
    wait_count: int


@dataclass(frozen=True)
class Snapshot:
    queues: dict[str, QueueStats]  # queue id -> its counters
    agents: dict[str, int]  # agent state -> how many users are in it


def _stats(raw: dict[Any, Any]) -> QueueStats:
    stats = {_text(k): _int(v, 0) for k, v in raw.items()}
    calls = {o: stats.get(f"calls:{o}", 0) for o in OUTCOMES}
    calls |= {k[6:]: v for k, v in stats.items() if k.startswith("calls:")}
    buckets = tuple(stats.get(f"wait:{i}", 0) for i in range(len(WAIT_BUCKETS) + 1))
    return QueueStats(
        calls, buckets, stats.get("wait:sum_ms", 0) / 1000, stats.get("wait:count", 0)
    )


def snapshot() -> Plan:
    """Every queue's counters and the number of agents in each state: two round trips (the
    set of every queue and the states index, then each queue's counters)."""
    qids, states = yield [_cmd("smembers", keys.queues()), _cmd("hvals", keys.agent_states())]
    qids = sorted(_text(q) for q in qids)
    agents = dict.fromkeys(("Ready", "NotReady", "LoggedOut", "WrapUp"), 0)
    for state in states:
        state = _text(state)
        if state in AGENT_STATES:
            agents[state] = agents.get(state, 0) + 1
    replies = yield [_cmd("hgetall", keys.queue_stats(qid)) for qid in qids]
    return Snapshot({qid: _stats(raw) for qid, raw in zip(qids, replies, strict=True)}, agents)
