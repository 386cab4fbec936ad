"""Lua scripts that make each state change one atomic Redis round trip.

Every script is the shared helpers (`HELPERS`, in that order: each file uses only
those before it) followed by its own file, so the key names (`_keys.lua`, the
same as orchestrator/keys.py) and the member state rules live in one place.

The worker and the CLI call them through redis-py's Script objects (`Scripts`).
The web process calls them through `AsyncScripts`, which sends the script calls
that concurrent requests make in the same turn of the event loop as one
MULTI/EXEC: one connection checkout, one write and one read for all of them,
where redis-py would spend ~35 µs of CPU per command on its pool alone. Each
caller still gets its own reply or its own error.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.client
from redis.exceptions import NoScriptError, ResponseError

from orchestrator import jobs
from orchestrator.errors import ApiError

# The shared helpers, by concern, in the order they are concatenated: a Lua local is
# visible only below its definition, so each file uses only what the files before it define.
HELPERS = (
    "_keys",  # every key name, from the prefix in ARGV[1]
    "_json",  # values and members as JSON
    "_changes",  # what a script changed, for the live events
    "_render",  # members' JSON versions and the cached members' JSON
    "_jobs",  # the control job template's copies, and dial jobs
    "_agents",  # which agents each ring queue has free
    "_sessions",  # the session's log, listing indexes, ending and retention
    "_members",  # members' call state, finding, adding and removing them
    "_callbacks",  # what Twilio's callbacks and the dials report, applied once
    "_queues",  # ring queues: agent states, offers, the first answer, timers
    "_events",  # the script's last step: its changes' entries in the event streams
)

NAMES = (
    "render",
    "create_session",
    "create_outgoing",
    "invite",
    "begin_dial",
    "record_dial",
    "fail_dial",
    "call_event",
    "conference_event",
    "remove_member",
    "update_member",
    "patch_session",
    "redirect",
    "end_call",
    "list_sessions",
    "my_sessions",
    "note",
    "set_agent_state",
    "queue_agent",
    "timers",
)


# A script's own file is the body of a function, so that whichever `return` ends it,
# flush_events (_events.lua) then writes the events of what it changed.
_RUN = """
local function body()
{}
end
local reply = body()
flush_events()
return reply
"""


# With REDIS_MIN_REPLICAS set, every change the web process answers (API operations and
# Twilio's webhooks alike) is answered only once that many replicas have it (WAIT), so a
# failover cannot lose a change that was answered. These only read.
READS = frozenset({"render", "list_sessions", "my_sessions"})


@dataclass(frozen=True)
class Retention:
    """How long Redis keeps what is no longer live: an ended session (its hash, members,
    log) and the live events. Every process of a deployment must agree on them, as on
    the scripts they are part of."""

    sessions: int = 7 * 24 * 3600
    events: int = 3600


@cache
def source(name: str, retention: Retention = Retention()) -> str:
    """The script `name` as Redis runs it: the retention header, the helpers in their
    declared order, then its own file as the body of a function."""
    folder = resources.files("orchestrator") / "lua"
    own = (folder / f"{name}.lua").read_text()
    header = (
        "-- How long ended sessions and live events are kept (orchestrator/settings.py).\n"
        f"local RETAIN_SECONDS, EVENTS_KEEP_SECONDS = {retention.sessions}, {retention.events}\n"
    )
    helpers = "".join(f"-- {h}.lua\n" + (folder / f"{h}.lua").read_text() for h in HELPERS)
    return header + helpers + _RUN.format(own)


def _missing_template(reply: Any) -> bool:
    """A script refused to change anything: the control job template it copies is gone
    (Redis lost its data); install it and run the script again."""
    return isinstance(reply, ResponseError) and str(reply).startswith("NOTEMPLATE")


class Scripts:
    """The scripts registered on one sync client (worker, CLI)."""

    def __init__(self, client: redis.Redis, retention: Retention = Retention()) -> None:
        self._scripts = {n: client.register_script(source(n, retention)) for n in NAMES}

    def run(self, name: str, args: list[Any], client: redis.Redis) -> Any:
        try:
            return self._scripts[name](args=args, client=client)
        except ResponseError as exc:
            if not _missing_template(exc):
                raise
            jobs.install_control_template(client)
            return self._scripts[name](args=args, client=client)

    def run_confirmed(
        self, name: str, args: list[Any], client: redis.Redis, replicas: int, timeout_ms: int
    ) -> tuple[Any, int]:
        """The script's reply and how many replicas have its writes (WAIT, on the same
        connection: a pipeline holds one), for a change that must outlive a failover
        before the worker acts on it at Twilio."""
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            self._scripts[name](args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            reply, acked = pipe.execute(raise_on_error=False)
            if attempt == 1 and _missing_template(reply):
                jobs.install_control_template(client)
                continue
            if isinstance(reply, Exception):
                raise reply
            return reply, int(acked)
        raise AssertionError("unreachable")


Read = tuple[Any, ...]  # a plain read command, e.g. ("GET", key)


@dataclass
class _Call:
    sha: str
    args: list[Any]
    reads: tuple[Read, ...]
    future: asyncio.Future[Any]
    confirm: bool = False


class _ConfirmedPipeline(redis.asyncio.client.Pipeline):
    """A MULTI/EXEC followed, on the same connection, by WAIT: WAIT counts the replicas
    that have every write of its own connection, so it must follow them there."""

    replicas = 0
    timeout_ms = 0
    acked: int | None = None

    async def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: Any):
        result = await super()._execute_transaction(connection, commands, raise_on_error)
        if self.replicas:
            await connection.send_command("WAIT", self.replicas, self.timeout_ms)
            self.acked = int(await connection.read_response())
        return result


class NotReplicated(ApiError):
    """An API change Redis applied but fewer replicas than REDIS_MIN_REPLICAS confirmed in
    time: it stands on the primary, and may not survive a failover right now."""

    def __init__(self, replicas: int, timeout_ms: int) -> None:
        super().__init__(
            503,
            "ServiceUnavailable",
            f"The change was made, but fewer than {replicas} Redis replica(s) confirmed it "
            f"within {timeout_ms} ms; it may not survive a failover. Retrying is safe.",
            headers={"Retry-After": "1"},
        )


class AsyncScripts:
    """Script calls on an asyncio client, pipelined across concurrent callers."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        min_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        retention: Retention = Retention(),
    ) -> None:
        self._client = client
        self._replicas, self._wait_ms = min_replicas, wait_timeout_ms
        texts = {n: source(n, retention) for n in NAMES}
        self._sha = {n: hashlib.sha1(text.encode()).hexdigest() for n, text in texts.items()}
        self._source = {self._sha[n]: text for n, text in texts.items()}
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    def run(self, name: str, args: list[Any]) -> asyncio.Future[Any]:
        """The script's reply (await it); a Redis error is raised to this caller alone."""
        return self._queue(name, args, ())

    def run_then_read(
        self, name: str, args: list[Any], reads: tuple[Read, ...]
    ) -> asyncio.Future[tuple[Any, list[Any]]]:
        """(the script's reply, the replies of `reads`), the reads run right after the script
        with nothing in between. Large values go out this way, not through the script: Lua
        copies and collects every string it returns (~30 µs for 25 KB; GET takes 1 µs)."""
        return self._queue(name, args, reads)

    def _queue(self, name: str, args: list[Any], reads: tuple[Read, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        confirm = self._replicas > 0 and name not in READS
        self._pending.append(_Call(self._sha[name], args, reads, future, confirm))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)  # after the callers that are ready in this turn
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self._execute(batch)
        except Exception as exc:  # the connection failed: every caller hears of it
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(copy.copy(exc))  # each its own traceback
            return
        except BaseException:
            for call in batch:
                call.future.cancel()
            raise
        for call, (reply, reads) in zip(batch, results, strict=True):
            if call.future.done():  # its caller gave up (request cancelled)
                continue
            error = next((r for r in (reply, *reads) if isinstance(r, Exception)), None)
            if error is not None:
                call.future.set_exception(error)
            else:
                call.future.set_result((reply, reads) if call.reads else reply)

    async def _execute(self, batch: list[_Call]) -> list[tuple[Any, list[Any]]]:
        """One MULTI/EXEC for the batch: each call's reads see exactly what its script left."""
        results = await self._transaction(batch, "EVALSHA")
        missing = [i for i, (reply, _) in enumerate(results) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted or its script cache was flushed: EVAL loads them again
            again = await self._transaction([batch[i] for i in missing], "EVAL")
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        stale = [i for i, (reply, _) in enumerate(results) if _missing_template(reply)]
        if stale:  # they changed nothing: run them again once the template is back
            await jobs.install_control_template(self._client)
            again = await self._transaction([batch[i] for i in stale], "EVAL")
            for i, result in zip(stale, again, strict=True):
                results[i] = result
        return results

    async def _transaction(self, calls: list[_Call], how: str) -> list[tuple[Any, list[Any]]]:
        client = self._client
        pipe = _ConfirmedPipeline(client.connection_pool, client.response_callbacks, True, None)
        if any(call.confirm for call in calls):
            pipe.replicas, pipe.timeout_ms = self._replicas, self._wait_ms
        for call in calls:
            script = call.sha if how == "EVALSHA" else self._source[call.sha]
            pipe.execute_command(how, script, 0, *call.args)
            for read in call.reads:
                pipe.execute_command(*read)
        replies = iter(await pipe.execute(raise_on_error=False))
        results = [(next(replies), [next(replies) for _ in call.reads]) for call in calls]
        if pipe.acked is not None and pipe.acked < self._replicas:
            unconfirmed = NotReplicated(self._replicas, self._wait_ms)
            # A script that failed changed nothing: its own error says more.
            results = [
                (unconfirmed, reads) if call.confirm and not isinstance(reply, Exception) else
                (reply, reads)
                for call, (reply, reads) in zip(calls, results, strict=True)
            ]  # fmt: skip
        return results

    async def aclose(self) -> None:
        """Wait for the calls already sent (at shutdown, before the client closes)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
