"""One Redis reader per web process for every live event subscriber it serves.

The reader blocks in one XREAD on the event streams of the accounts that have
subscribers here, renders each new event once and hands the same bytes to every
subscriber that wants it. A subscriber has a bounded queue: one that falls
`buffer` events behind (its client stopped reading) is dropped, with its queue
emptied and a last `Dropped` event to tell it so, and it resumes from its
Last-Event-ID. Nothing the reader does waits on a subscriber, so a slow one
slows neither the others nor the webhooks.

An account gaining its first subscriber needs the reader to read one more
stream. The reader also reads this process's wake stream, and an XADD there
ends its wait at once; Redis keeps the entry, so a wake sent before the reader
blocks again is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

import redis.asyncio
import redis.exceptions

from orchestrator import events, keys, metrics, redis_client
from orchestrator.redis_client import REDIS_ERRORS

log = logging.getLogger("orchestrator.events")
BLOCK_MS = 10_000
BATCH = 500
RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0)
WAKE_SECONDS = 600  # the wake stream of a process that died goes by itself


class Subscription:
    """One open stream: the account's events, or one session's.

    Its queue is a plain list the reader appends to and the stream takes whole, with one
    future to wake the stream: a delivery costs an append and, when the stream waits, one
    wake-up. The heartbeat needs no timer per wait either: one timer per subscription,
    moved on only when it fires early (the stream went on waiting after it was set).
    """

    __slots__ = (
        "_deadline",
        "_items",
        "_limit",
        "_timer",
        "_waiter",
        "account_id",
        "dropped",
        "session_id",
    )

    def __init__(self, account_id: str, session_id: str | None, buffer: int) -> None:
        self.account_id, self.session_id = account_id, session_id
        self._items: list[events.Event | bytes] = []
        self._limit = buffer
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self.dropped = False

    def offer(self, event: events.Event) -> bool:
        """Queues the event; False if the subscriber is too far behind (it is then dropped)."""
        if len(self._items) >= self._limit:
            self.drop("You fell too far behind the live events; resume with Last-Event-ID")
            return False
        self._items.append(event)
        if self._waiter is not None:
            self._wake()
        return True

    def end(self, reason: str) -> None:
        """After what it has queued, a last `Dropped`; dropped at once if that does not fit."""
        if self.dropped:
            return
        if len(self._items) >= self._limit:
            self.drop(reason)
            return
        self._items.append(events.message("Dropped", reason))
        self.dropped = True
        self._wake()

    def drop(self, reason: str) -> None:
        """What it had not read yet is dropped too: its Last-Event-ID is its last event."""
        if self.dropped:
            return
        self.dropped = True
        self._items = [events.message("Dropped", reason)]
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self, heartbeat: float) -> list[events.Event | bytes]:
        """Everything queued, in order, once there is something; [] if `heartbeat`
        seconds pass first. A `bytes` item (Dropped) is the last the stream gets."""
        if not self._items:
            loop = asyncio.get_running_loop()
            self._deadline = loop.time() + heartbeat
            if self._timer is None:
                self._timer = loop.call_at(self._deadline, self._expire)
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            except asyncio.CancelledError:
                self.close()
                raise
        items, self._items = self._items, []
        return items

    def _expire(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # not waiting: the next wait sets the timer again
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._expire)
        else:
            self._wake()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Hub:
    def __init__(self, redis_url: str, client: redis.asyncio.Redis, buffer: int) -> None:
        self._client = client  # the process's shared client: renders, positions, wakes
        # A client of its own: only the reader uses it, so its pool holds one connection.
        self._reader = redis_client.connect(redis_url, socket_timeout=BLOCK_MS / 1000 + 10)
        self._buffer = buffer
        self.renderer = events.Renderer(client)  # for the live events and catching up alike
        # account -> session id (None: every session) -> its subscribers here
        self._subscribers: dict[str, dict[str | None, set[Subscription]]] = {}
        self._positions: dict[str, str] = {}  # account -> the last event id read
        self._wake_key = keys.event_wakeups(
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        )
        self._wake_position = "0-0"
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, account_id: str, session_id: str | None) -> Subscription:
        """Every event committed after this returns reaches the subscription (some from
        just before may too; a resuming client skips what it has)."""
        sub = Subscription(account_id, session_id, self._buffer)
        by_session = self._subscribers.setdefault(account_id, {})
        by_session.setdefault(session_id, set()).add(sub)
        metrics.EVENT_SUBSCRIBERS.inc()
        if account_id not in self._positions:
            try:
                position = await events.position(self._client, account_id)
            except BaseException:
                self.unsubscribe(sub)
                raise
            if account_id not in self._positions and account_id in self._subscribers:
                self._positions[account_id] = position
                await self._wake()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="event reader")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        by_session = self._subscribers.get(sub.account_id)
        if by_session is None or sub not in by_session.get(sub.session_id, ()):
            return
        metrics.EVENT_SUBSCRIBERS.dec()
        subs = by_session[sub.session_id]
        subs.discard(sub)
        if not subs:
            del by_session[sub.session_id]
        if not by_session:  # the reader stops reading the account's stream
            del self._subscribers[sub.account_id]
            self._positions.pop(sub.account_id, None)

    def end_all(self, reason: str) -> None:
        """Ends every stream (the process is stopping): its clients reconnect to another
        process with Last-Event-ID at once, rather than when the shutdown's grace runs out."""
        for by_session in list(self._subscribers.values()):
            for subs in list(by_session.values()):
                for sub in list(subs):
                    sub.end(reason)
                    self.unsubscribe(sub)

    async def _wake(self) -> None:
        self._idle.set()
        with contextlib.suppress(*REDIS_ERRORS):  # the reader is retrying anyway
            pipe = self._client.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, WAKE_SECONDS)
            await pipe.execute()

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._positions:
                self._idle.clear()
                await self._idle.wait()
                continue
            streams = {keys.account_events(a): p for a, p in self._positions.items()}
            streams[self._wake_key] = self._wake_position
            try:
                reply = await self._reader.xread(streams, count=BATCH, block=BLOCK_MS)
                if reply:
                    await self._deliver(reply)
                failures = 0
            except REDIS_ERRORS as exc:
                # Nothing is lost meanwhile: the events wait in Redis after each position.
                self.renderer.forget()  # a failover may have lost what it had read
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                if failures == 0:
                    log.warning("live events: Redis unavailable (%s); retrying", exc)
                failures += 1
                await asyncio.sleep(delay)
            except Exception:
                log.exception("live events: reader failed; retrying")
                await asyncio.sleep(RETRY_SECONDS[-1])

    async def _deliver(self, reply: list) -> None:
        rendered = []
        for key, entries in reply:
            key = key.decode()
            if key == self._wake_key:
                self._wake_position = entries[-1][0].decode()
                continue
            account = keys.account_of_events(key)
            if account in self._positions:
                rendered.append((account, entries, await self.renderer.render(entries)))
        # Only once all of them are rendered: a read that failed is read again, whole.
        for account, entries, batch in rendered:
            if account in self._positions:
                self._positions[account] = entries[-1][0].decode()
            for event in batch:
                self._fan_out(account, event)

    def _fan_out(self, account: str, event: events.Event) -> None:
        by_session = self._subscribers.get(account)
        if not by_session:
            return
        targets = [*by_session.get(None, ())]
        if event.session_id is not None:  # else an event of the account (AgentStateChanged)
            targets += by_session.get(event.session_id, ())
        behind = [sub for sub in targets if not sub.offer(event)]
        for sub in behind:
            self.unsubscribe(sub)
        metrics.EVENTS_SENT.inc(len(targets) - len(behind))
        if behind:
            metrics.EVENT_DROPS.inc(len(behind))
            log.warning(
                "live events: dropped %d subscriber(s) of account %s that fell %d events behind",
                len(behind),
                account,
                self._buffer,
            )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                await self._task
        with contextlib.suppress(*REDIS_ERRORS):
            await self._client.delete(self._wake_key)
        await self._reader.aclose()
