"""Lua scripts that make each state change one atomic Redis round trip.

Every script is `_common.lua` followed by its own file, so the key layout and
the member state rules live in one place.

The worker and the CLI call them through redis-py's Script objects (`Scripts`).
The web process calls them through `AsyncScripts`, which sends the script calls
that concurrent requests make in the same turn of the event loop as one
pipeline: one connection checkout, one write and one read for all of them,
where redis-py would spend ~35 µs of CPU per command on its pool alone. Each
script still runs atomically on its own, and each caller gets its own reply or
its own error.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

NAMES = (
    "render",
    "create_session",
    "invite",
    "begin_dial",
    "record_dial",
    "fail_dial",
    "call_event",
    "conference_event",
)


@cache
def source(name: str) -> str:
    folder = resources.files("orchestrator") / "lua"
    return (folder / "_common.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


class Scripts:
    """The scripts registered on one sync client (worker, CLI)."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts = {name: client.register_script(source(name)) for name in NAMES}

    def __getitem__(self, name: str) -> Any:
        return self._scripts[name]


_Call = tuple[str, list[Any], "asyncio.Future[Any]"]


class AsyncScripts:
    """Script calls on an asyncio client, pipelined across concurrent callers."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._sha = {n: hashlib.sha1(source(n).encode()).hexdigest() for n in NAMES}
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    def run(self, name: str, args: list[Any]) -> asyncio.Future[Any]:
        """The script's reply (await it); Redis errors are raised to this caller."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((name, args, future))
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
            replies = await self._execute([(self._sha[name], args) for name, args, _ in batch])
        except Exception as exc:  # the connection failed: every caller hears of it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(copy.copy(exc))  # each its own traceback
            return
        except BaseException:
            for *_, future in batch:
                future.cancel()
            raise
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (request cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for sha, args in calls:
            pipe.execute_command("EVALSHA", sha, 0, *args)
        replies = await pipe.execute(raise_on_error=False)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted or its script cache was flushed: EVAL loads them again
            by_sha = {sha: name for name, sha in self._sha.items()}
            pipe = self._client.pipeline(transaction=False)
            for i in missing:
                sha, args = calls[i]
                pipe.execute_command("EVAL", source(by_sha[sha]), 0, *args)
            for i, reply in zip(missing, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        return replies

    async def aclose(self) -> None:
        """Wait for the calls already sent (at shutdown, before the client closes)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
