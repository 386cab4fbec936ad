"""Redis state: every read and write of it.

The key layout lives in orchestrator/keys.py (each key's function says what it
holds) and, for the scripts, in lua/_keys.lua; RQ's own keys belong to RQ (the dial
job is `dial-{member id}`, see orchestrator/jobs.py).

Every state change is one script call; web handlers use the async functions,
the worker the sync ones. Each returns plain data, never Redis replies.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import redis.asyncio

from orchestrator import keys
from orchestrator.dto import SessionView
from orchestrator.scripts import AsyncScripts, Read, Scripts

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now() -> str:
    """Timestamps as ServiceStack clients read them: ISO 8601, UTC, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(12)}"


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def _session_reads(sid: str) -> tuple[Read, ...]:
    """What a SessionInfo is made of, read right after a script that prepare_render()s it."""
    return (
        ("HGETALL", keys.session(sid)),
        ("GET", keys.members_json(sid)),
        ("LRANGE", keys.session_log(sid), 0, -1),
    )


def _session(reads: list[Any]) -> SessionView:
    raw, members, log = reads
    raw = {k.decode(): v.decode() for k, v in raw.items()}
    return SessionView(raw, [members], log)


# --- web (asyncio) ----------------------------------------------------------


async def get_session(scripts: AsyncScripts, sid: str, account_id: str) -> SessionView | None:
    """The session, or None if `account_id` has no session `sid`."""
    args = [keys.PREFIX, sid, account_id]
    found, reads = await scripts.run_then_read("render", args, _session_reads(sid))
    return _session(reads) if found == 1 else None


@dataclass(frozen=True)
class InviteResult:
    outcome: str  # created | exists | notfound | ended | nouser
    member_id: str | None = None
    session: SessionView | None = None


@dataclass(frozen=True)
class Actor:
    """Who makes a change through the API, as the scripts record it."""

    id: str  # createdBy, lastModifiedBy, heldByUserId: the user, else the key
    name: str = ""  # how the log names them; "" for a key with no user
    user_id: str = ""


async def invite(
    scripts: AsyncScripts,
    *,
    sid: str,
    account_id: str,
    kind: str,
    ref: str,
    member_id: str,
    caller_id: str | None,
    actor: Actor,
    job: tuple[str, str, str, str, list[str]],
    redirect_to: str | None = None,
) -> InviteResult:
    """Add a member and enqueue its dial job atomically (see invite.lua); with
    `redirect_to` (the destination as given), a blind transfer to it (redirect.lua).

    `job` is (queue key, queues-set key, job key, job id, flat job hash).
    """
    qkey, queues, jobkey, jobid, mapping = job
    args = [keys.PREFIX, sid, account_id, kind, ref, member_id, now(), caller_id or ""]
    args += [actor.id, actor.name]
    if redirect_to is not None:
        args.append(redirect_to)
    args += [qkey, queues, jobkey, jobid, *mapping]
    name = "invite" if redirect_to is None else "redirect"
    reply, reads = await scripts.run_then_read(name, args, _session_reads(sid))
    outcome = _text(reply[0])
    if outcome in ("created", "exists", "ok"):
        return InviteResult(outcome, _text(reply[1]), _session(reads))
    return InviteResult(outcome)


@dataclass(frozen=True)
class Change:
    """What a change to a live call came to: `outcome` is the script's word (notfound,
    ended, nomember, gone, or what happened), with the session as it now stands."""

    outcome: str
    session: SessionView | None = None


async def _change(scripts: AsyncScripts, name: str, sid: str, args: list[Any]) -> Change:
    reply, reads = await scripts.run_then_read(name, [keys.PREFIX, *args], _session_reads(sid))
    outcome = _text(reply[0] if isinstance(reply, list) else reply)
    if outcome in ("notfound", "ended", "nomember", "gone") or not reads[0]:
        return Change(outcome)
    return Change(outcome, _session(reads))


async def remove_member(
    scripts: AsyncScripts, *, sid: str, account_id: str, member: str, actor: Actor
) -> Change:
    """DeleteChatMember (remove_member.lua)."""
    args = [sid, account_id, member, now(), actor.id, actor.name]
    return await _change(scripts, "remove_member", sid, args)


async def update_member(
    scripts: AsyncScripts,
    *,
    sid: str,
    account_id: str,
    call_sid: str,
    hold: bool | None,
    muted: bool | None,
    actor: Actor,
) -> Change:
    """UpdateConferenceMember (update_member.lua)."""
    args = [sid, account_id, call_sid, _flag(hold), _flag(muted), now(), actor.id, actor.name]
    return await _change(scripts, "update_member", sid, args)


def _flag(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


async def patch_session(
    scripts: AsyncScripts,
    *,
    sid: str,
    account_id: str,
    actor: Actor,
    call_state: str = "",
    hold_reason: str = "",
    holder_call_sid: str = "",
    fields: dict[str, str] | None = None,
) -> Change:
    """PatchSession and HoldSession (patch_session.lua); `fields` are stored as given."""
    args = [sid, account_id, now(), actor.id, actor.name, call_state, hold_reason]
    args += [holder_call_sid, actor.user_id]
    for name, value in (fields or {}).items():
        args += [name, value]
    return await _change(scripts, "patch_session", sid, args)


async def end_session(scripts: AsyncScripts, *, sid: str, account_id: str, actor: Actor) -> str:
    """EndSession (end_call.lua): 'notfound', 'ended' (already) or 'ended-now'."""
    args = [keys.PREFIX, sid, account_id, now(), actor.id, actor.name]
    return _text(await scripts.run("end_call", args))


@dataclass(frozen=True)
class SessionPage:
    total: int
    sessions: list[SessionView]


async def list_sessions(
    r: redis.asyncio.Redis,
    scripts: AsyncScripts,
    *,
    account_id: str,
    active_only: bool,
    since_ms: int | None = None,
    until_ms: int | None = None,
    offset: int = 0,
    count: int = 20,
    ascending: bool = False,
) -> SessionPage:
    """One page of the account's sessions (list_sessions.lua), read in one more round trip:
    the script says which sessions, then one pipeline reads them all."""
    args = [
        keys.PREFIX,
        account_id,
        "active" if active_only else "all",
        "-inf" if since_ms is None else since_ms,
        "+inf" if until_ms is None else until_ms,
        offset,
        count,
        "asc" if ascending else "desc",
    ]
    reply = await scripts.run("list_sessions", args)
    total, sids = int(reply[0]), [_text(s) for s in reply[1:]]
    return SessionPage(total, await _read_sessions(r, scripts, sids, account_id))


async def my_sessions(
    r: redis.asyncio.Redis, scripts: AsyncScripts, *, user_id: str, account_id: str
) -> list[SessionView]:
    """GetMySessions (my_sessions.lua): the user's sessions not ended, newest first."""
    sids = [_text(s) for s in await scripts.run("my_sessions", [keys.PREFIX, user_id, account_id])]
    views = await _read_sessions(r, scripts, sids, account_id)
    views.sort(key=lambda v: v.raw.get("dateCreated", ""), reverse=True)
    return views


async def _read_sessions(
    r: redis.asyncio.Redis, scripts: AsyncScripts, sids: list[str], account_id: str
) -> list[SessionView]:
    """The sessions a script made ready to render, read in one round trip."""
    if not sids:
        return []
    pipe = r.pipeline(transaction=False)
    for sid in sids:
        for read in _session_reads(sid):
            pipe.execute_command(*read)
    replies = await pipe.execute()
    views: list[SessionView | None] = []
    for sid, i in zip(sids, range(0, len(replies), 3), strict=True):
        reads = replies[i : i + 3]
        if reads[0] and reads[1] is None:
            # A member changed between the script and this read, which dropped the cached
            # members' JSON: read that session again the way GET does, in one step.
            views.append(await get_session(scripts, sid, account_id))
        else:
            views.append(_session(reads))
    return [v for v in views if v is not None and v.raw]


@dataclass(frozen=True)
class IncomingResult:
    outcome: str  # created | exists | nonumber
    sid: str | None = None
    queue_id: str | None = None  # the ring queue the call waits in


async def create_session(
    scripts: AsyncScripts, *, call_sid: str, from_: str, to: str
) -> IncomingResult:
    """Session for an incoming call (create_session.lua), in its ring queue if the number
    has one."""
    created = datetime.now(UTC)
    stamp = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # The listing indexes are ordered by dateCreated itself, to the millisecond it shows.
    ms = (created - _EPOCH) // timedelta(milliseconds=1)
    args = [keys.PREFIX, call_sid, from_, to, stamp, new_id("ses"), new_id("mem"), ms]
    reply = _text(await scripts.run("create_session", args))
    if reply[0] == "nonumber":
        return IncomingResult("nonumber")
    return IncomingResult(reply[0], reply[1], reply[2] or None)


async def set_agent_state(
    scripts: AsyncScripts, *, user_id: str, account_id: str, state: str
) -> tuple[str, str] | None:
    """SetAgentState (set_agent_state.lua): the agent's (state, reason) after the change,
    None if the user is not of the account."""
    reply = _text(
        await scripts.run("set_agent_state", [keys.PREFIX, user_id, account_id, state, now()])
    )
    return (reply[0], reply[1]) if reply else None


@dataclass(frozen=True)
class Outgoing:
    """A call an agent places (create_outgoing.lua), as the web process parsed it."""

    user_id: str
    kind: str  # 'phone' | 'user'
    ref: str  # E.164, or a user id or lower-cased email
    dialled: str  # as the agent entered it
    region: str  # the number's country, '' for a user
    countries: tuple[str, ...]  # DIAL_COUNTRIES, for an account without its own list
    caller_id: str | None  # asked for; used only if it is one of the account's numbers
    queue_id: str | None = None  # a progressive dial: the queue the answered call waits in


@dataclass(frozen=True)
class OutgoingResult:
    """created | exists | nouser | nodest | self | noqueue | notallowed (`allowed`: the
    countries)."""

    outcome: str
    sid: str | None = None
    allowed: str = ""
    session: SessionView | None = None


def _outgoing_args(
    call: Outgoing,
    *,
    account_id: str,
    call_sid: str,
    sid: str,
    agent_member: str,
    dest_member: str,
    actor: Actor,
    agent_job: tuple[str, str, str, str, list[str]] | None,
    dest_job: tuple[str, str, str, str, list[str]],
) -> list[Any]:
    created = datetime.now(UTC)
    stamp = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ms = (created - _EPOCH) // timedelta(milliseconds=1)
    args: list[Any] = [keys.PREFIX, account_id, call.user_id, call_sid, call.kind, call.ref]
    args += [call.dialled, call.region, ",".join(call.countries), call.caller_id or "", stamp]
    args += [sid, agent_member, dest_member, ms, actor.id, actor.name, call.queue_id or ""]
    flat_agent = [*agent_job[:4], *agent_job[4]] if agent_job else []
    return [*args, len(flat_agent), *flat_agent, *dest_job[:4], *dest_job[4]]


def _outgoing_result(reply: Any, reads: list[Any] | None = None) -> OutgoingResult:
    reply = _text(reply)
    if reply[0] in ("created", "exists"):
        session = _session(reads) if reads and reads[0] else None
        return OutgoingResult(reply[0], reply[1], session=session)
    if reply[0] == "notallowed":
        return OutgoingResult("notallowed", allowed=reply[1])
    return OutgoingResult(reply[0])


async def create_outgoing(
    scripts: AsyncScripts,
    call: Outgoing,
    *,
    account_id: str = "",
    call_sid: str = "",
    agent_member: str,
    dest_member: str,
    actor: Actor,
    agent_job: tuple[str, str, str, str, list[str]] | None,
    dest_job: tuple[str, str, str, str, list[str]],
    sid: str | None = None,
    render: bool = False,
) -> OutgoingResult:
    """An outgoing session (create_outgoing.lua): for a softphone's call (`call_sid`, no
    agent job) or click to call (`agent_job`, with the session read back if `render`)."""
    sid = sid or new_id("ses")
    args = _outgoing_args(
        call,
        account_id=account_id,
        call_sid=call_sid,
        sid=sid,
        agent_member=agent_member,
        dest_member=dest_member,
        actor=actor,
        agent_job=agent_job,
        dest_job=dest_job,
    )
    if not render:
        return _outgoing_result(await scripts.run("create_outgoing", args))
    reply, reads = await scripts.run_then_read("create_outgoing", args, _session_reads(sid))
    return _outgoing_result(reply, reads)


async def call_event(
    scripts: AsyncScripts,
    *,
    sid: str,
    mid: str,
    status: str,
    call_sid: str,
    seq: str,
    token: str = "",
) -> str:
    args = [keys.PREFIX, sid, mid, status, call_sid, seq, now(), token]
    return _text(await scripts.run("call_event", args))


async def conference_event(
    scripts: AsyncScripts,
    *,
    sid: str,
    event: str,
    conference_sid: str,
    call_sid: str,
    label: str,
    seq: str,
    token: str = "",
) -> str:
    args = [keys.PREFIX, sid, event, conference_sid, call_sid, label, seq, now(), token]
    return _text(await scripts.run("conference_event", args))


async def api_key(r: redis.asyncio.Redis, digest: str) -> dict[str, str] | None:
    raw = await r.hgetall(keys.api_key(digest))
    return {_text(k): _text(v) for k, v in raw.items()} or None


# --- worker (sync) ------------------------------------------------------------


@dataclass(frozen=True)
class DialClaim:
    to: str
    from_: str
    attempt: int
    # Removed while an earlier attempt was under way: dial nobody, end what it placed.
    removed: bool = False
    # A customer who waits for a ring queue's agent once connected: hold music till then.
    wait_music: bool = False
    # A queue's offer: how long its phone rings (the queue's ring timeout), else None.
    ring_timeout: int | None = None


@dataclass(frozen=True)
class ControlMember:
    id: str
    call_sid: str
    rank: int  # 0 invited, 1 ringing, 2 in the call, 3 final
    removed: bool
    hold: bool  # as Twilio last reported it
    want_hold: bool | None  # as asked through the API, None if never
    muted: bool
    want_muted: bool | None
    name: str


@dataclass(frozen=True)
class ControlState:
    """What the control job compares with Twilio: a session and its members' legs."""

    ended: bool
    members: list[ControlMember]


def control_state(r: redis.Redis, sid: str) -> ControlState | None:
    ended, ids = r.hget(keys.session(sid), "ended"), r.lrange(keys.session_members(sid), 0, -1)
    if ended is None:
        return None
    pipe = r.pipeline(transaction=False)
    for mid in ids:
        pipe.hmget(
            keys.member(sid, _text(mid)),
            "callSid", "_rank", "_removed", "_hold", "_wanthold", "muted", "_wantmute",
            "displayName", "identity",
        )  # fmt: skip
    members = []
    for mid, fields in zip(ids, pipe.execute(), strict=True):
        call_sid, rank, removed, hold, want_hold, muted, want_muted, name, ident = _text(fields)
        members.append(
            ControlMember(
                id=_text(mid),
                call_sid=call_sid or "",
                rank=int(rank or 0),
                removed=removed == "1",
                hold=hold == "1",
                want_hold=None if want_hold is None else want_hold == "1",
                muted=muted == "true",
                want_muted=None if want_muted is None else want_muted == "true",
                name=name or ident or "?",
            )
        )
    return ControlState(ended=_text(ended) == "true", members=members)


def member_removed(r: redis.Redis, sid: str, mid: str) -> bool:
    """Whether the member is still to be taken off the call, as of now."""
    return _text(r.hget(keys.member(sid, mid), "_removed")) == "1"


def log_entry(r: redis.Redis, scripts: Scripts, sid: str, message: str) -> None:
    """A line in the session's log for what the worker could not do (note.lua: with its
    event, like every other change)."""
    scripts.run("note", [keys.PREFIX, sid, now(), message], r)


def begin_dial(
    r: redis.Redis,
    scripts: Scripts,
    sid: str,
    mid: str,
    default_caller: str | None,
    lease_seconds: int,
    min_replicas: int = 0,
    wait_timeout_ms: int = 1000,
) -> DialClaim | str:
    """Claim a member for dialling, or say why not ('missing', 'final', 'dialled', 'busy'...,
    'unconfirmed': fewer than `min_replicas` replicas have the claim). The claim counts the
    attempt, and a retry looks for what an earlier attempt placed; so with replicas asked
    for, the claim must be on them before Twilio is called, or a failover could forget the
    attempt and its retry dial twice."""
    args = [keys.PREFIX, sid, mid, now(), default_caller or "", lease_seconds]
    if min_replicas:
        reply, acked = scripts.run_confirmed("begin_dial", args, r, min_replicas, wait_timeout_ms)
        reply = _text(reply)
        if reply[0] in ("dial", "removed-lookup") and acked < min_replicas:
            return "unconfirmed"
    else:
        reply = _text(scripts.run("begin_dial", client=r, args=args))
    if reply[0] == "removed-lookup":
        return DialClaim(to=reply[1], from_="", attempt=int(reply[2]), removed=True)
    if reply[0] != "dial":
        return reply[1]
    return DialClaim(
        to=reply[1],
        from_=reply[2],
        attempt=int(reply[3]),
        wait_music=reply[4] == "1",
        ring_timeout=int(reply[5]) if reply[5] else None,
    )


def conference_sid(r: redis.Redis, sid: str) -> str | None:
    """The CF sid of the session's conference, once a callback or a dial has reported it."""
    return _text(r.hget(keys.session(sid), "conferenceSid"))


def release_dial(r: redis.Redis, sid: str, mid: str) -> None:
    """Give up the claim of begin_dial, so a retry need not wait for the lease to lapse."""
    r.hdel(keys.member(sid, mid), "_lease")


def record_dial(
    r: redis.Redis, scripts: Scripts, sid: str, mid: str, call_sid: str, conference_sid: str
) -> str:
    args = [keys.PREFIX, sid, mid, call_sid, now(), conference_sid or ""]
    return _text(scripts.run("record_dial", client=r, args=args))


def settle_found_call(
    r: redis.Redis, scripts: Scripts, sid: str, mid: str, call_sid: str, status: str
) -> str:
    """Apply the status Twilio lists for a member's call as that call's own callback would
    (call_event.lua, no sequence number, no token): for a leg a retry found ended in the
    Calls list, whose callbacks never reached the service."""
    args = [keys.PREFIX, sid, mid, status, call_sid, "", now(), ""]
    return _text(scripts.run("call_event", client=r, args=args))


def run_timers(r: redis.Redis, scripts: Scripts, most: int = 100, queues: int = 10) -> int:
    """The queues' due timers, run once each, and a level-triggered look at a few queues'
    waiting calls (timers.lua): how many timers ran."""
    return int(scripts.run("timers", client=r, args=[keys.PREFIX, now(), most, queues]))


def fail_dial(r: redis.Redis, scripts: Scripts, sid: str, mid: str, message: str) -> str:
    return _text(scripts.run("fail_dial", client=r, args=[keys.PREFIX, sid, mid, now(), message]))
