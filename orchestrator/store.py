"""Redis state: the key layout and every read and write of it.

Keys (prefix `orch:`):
  account:{aid}                      hash  id, name, dateCreated
  account:{aid}:user:{ref}           str   user id, for ref = the id or the lower-cased email
  number:{e164}                      str   account id owning the number
  user:{uid}                         hash  id, accountId, email, name, avatarUrl
  apikey:{sha256}                    hash  id, accountId, roles (comma separated), dateCreated,
                                           userId and userName for a key that acts as a user
  apikeyid:{id}                      str   the key's sha256, to revoke it by id
  account:{aid}:apikeys              set   the account's key ids
  session:{sid}                      hash  SessionInfo scalars (+ _number, the called number)
  session:{sid}:members              list  member ids in order of joining
  session:{sid}:member:{mid}         hash  SessionMemberInfo (+ _rank, _hold, _to, ... internals)
  session:{sid}:active               hash  dialled address -> member id, while not final
  session:{sid}:log                  list  JSON {date, message}
  session:{sid}:membersjson          str   the members' JSON, joined, until one changes (1 h)
  call:{CallSid}                     str   "{sid} {mid}", to find a member from a callback
  idem:{token}                       str   a callback's I-Twilio-Idempotency-Token, for an hour
  cps                                zset  recent dial times (workers/ratelimit.py)
  rq:...                             RQ's own keys; the dial job is rq:job:dial-{mid}

Every state change is one script call; web handlers use the async functions,
the worker the sync ones. Each returns plain data, never Redis replies.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio

from orchestrator.dto import SessionView
from orchestrator.scripts import AsyncScripts, Read, Scripts

PREFIX = "orch:"


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
    key = f"{PREFIX}session:{sid}"
    return (("HGETALL", key), ("GET", f"{key}:membersjson"), ("LRANGE", f"{key}:log", 0, -1))


def _session(reads: list[Any]) -> SessionView:
    raw, members, log = reads
    raw = {k.decode(): v.decode() for k, v in raw.items()}
    return SessionView(raw, [members], log)


# --- web (asyncio) ----------------------------------------------------------


async def get_session(scripts: AsyncScripts, sid: str, account_id: str) -> SessionView | None:
    """The session, or None if `account_id` has no session `sid`."""
    args = [PREFIX, sid, account_id]
    found, reads = await scripts.run_then_read("render", args, _session_reads(sid))
    return _session(reads) if found == 1 else None


@dataclass(frozen=True)
class InviteResult:
    outcome: str  # created | exists | notfound | ended | nouser
    member_id: str | None = None
    session: SessionView | None = None


async def invite(
    scripts: AsyncScripts,
    *,
    sid: str,
    account_id: str,
    kind: str,
    ref: str,
    member_id: str,
    caller_id: str | None,
    job: tuple[str, str, str, str, list[str]],
) -> InviteResult:
    """Add a member and enqueue its dial job atomically (see invite.lua).

    `job` is (queue key, queues-set key, job key, job id, flat job hash).
    """
    qkey, queues, jobkey, jobid, mapping = job
    args = [PREFIX, sid, account_id, kind, ref, member_id, now(), caller_id or ""]
    args += [qkey, queues, jobkey, jobid, *mapping]
    reply, reads = await scripts.run_then_read("invite", args, _session_reads(sid))
    outcome = _text(reply[0])
    if outcome in ("created", "exists"):
        return InviteResult(outcome, _text(reply[1]), _session(reads))
    return InviteResult(outcome)


async def create_session(
    scripts: AsyncScripts, *, call_sid: str, from_: str, to: str
) -> tuple[str, str | None]:
    """Session for an incoming call: ('created'|'exists', sid) or ('nonumber', None)."""
    args = [PREFIX, call_sid, from_, to, now(), new_id("ses"), new_id("mem")]
    reply = _text(await scripts.run("create_session", args))
    return reply[0], (reply[1] if len(reply) > 1 else None)


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
    args = [PREFIX, sid, mid, status, call_sid, seq, now(), token]
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
    args = [PREFIX, sid, event, conference_sid, call_sid, label, seq, now(), token]
    return _text(await scripts.run("conference_event", args))


async def api_key(r: redis.asyncio.Redis, digest: str) -> dict[str, str] | None:
    raw = await r.hgetall(f"{PREFIX}apikey:{digest}")
    return {_text(k): _text(v) for k, v in raw.items()} or None


# --- worker (sync) ------------------------------------------------------------


@dataclass(frozen=True)
class DialClaim:
    to: str
    from_: str
    attempt: int


def begin_dial(
    r: redis.Redis,
    scripts: Scripts,
    sid: str,
    mid: str,
    default_caller: str | None,
    lease_seconds: int,
) -> DialClaim | str:
    """Claim a member for dialling, or say why not ('missing', 'final', 'dialled', 'busy'...)."""
    args = [PREFIX, sid, mid, now(), default_caller or "", lease_seconds]
    reply = _text(scripts["begin_dial"](args=args, client=r))
    if reply[0] != "dial":
        return reply[1]
    return DialClaim(to=reply[1], from_=reply[2], attempt=int(reply[3]))


def conference_sid(r: redis.Redis, sid: str) -> str | None:
    """The CF sid of the session's conference, once a callback or a dial has reported it."""
    return _text(r.hget(f"{PREFIX}session:{sid}", "conferenceSid"))


def release_dial(r: redis.Redis, sid: str, mid: str) -> None:
    """Give up the claim of begin_dial, so a retry need not wait for the lease to lapse."""
    r.hdel(f"{PREFIX}session:{sid}:member:{mid}", "_lease")


def record_dial(
    r: redis.Redis, scripts: Scripts, sid: str, mid: str, call_sid: str, conference_sid: str
) -> str:
    args = [PREFIX, sid, mid, call_sid, now(), conference_sid or ""]
    return _text(scripts["record_dial"](args=args, client=r))


def fail_dial(r: redis.Redis, scripts: Scripts, sid: str, mid: str, message: str) -> str:
    return _text(scripts["fail_dial"](args=[PREFIX, sid, mid, now(), message], client=r))
