"""An account's live events (SPEC 8): its event stream in Redis, read back as
server-sent events.

The scripts write the stream (flush_events in `lua/_common.lua`): one entry per
change, in the same script as the change, holding what the session's SessionInfo
is made of right after it. Reading an entry back renders exactly the SessionInfo
that GET would have answered at that moment, with the same code, so a client that
replays the events of a session sees every state it went through, in order.

Entry fields: `@sid`, `@events` (comma separated, SessionInfoChanged last), `@log`
(how many log entries the session had: the log only grows, so its first `@log`
entries are the log then), `@members` (the members' JSON), then the session hash's
own fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from orchestrator.dto import SessionView

PREFIX = "orch:"
EVERY_CHANGE = "SessionInfoChanged"
_ID = re.compile(r"^(\d{1,19})-(\d{1,19})$")
_PAGE = 500  # entries per XRANGE while catching a subscriber up


def stream_key(account_id: str) -> str:
    return f"{PREFIX}account:{account_id}:events"


def account_of(key: bytes | str) -> str:
    text = key.decode() if isinstance(key, bytes) else key
    return text[len(PREFIX) + len("account:") : -len(":events")]


def parse_id(text: str) -> tuple[int, int] | None:
    """A stream entry id ("1733112345678-0") as a comparable pair; None if it is not one."""
    match = _ID.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    order: tuple[int, int]
    session_id: str
    names: tuple[str, ...]
    frame: bytes  # the whole server-sent event, every name of it, ready to write


def frame(event_id: str, names: tuple[str, ...], data: bytes) -> bytes:
    """The change's specific events first, without an id, then SessionInfoChanged with it:
    a client cut off in between resumes from the previous id and hears them all again."""
    parts = []
    for name in names:
        if name == EVERY_CHANGE:
            parts.append(b"id: " + event_id.encode() + b"\n")
        parts += (b"event: ", name.encode(), b"\ndata: ", data, b"\n\n")
    return b"".join(parts)


def message(name: str, text: str) -> bytes:
    """A server-sent event of the stream itself (Dropped, Reset), with no id."""
    data = json.dumps({"message": text}).encode()
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _fields(raw: dict[bytes, bytes]) -> tuple[str, tuple[str, ...], int, bytes, dict[str, str]]:
    sid = raw[b"@sid"].decode()
    names = tuple(raw[b"@events"].decode().split(","))
    count = int(raw[b"@log"])
    members = raw.get(b"@members") or b""
    session = {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"@")}
    return sid, names, count, members, session


async def render(
    r: redis.asyncio.Redis, entries: list[tuple[bytes, dict[bytes, bytes]]]
) -> list[Event]:
    """The entries as events, their logs read in one round trip (each session's once)."""
    decoded = [(entry_id.decode(), *_fields(raw)) for entry_id, raw in entries]
    longest: dict[str, int] = {}
    for _, sid, _, count, _, _ in decoded:
        longest[sid] = max(count, longest.get(sid, 0))
    pipe = r.pipeline(transaction=False)
    for sid, count in longest.items():
        pipe.lrange(f"{PREFIX}session:{sid}:log", 0, count - 1)
    logs = dict(zip(longest, await pipe.execute(), strict=True))
    events = []
    for entry_id, sid, names, count, members, session in decoded:
        view = SessionView(session, [members] if members else [], logs[sid][:count])
        data = b'{"sessionId":' + json.dumps(sid).encode() + b',"session":' + view.to_json()
        order = parse_id(entry_id)
        assert order is not None
        events.append(Event(entry_id, order, sid, names, frame(entry_id, names, data + b"}")))
    return events


async def position(r: redis.asyncio.Redis, account_id: str) -> str:
    """The id of the account's newest event ("0-0" if none): live reading starts after it."""
    newest = await r.xrevrange(stream_key(account_id), count=1)
    return newest[0][0].decode() if newest else "0-0"


async def lost_since(r: redis.asyncio.Redis, account_id: str, after: str) -> bool:
    """Whether events after `after` may be gone (older than the stream keeps): the oldest
    one kept is newer, or none is kept at all. "0-0" asks for every event kept."""
    if after == "0-0":
        return False
    oldest = await r.xrange(stream_key(account_id), count=1)
    if not oldest:
        return True
    return parse_id(oldest[0][0].decode()) > parse_id(after)  # type: ignore[operator]


async def since(
    r: redis.asyncio.Redis, account_id: str, after: str, session_id: str | None
) -> AsyncIterator[Event]:
    """Every kept event after `after` (of one session, if given), a page at a time."""
    key = stream_key(account_id)
    wanted = None if session_id is None else session_id.encode()
    while True:
        page: list[Any] = await r.xrange(key, min=f"({after}", count=_PAGE)
        if not page:
            return
        after = page[-1][0].decode()
        chosen = [e for e in page if wanted is None or e[1].get(b"@sid") == wanted]
        if chosen:
            for event in await render(r, chosen):
                yield event
        if len(page) < _PAGE:
            return
