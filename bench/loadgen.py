"""The HTTP/1.1 load generator: raw asyncio, keep-alive, pre-serialised requests.

wrk is not installed on this machine and a generic client (httpx, aiohttp) spends more CPU
per request than the server under test, which would make the bench measure itself. On two
cores the generator shares the CPU with the server, so it does as little as it can per
request: requests are bytes built before the clock starts, a response is parsed only as far
as its status line and Content-Length, latencies are integers from `perf_counter_ns`. It runs
in forked child processes (the parent's bookkeeping never delays it) and reports its own CPU
time, so a reader can check it was not the bottleneck; `ceiling()` measures its top rate
against a trivial server.

Closed loop (`rate=None`): each connection sends its next request as soon as the previous
answer is complete. Open loop (`rate`): request i is due at start + i/rate; latency is
counted from when it was due, so a stalled server is not hidden (no coordinated omission).
Every run is bounded twice: by the number of requests given and by `duration`. `start`
forks the children and returns at once, so a second load (or anything else) can run beside
one; `run` is `start` then `wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import resource
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from orchestrator.launch import port_in_use, wait_until

FIXED_RESPONSE = b"HTTP/1.1 204 No Content\r\nserver: fixed\r\n\r\n"
CONNECT_STAGGER = 0.003  # seconds between opening two connections
GRACE_SECONDS = 15.0  # after `duration`, in-flight requests get this long before they count as lost


@dataclass
class Load:
    """One measurement: where to send what, how hard, for how long at most."""

    port: int
    requests: list[bytes]
    connections: int = 32
    duration: float = 5.0
    rate: float | None = None
    host: str = "127.0.0.1"


@dataclass
class Outcome:
    """Per request index: latency (ns, -1 if none), status (0 if none), completion wall time
    (`time.time()`) and the same moment on `time.monotonic()` (one clock for all processes of
    the machine, for pairing with another process's readings)."""

    latency_ns: array
    status: array
    done_at: array
    elapsed: float
    cpu_seconds: float
    bodies: dict[int, bytes] = field(default_factory=dict)
    answered: array = field(default_factory=lambda: array("d"))

    @property
    def completed(self) -> int:
        return sum(1 for s in self.status if s)

    @property
    def errors(self) -> int:
        """Requests sent that got no answer, or an answer other than 2xx."""
        return self.sent - sum(1 for s in self.status if s // 100 == 2)

    @property
    def sent(self) -> int:
        return sum(1 for v in self.latency_ns if v != -1)

    def statuses(self) -> dict[int, int]:
        return dict(Counter(s for s in self.status if s))

    def latencies_ms(self, ok_only: bool = True) -> list[float]:
        return [
            v / 1e6
            for v, s in zip(self.latency_ns, self.status, strict=True)
            if v >= 0 and s and (not ok_only or s // 100 == 2)
        ]

    @property
    def rps(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0


class _Run:
    """State shared by the connections of one child process."""

    def __init__(self, load: Load, keep_bodies: bool) -> None:
        n = len(load.requests)
        self.load = load
        self.keep_bodies = keep_bodies
        self.latency = array("q", [-1]) * n  # -2: sent, no answer yet
        self.status = array("h", [0]) * n
        self.done_at = array("d", [math.nan]) * n
        self.answered = array("d", [math.nan]) * n
        self.bodies: dict[int, bytes] = {}
        self.next_index = 0
        self.in_flight = 0
        self.idle: list[_Conn] = []
        self.due: list[tuple[int, int]] = []  # open loop: (index, due ns) waiting for a connection
        self.start_ns = 0
        self.deadline_ns = 0
        self.last_ns = 0
        self.stopped = False
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- closed loop: a free connection takes the next request, until count or time runs out
    def feed(self, conn: _Conn) -> None:
        if self.load.rate is None:
            now = time.perf_counter_ns()
            if self.next_index < len(self.load.requests) and now < self.deadline_ns:
                index = self.next_index
                self.next_index += 1
                conn.send(index, now)
                return
        elif self.due:
            index, due = self.due.pop(0)
            conn.send(index, due)
            return
        self.idle.append(conn)
        self._maybe_finish()

    # -- open loop: the clock releases request i at start + i/rate
    def release(self, index: int, due: int) -> None:
        if self.idle:
            self.idle.pop().send(index, due)
        else:
            self.due.append((index, due))

    def complete(self, conn: _Conn, status: int, body: bytes) -> None:
        now = time.perf_counter_ns()
        i = conn.index
        self.latency[i] = now - conn.sent_ns
        self.status[i] = status
        self.done_at[i] = time.time()
        self.answered[i] = time.monotonic()
        if self.keep_bodies:
            self.bodies[i] = body
        self.last_ns = now
        self.in_flight -= 1
        conn.index = -1
        self.feed(conn)

    def lost(self, conn: _Conn) -> None:
        if conn.index >= 0:
            self.in_flight -= 1
            self.latency[conn.index] = -2
            conn.index = -1
        if conn in self.idle:
            self.idle.remove(conn)
        if not self.stopped:
            asyncio.get_running_loop().create_task(self._reconnect())
        self._maybe_finish()

    async def _reconnect(self) -> None:
        try:
            conn = await _connect(self)
        except OSError:
            self._maybe_finish()
            return
        self.feed(conn)

    def _maybe_finish(self) -> None:
        if self.in_flight or self.finished.done():
            return
        if self.load.rate is None:
            out_of_work = self.next_index >= len(self.load.requests)
            if out_of_work or time.perf_counter_ns() >= self.deadline_ns:
                self.finished.set_result(None)
        elif self.stopped and not self.due:
            self.finished.set_result(None)


def _framing(buf: bytearray) -> tuple[int, int] | None:
    """Where an HTTP/1.1 message's body starts and where the message ends (its head and
    Content-Length, nothing more); None while its head is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    length = 0
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else end])
    return end + 4, end + 4 + length


class _Conn(asyncio.Protocol):
    def __init__(self, run: _Run) -> None:
        self.run = run
        self.buf = bytearray()
        self.index = -1
        self.sent_ns = 0
        self.need = -1
        self.body_at = 0
        self.code = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, index: int, sent_ns: int) -> None:
        assert self.transport is not None
        self.index = index
        self.sent_ns = sent_ns
        self.run.latency[index] = -2
        self.run.in_flight += 1
        self.transport.write(self.run.load.requests[index])

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            framed = _framing(buf)
            if framed is None:
                return
            self.code = int(buf[9:12])
            self.body_at, self.need = framed
        if len(buf) < self.need:
            return
        body = bytes(buf[self.body_at : self.need]) if self.run.keep_bodies else b""
        buf.clear()  # one request in flight per connection: nothing follows the body
        self.need = -1
        self.run.complete(self, self.code, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.lost(self)


async def _connect(run: _Run) -> _Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: _Conn(run), run.load.host, run.load.port)
    return conn


async def _drive(load: Load, keep_bodies: bool) -> _Run:
    run = _Run(load, keep_bodies)
    conns = []
    for _ in range(load.connections):
        # Staggered, as independent clients would connect: a burst of connects is accepted
        # whole by whichever `uvicorn --workers` process wakes first.
        conns.append(await _connect(run))
        await asyncio.sleep(CONNECT_STAGGER)
    loop = asyncio.get_running_loop()
    run.start_ns = time.perf_counter_ns()
    run.deadline_ns = run.start_ns + int(load.duration * 1e9)
    if load.rate is None:
        for conn in conns:
            run.feed(conn)
    else:
        run.idle = list(conns)
        period_ns = 1e9 / load.rate
        count = min(len(load.requests), int(load.duration * load.rate))
        base = loop.time()
        for i in range(count):
            due = run.start_ns + int(i * period_ns)
            loop.call_at(base + i / load.rate, run.release, i, due)

        def stop() -> None:
            run.stopped = True
            run._maybe_finish()

        loop.call_at(base + count / load.rate + 0.001, stop)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.finished, load.duration + GRACE_SECONDS)
    run.stopped = True
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return run


def _child(load: Load, keep_bodies: bool, pipe: multiprocessing.connection.Connection) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF)
    run = asyncio.run(_drive(load, keep_bodies))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    elapsed = max(run.last_ns - run.start_ns, 1) / 1e9
    pipe.send((run.latency, run.status, run.done_at, run.answered, elapsed, cpu, run.bodies))
    pipe.close()


class Running:
    """A load under way in forked children; `wait` collects its Outcome."""

    def __init__(self, load: Load, children: list) -> None:
        self.load = load
        self.children = children

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.children]

    def wait(self) -> Outcome:
        load, processes = self.load, len(self.children)
        n = len(load.requests)
        out = Outcome(
            array("q", [-1]) * n, array("h", [0]) * n, array("d", [math.nan]) * n, 0.0, 0.0, {}
        )
        out.answered = array("d", [math.nan]) * n
        for k, (proc, pipe) in enumerate(self.children):
            if not pipe.poll(load.duration + GRACE_SECONDS + 30):
                proc.kill()
                raise RuntimeError("load generator child did not report back")
            latency, status, done_at, answered, elapsed, cpu, bodies = pipe.recv()
            proc.join(10)
            for j in range(len(latency)):
                i = j * processes + k
                out.latency_ns[i], out.status[i], out.done_at[i] = latency[j], status[j], done_at[j]
                out.answered[i] = answered[j]
            for j, body in bodies.items():
                out.bodies[j * processes + k] = body
            out.elapsed = max(out.elapsed, elapsed)
            out.cpu_seconds += cpu
        return out


def run(load: Load, processes: int = 1, keep_bodies: bool = False) -> Outcome:
    """Apply `load` from `processes` forked children (connections and requests split evenly)."""
    return start(load, processes, keep_bodies).wait()


def start(load: Load, processes: int = 1, keep_bodies: bool = False) -> Running:
    """Fork the children of `load` and return while they run."""
    if load.rate is not None:
        processes = 1  # one clock for an open loop
    ctx = multiprocessing.get_context("fork")
    children = []
    for k in range(processes):
        part = Load(
            load.port,
            load.requests[k::processes],
            max(1, load.connections // processes),
            load.duration,
            load.rate,
            load.host,
        )
        mine, theirs = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(part, keep_bodies, theirs), daemon=True)
        proc.start()
        theirs.close()
        children.append((proc, mine))
    return Running(load, children)


# --- the generator's own ceiling -----------------------------------------------------------


class _Fixed(asyncio.Protocol):
    """Answers every request (headers + Content-Length body) with one fixed 204."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        while (framed := _framing(self.buf)) is not None and len(self.buf) >= framed[1]:
            del self.buf[: framed[1]]
            self.transport.write(FIXED_RESPONSE)


def _serve_fixed(port: int, seconds: float) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Fixed, "127.0.0.1", port)
        await asyncio.sleep(seconds)
        server.close()

    asyncio.run(main())


def ceiling(port: int, requests: list[bytes], duration: float, processes: int = 1) -> Outcome:
    """The generator against a trivial asyncio server (its own process) returning a fixed 204."""
    ctx = multiprocessing.get_context("fork")
    server = ctx.Process(target=_serve_fixed, args=(port, duration + 30), daemon=True)
    server.start()
    try:
        wait_until(lambda: port_in_use(port), 10, "the fixed-response server")
        return run(Load(port, requests, duration=duration), processes=processes)
    finally:
        server.kill()
        server.join(5)
