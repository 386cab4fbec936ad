"""Live event subscribers of the bench: many `GET /sessions/events` streams (docs/events.md)
held by forked client processes of raw asyncio sockets, each stream read by one `Stream`,
each process commanded by the bench over a pipe.

A generic client (httpx) would spend more CPU per event than the server spends sending it,
and the clients share the machine's two cores with the server: so a client parses only what
it is asked for, on uvloop when it is installed. `Stream` splits what comes into events and
hands each to `event()` with the `time.monotonic()` at which its first bytes arrived
(CLOCK_MONOTONIC is one clock for every process of the machine), or, `counting`, only
counts their `id:` lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import socket
import time
from typing import Any

OPENED = b": connected\n\n"  # the stream's first comment: the server holds the subscription
READY_SECONDS = 30.0


class Stream(asyncio.Protocol):
    """One event stream: its status, then its events, parsed (`event`) or `counting`."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.answered = False
        self.opened = False
        self.status = 0
        self.buf = b""  # an event cut by the network
        self.buf_at = 0.0  # when its first bytes came
        self.counting = False
        self.count = 0  # events seen since the last `reset`
        self.end = b""  # the end of the previous read, for a Dropped cut in two
        self.dropped = False  # the server dropped this subscriber for falling behind
        self.keepalives = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def set_counting(self, counting: bool) -> None:
        """Parse events from now on, or only count them; the count starts again at 0."""
        if counting and not self.counting and self.buf:
            self.buf = b"\n" + self.buf  # an event cut short begins after a blank line
        self.counting, self.count = counting, 0

    def lowat(self, size: int) -> None:
        """Wake the client only once `size` bytes are in (1: at once). Setting it back to
        1 makes the kernel report what is already there."""
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.opened:
            self.head += data
            end = self.head.find(OPENED)
            if end < 0:
                if b"\r\n\r\n" in self.head and not self.head.startswith(b"HTTP/1.1 200"):
                    self.status = int(self.head[9:12])
                    self._answered()
                return
            self.status, self.opened = int(self.head[9:12]), True
            data, self.head = self.head[end + len(OPENED) :], b""
            self._answered()
        if b"Dropped" in data or b"event: Dropped" in self.end + data[:16]:
            self.dropped = True
        self.end = data[-16:]
        if self.counting:
            # "\nid: " is 5 bytes; the last 4 cannot hold one, and none of its suffixes
            # holds a newline, so a match across two reads is counted once.
            buf = self.buf + data
            self.count += buf.count(b"\nid: ")
            self.buf = buf[-4:]
            return
        # An event cut in two whose id line came with an earlier read is stamped then (HTTP/1.1
        # chunked framing leaves a few bytes behind every event: they are no event's).
        cut = (i := self.buf.find(b"id: ")) >= 0 and self.buf.find(b"\n", i) >= 0
        at = self.buf_at if cut else now
        *blocks, self.buf = (self.buf + data).split(b"\n\n")
        for block in blocks:
            event_id = name = payload = None
            for line in block.split(b"\n"):
                if line.startswith(b"id: "):
                    event_id = line[4:]
                elif line.startswith(b"event: "):
                    name = line[7:]
                elif line.startswith(b"data: "):
                    payload = line[6:]
                elif line.startswith(b": keep-alive"):
                    self.keepalives += 1
            if event_id is not None or name is not None:
                self.count += event_id is not None
                self.event(event_id, name, payload, at)
            at = now
        if blocks or not cut:
            self.buf_at = now

    def event(
        self, event_id: bytes | None, name: bytes | None, data: bytes | None, at: float
    ) -> None:
        """One event of the stream; `at` is when its first bytes came."""

    def _answered(self) -> None:
        if not self.answered:
            self.answered = True
            self.client.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._answered()


class Client:
    """The streams of one client process. The bench's command `(name, *args)` is answered
    with `do_<name>(*args)`; `close` ends the streams and the process."""

    stream = Stream

    def __init__(
        self, port: int, key: str, count: int, index: int, processes: int, stagger: float
    ) -> None:
        self.port, self.count, self.index, self.processes = port, count, index, processes
        self.stagger = stagger
        self.request = (
            f"GET /sessions/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self.streams: list[Any] = []
        self.pending = count
        self.ready: asyncio.Future[None] | None = None

    def opened(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and self.ready is not None and not self.ready.done():
            self.ready.set_result(None)

    async def main(self, pipe: multiprocessing.connection.Connection) -> None:
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        await asyncio.sleep(self.index * self.stagger)
        for _ in range(self.count):
            transport, stream = await loop.create_connection(
                lambda: self.stream(self), "127.0.0.1", self.port
            )
            stream.transport = transport  # uvloop may tell the protocol only later
            transport.write(self.request)
            self.streams.append(stream)
            await asyncio.sleep(self.stagger * self.processes)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.ready), READY_SECONDS)
        ports = [s.transport.get_extra_info("sockname")[1] for s in self.streams if s.transport]
        pipe.send((ports, [s.status for s in self.streams]))
        done = loop.create_future()

        def command() -> None:
            os.set_blocking(pipe.fileno(), True)  # uvloop's add_reader made it non-blocking
            what, *args = pipe.recv()
            if what != "close":
                pipe.send(getattr(self, f"do_{what}")(*args))
                return
            for s in self.streams:
                if s.transport is not None:
                    s.transport.close()
            loop.remove_reader(pipe.fileno())
            done.set_result(None)

        loop.add_reader(pipe.fileno(), command)
        await done
        await asyncio.sleep(0.1)  # the closes go out
        pipe.send("closed")


def _client_main(cls: type[Client], args: tuple[Any, ...], pipe: Any) -> None:
    try:
        import uvloop  # the cheapest loop there is: the clients share the machine's cores
    except ImportError:
        asyncio.run(cls(*args).main(pipe))
    else:
        uvloop.run(cls(*args).main(pipe))


class Subscribers:
    """`count` account streams of `key` over `processes` forked clients of class `client`
    (connections `stagger` s apart, as independent consoles would open them); `close` ends
    them."""

    def __init__(
        self,
        client: type[Client],
        port: int,
        key: str,
        count: int,
        processes: int = 1,
        stagger: float = 0.003,
    ) -> None:
        ctx = multiprocessing.get_context("fork")
        self.children: list[tuple[Any, multiprocessing.connection.Connection]] = []
        for k in range(processes):
            mine, theirs = ctx.Pipe(duplex=True)
            share = count // processes + (1 if k < count % processes else 0)
            args = (port, key, share, k, processes, stagger)
            proc = ctx.Process(target=_client_main, args=(client, args, theirs), daemon=True)
            proc.start()
            theirs.close()
            self.children.append((proc, mine))
        self.ports: list[int] = []
        self.statuses: list[int] = []
        for proc, pipe in self.children:
            if not pipe.poll(READY_SECONDS + count * stagger + 10):
                proc.kill()
                raise RuntimeError("an event subscriber client did not get ready")
            ports, statuses = pipe.recv()
            self.ports += ports
            self.statuses += statuses
        if self.statuses.count(200) != count:
            self.close()
            raise RuntimeError(f"event streams did not open: statuses {self.statuses}")

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.children if proc.pid is not None]

    def ask(self, *command: Any) -> list[Any]:
        """Every client's answer to `command`, in order."""
        for _, pipe in self.children:
            pipe.send(command)
        return [pipe.recv() for _, pipe in self.children]

    def close(self) -> None:
        for _, pipe in self.children:
            with contextlib.suppress(OSError):
                pipe.send(("close",))
        for proc, pipe in self.children:
            with contextlib.suppress(OSError, EOFError):
                if pipe.poll(10):
                    pipe.recv()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
