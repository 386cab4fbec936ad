"""An account's live events (docs/events.md): its event stream in Redis, read back as
server-sent events.

The scripts write the stream (flush_events in `lua/_events.lua`): one entry per
change, in the same script as the change, holding what the session's SessionInfo
is made of right after it. Reading an entry back renders exactly the SessionInfo
that GET would have answered at that moment, with the same code, so a client that
replays the events of a session sees every state it went through, in order.

Entry fields: `@sid`, `@events` (comma separated, SessionInfoChanged last), `@log`
(how many log entries the session had: the log only grows, so its first `@log`
entries are the log then), `@members` (the version of each member's JSON then,
VERSION_WIDTH hex digits apiece; the texts are in the session's memberversions hash),
then the session hash's own fields. Log lines and versions never change once written,
so a `Renderer` keeps those it has read and asks Redis only for new ones.

An agent's entry (lua/_queues.lua's set_agent) has `@agent` (the user id) instead of
`@sid`, `@events` = AgentStateChanged, and the event's data as its other fields (userId,
agentState, agentStateReason): it is an event of the account, never of one session.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from orchestrator import keys
from orchestrator.dto import SessionView

EVERY_CHANGE = "SessionInfoChanged"
AGENT_STATE_CHANGED = "AgentStateChanged"
_AGENT_FIELDS = ("userId", "agentState", "agentStateReason")
_ID = re.compile(r"^(\d{1,19})-(\d{1,19})$")
_PAGE = 500  # entries per XRANGE while catching a subscriber up
VERSION_WIDTH = 6  # hex digits per member in an entry's @members (lua/_render.lua)


def parse_id(text: str) -> tuple[int, int] | None:
    """A stream entry id ("1733112345678-0") as a comparable pair; None if it is not one."""
    match = _ID.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    order: tuple[int, int]
    session_id: str | None  # None: an event of the account (AgentStateChanged), not a session's
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


def agent_event(entry_id: str, raw: dict[bytes, bytes]) -> Event:
    """An agent's entry as its one event, with its id: AgentStateChanged, whose data is
    {userId, agentState, agentStateReason}. Nothing to read from Redis."""
    data = {name: raw.get(name.encode(), b"").decode() for name in _AGENT_FIELDS}
    body = json.dumps(data, separators=(",", ":")).encode()
    order = parse_id(entry_id)
    assert order is not None
    text = b"id: " + entry_id.encode() + b"\nevent: " + AGENT_STATE_CHANGED.encode()
    return Event(entry_id, order, None, (AGENT_STATE_CHANGED,), text + b"\ndata: " + body + b"\n\n")


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


class _Seen:
    """What a renderer has read of one session: its log's first lines, member versions."""

    __slots__ = ("log", "touched", "versions")

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.versions: dict[bytes, bytes] = {}
        self.touched = 0.0


class Renderer:
    """Renders stream entries as events, asking Redis only for the log lines and member
    versions it has not read before (neither changes once written): a change to a
    session of a hundred members costs one member's JSON, not a hundred.

    It remembers at most the `sessions` it rendered last, and none it has not rendered
    for `idle_seconds`: its memory follows the calls that are changing, not every call
    of the day. A session it forgot and renders again costs a read of its whole log.
    `forget()` drops all of it (after Redis failed over, say: a write the old primary
    lost may read differently now).
    """

    def __init__(
        self, r: redis.asyncio.Redis, sessions: int = 4096, idle_seconds: float = 120.0
    ) -> None:
        self._redis = r
        self._limit = sessions
        self._idle = idle_seconds
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        # One render at a time: the live reader and a resuming stream's replay share what
        # was read, and two renders reading the same new log lines at once would both
        # append them (each reads from what the other has not appended yet).
        self._rendering = asyncio.Lock()

    def forget(self) -> None:
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)

    def _session(self, sid: str, now: float) -> _Seen:
        seen = self._seen.get(sid)
        if seen is None:
            seen = self._seen[sid] = _Seen()
        else:
            self._seen.move_to_end(sid)
        seen.touched = now
        oldest = next(iter(self._seen.values()))
        while len(self._seen) > self._limit or oldest.touched < now - self._idle:
            self._seen.popitem(last=False)
            oldest = next(iter(self._seen.values()))
        return seen

    async def render(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Event]:
        """The entries as events, after one round trip for what is new to this renderer."""
        async with self._rendering:
            return await self._render(entries)

    async def _render(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Event]:
        decoded: list[tuple[Any, ...]] = []
        logs: dict[str, tuple[_Seen, int]] = {}
        versions: dict[str, tuple[_Seen, set[bytes]]] = {}
        now = time.monotonic()
        for entry_id, raw in entries:
            if b"@agent" in raw:
                decoded.append((entry_id.decode(), raw))
                continue
            sid, names, count, members, session = _fields(raw)
            fields = [
                b"%d:%s" % (at, members[i : i + VERSION_WIDTH])
                for at, i in enumerate(range(0, len(members), VERSION_WIDTH), 1)
            ]
            seen = self._session(sid, now)
            if count > len(seen.log) and count > logs.get(sid, (seen, 0))[1]:
                logs[sid] = (seen, count)
            missing = [f for f in fields if f not in seen.versions]
            if missing:
                versions.setdefault(sid, (seen, set()))[1].update(missing)
            decoded.append((entry_id.decode(), sid, names, count, fields, session, seen))
        if logs or versions:
            await self._read(logs, versions)
        events = []
        for item in decoded:
            if len(item) == 2:
                events.append(agent_event(*item))
                continue
            entry_id, sid, names, count, fields, session, seen = item
            members = b",".join(seen.versions.get(f, b"") for f in fields)
            view = SessionView(session, [members] if members else [], seen.log[:count])
            data = b'{"sessionId":' + json.dumps(sid).encode() + b',"session":' + view.to_json()
            order = parse_id(entry_id)
            assert order is not None
            events.append(Event(entry_id, order, sid, names, frame(entry_id, names, data + b"}")))
        return events

    async def _read(
        self, logs: dict[str, tuple[_Seen, int]], versions: dict[str, tuple[_Seen, set[bytes]]]
    ) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for sid, (seen, count) in logs.items():
            pipe.lrange(keys.session_log(sid), len(seen.log), count - 1)
        asked = []
        for sid, (seen, wanted) in versions.items():
            names = sorted(wanted)
            pipe.hmget(keys.member_versions(sid), names)
            asked.append((seen, names))
        replies = await pipe.execute()
        for (seen, _), lines in zip(logs.values(), replies, strict=False):
            seen.log.extend(lines)
        for (seen, names), texts in zip(asked, replies[len(logs) :], strict=True):
            for name, text in zip(names, texts, strict=True):
                if text is not None:  # else expired with its session: rendered without it
                    seen.versions[name] = text

    async def since(
        self, account_id: str, after: str, session_id: str | None
    ) -> AsyncIterator[Event]:
        """Every kept event after `after` (of one session, if given: then no agent's
        event, which has no `@sid`), a page at a time."""
        key = keys.account_events(account_id)
        wanted = None if session_id is None else session_id.encode()
        while True:
            page: list[Any] = await self._redis.xrange(key, min=f"({after}", count=_PAGE)
            if not page:
                return
            after = page[-1][0].decode()
            chosen = [e for e in page if wanted is None or e[1].get(b"@sid") == wanted]
            if chosen:
                for event in await self.render(chosen):
                    yield event
            if len(page) < _PAGE:
                return


async def position(r: redis.asyncio.Redis, account_id: str) -> str:
    """The id of the account's newest event ("0-0" if none): live reading starts after it."""
    newest = await r.xrevrange(keys.account_events(account_id), count=1)
    return newest[0][0].decode() if newest else "0-0"


async def lost_since(r: redis.asyncio.Redis, account_id: str, after: str) -> bool:
    """Whether events after `after` may be gone (older than the stream keeps): the oldest
    one kept is newer, or none is kept at all. "0-0" asks for every event kept."""
    if after == "0-0":
        return False
    oldest = await r.xrange(keys.account_events(account_id), count=1)
    if not oldest:
        return True
    return parse_id(oldest[0][0].decode()) > parse_id(after)  # type: ignore[operator]
