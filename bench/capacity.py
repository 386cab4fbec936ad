"""Capacity: what one call costs Redis, how many concurrent calls one web process and one
Redis primary carry, and what `REDIS_MIN_REPLICAS=1` costs.

`python -m bench.capacity [--output bench/capacity.json]` starts its own Redis (a free
loopback port, a private directory), the emulator, one `orchestrator web` and the worker the
way `python -m bench` does (bench/stack.py), writes every figure as JSON to `--output` and
prints `section(data)`, a Markdown "## Capacity" for bench/RESULTS.md. About five minutes.

**Call lives** (worker running). Each life is the real path end to end: a customer calls the
tenant's number (`POST /_emulator/incoming`: the emulator asks /twilio/voice, the caller
joins the session's conference), the agent console invites a number (InviteChatMember), the
worker dials it through the emulator, it rings and answers, the console reads the session
(GetSession) a second later and ends it (EndSession), the worker ends the conference and
every leg, and the emulator's callbacks for all of it reach the web. Lives start at a steady
rate, overlapping as real calls do. Around them: Redis `INFO` (commandstats, network bytes,
used_memory) and /proc CPU of every process, less what the same processes did in an idle
stretch of the same length just before; the emulator's `GET /_emulator/calls` gives the
callbacks it sent.

**Concurrent calls** (worker stopped). Signed call-status callbacks (bench/workload.py) to
one web process in open loop, at rising rates around its closed-loop throughput: the highest
rate it keeps up with (p99 < 50 ms, every request answered 2xx) is its sustained rate, and
redis-server's CPU time over the requests of that step gives the rate at which one Redis
primary would have a whole core busy. A concurrent call of `HANDLE_SECONDS` sends its
callbacks per life over that time.

**REDIS_MIN_REPLICAS** (worker stopped). A primary and one replica (`--replicaof`, the same
binary), the web with `REDIS_MIN_REPLICAS=0`, then `=1`, against the same pair (the replica
is attached in both, so the difference is the WAIT alone), in ABBA order over the runs:
invites and webhooks at a steady 200/s, then closed loop at 32 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis

from bench import loadgen, stack, workload
from bench.suite import Options, Sample, Suite, percentile
from orchestrator import redis_server
from orchestrator.launch import wait_until
from orchestrator.scripts import source

LIVES = 500
WARM_LIVES = 20  # untimed first: imports, connection pools, script caches
LIFE_RATE = 12.0  # new calls per second
RING_SECONDS = 0.2  # the emulator's ring time of a callee who answers
TALK_SECONDS = 2.0  # from the answer to the console's GetSession, then EndSession
IDLE_SECONDS = 10.0
DRAIN_SECONDS = 60.0  # after the last EndSession, for every leg to end at the emulator
SETTLE_SECONDS = 1.5  # then, for the last jobs and answers
HANDLE_SECONDS = 180.0  # the average call (a contact centre's average handle time)
P99_LIMIT_MS = 50.0
LADDER = (0.5, 0.65, 0.8, 0.9, 1.0)  # open-loop rates, as fractions of closed-loop throughput
CLIMB = 1.1  # past the ladder's top while it still keeps up
MAX_CLIMB = 4
REFINE = 2  # steps between the best rate kept up with and the next that was not
CLOSE_ENOUGH = 1.1  # ... unless they are this close already
HA_RATE = 200.0
HA_REPLICAS = (0, 1)
ENDED = ("completed", "canceled", "busy", "no-answer", "failed")  # a leg's final states
BENCH_COMMANDS = ("info",)  # the bench's own readings, never the service's
TOP_COMMANDS = 15
ID = re.compile(
    r"(?<=[:_-])[0-9a-f]{16,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\b(CA|CF)[0-9a-f]{32}|\+\d{8,15}"
)


@dataclass
class Reading:
    """Redis INFO and the CPU time of each process at one moment."""

    at: float
    commands: dict[str, int]
    net_in: int
    net_out: int
    memory: int
    cpu: dict[str, float]  # web, worker, emulator, redis, bench
    machine: float  # busy seconds of all cores

    def __sub__(self, other: Reading) -> Reading:
        names = set(self.commands) | set(other.commands)
        return Reading(
            self.at - other.at,
            {n: self.commands.get(n, 0) - other.commands.get(n, 0) for n in names},
            self.net_in - other.net_in,
            self.net_out - other.net_out,
            self.memory - other.memory,
            {n: self.cpu[n] - other.cpu.get(n, 0.0) for n in self.cpu},
            self.machine - other.machine,
        )

    def less(self, idle: Reading) -> Reading:
        """This span less what `idle` (a span with nothing to do) would have done in as long."""
        k = self.at / idle.at
        return Reading(
            self.at,
            {n: v - k * idle.commands.get(n, 0) for n, v in self.commands.items()},
            self.net_in - round(k * idle.net_in),
            self.net_out - round(k * idle.net_out),
            self.memory,
            {n: v - k * idle.cpu.get(n, 0.0) for n, v in self.cpu.items()},
            self.machine,
        )

    @property
    def others(self) -> float:
        """The share of a core other work on the machine took meanwhile."""
        return max(0.0, self.machine - sum(self.cpu.values())) / max(self.at, 1e-9)


class Dials:
    """How many participant creates the emulator has had (`GET /_emulator/creates`), for
    every life from one poller: the k-th member invited waits for the k-th create (the dial
    queue is first in, first out), and waiting asks Redis nothing."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.invited = 0
        self.created = 0

    async def poll(self) -> None:
        while True:
            answer = await self.client.get(self.url)
            self.created = int(answer.json()["total"])
            await asyncio.sleep(0.1)

    async def wait(self, k: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.created < k and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


@dataclass
class Life:
    number: str
    statuses: list[int] = field(default_factory=list)  # the console's requests
    state: str = ""  # the member's callState when the console read the session
    waited: float = 0.0  # seconds from the invite's answer to the emulator's create

    @property
    def connected(self) -> bool:
        return self.state == "Connected"


class Capacity:
    def __init__(self, options: Options, lives: int, workdir: Path, log: Any) -> None:
        self.suite = Suite(options, workdir, log)
        self.stack = self.suite.stack
        self.lives = lives
        self.log = log
        self.replica: redis_server.RedisServer | None = None
        self.data: dict[str, Any] = {"machine": machine(), "duration": options.duration}

    def run(self) -> dict[str, Any]:
        s, suite = self.stack, self.suite
        try:
            s.start_redis()
            self._connect()
            s.start_emulator()
            s.start_web(1)
            self.log(f"work directory {s.workdir}; Redis on {self._redis().port}")
            self.data["others_at_start"] = suite.quiet(10)
            self.data["call_life"] = self.call_lives()
            self.data["concurrent"] = self.concurrent()
            self.data["replicas"] = self.replicas()
            self.data["others"] = self._others()
        finally:
            s.stop_all()
            if self.replica is not None:
                self.replica.stop()
        return self.data

    def _connect(self) -> None:
        suite = self.suite
        source.cache_clear()  # the seed writes what the web started now reads
        suite.r = redis.Redis.from_url(self._redis().url)
        suite.seeder = workload.Seeder(suite.r)

    def _redis(self) -> redis_server.RedisServer:
        assert self.stack.redis is not None
        return self.stack.redis

    # --- readings ---------------------------------------------------------------------------

    def _read(self) -> Reading:
        s = self.stack
        info = self.suite.r.info("all")
        commands = {
            k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_") and k.removeprefix("cmdstat_") not in BENCH_COMMANDS
        }
        cpu = {name: stack.cpu_seconds(stack.tree(p.pid)) for name, p in s.procs.items()}
        cpu["redis"] = stack.cpu_seconds([self._redis().process.pid])
        cpu["bench"] = stack.cpu_seconds([os.getpid(), *s.helpers])
        return Reading(
            time.monotonic(),
            commands,
            int(info["total_net_input_bytes"]),
            int(info["total_net_output_bytes"]),
            int(info["used_memory"]),
            cpu,
            stack.machine_busy_seconds(),
        )

    # --- 1. call lives ----------------------------------------------------------------------

    def call_lives(self) -> dict[str, Any]:
        s, suite = self.stack, self.suite
        suite._fresh()
        suite._emulator("reset", {})
        s.start_worker()
        try:
            self.log(f"call lives: {WARM_LIVES} untimed, then {self.lives} at {LIFE_RATE:g}/s")
            asyncio.run(self._drive(WARM_LIVES))
            self._drain(WARM_LIVES)
            suite._emulator("reset", {})  # its calls list: the measured lives only
            idle0 = self._read()
            time.sleep(IDLE_SECONDS)
            idle = self._read() - idle0
            groups = self._groups()
            before = self._read()
            lives = asyncio.run(self._drive(self.lives))
            calls = self._drain(self.lives)
            span = self._read() - before
            kept = self._kept(groups, self._groups(), self.lives)
        finally:
            s.stop("worker")
        return self._life_figures(lives, calls, span, idle, kept)

    async def _drive(self, count: int) -> list[Life]:
        """`count` call lives, one starting every 1/LIFE_RATE s, each as a console runs it."""
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(trust_env=False, timeout=30, limits=limits) as client:
            dials = Dials(client, f"{self.stack.emulator_url}/_emulator/creates")
            poller = asyncio.create_task(dials.poll())
            tasks = []
            start = time.monotonic()
            for i in range(count):
                life = Life(next(self.suite.seeder.numbers))
                tasks.append(asyncio.create_task(self._life(client, dials, life)))
                await asyncio.sleep(max(0.0, start + (i + 1) / LIFE_RATE - time.monotonic()))
            lives = list(await asyncio.gather(*tasks))
            poller.cancel()
            return lives

    async def _life(self, client: httpx.AsyncClient, dials: Dials, life: Life) -> Life:
        """One call life; a request that fails is recorded (status 0), not raised."""
        s, tenant = self.stack, self.suite.tenant
        auth = {"Authorization": f"Bearer {tenant.key}"}
        try:
            answer = await client.post(
                f"{s.emulator_url}/_emulator/incoming",
                data={"From": next(self.suite.seeder.numbers), "To": tenant.number},
            )
            answer.raise_for_status()
            session = f"{s.public_base_url}/sessions/{answer.json()['conferenceName']}"
            invite = await client.post(
                f"{session}/members", json={"memberToAdd": life.number}, headers=auth
            )
            life.statuses.append(invite.status_code)
            dials.invited += 1
            invited = time.monotonic()
            await dials.wait(dials.invited)
            life.waited = time.monotonic() - invited
            await asyncio.sleep(RING_SECONDS + TALK_SECONDS)
            read = await client.get(session, headers=auth)
            life.statuses.append(read.status_code)
            if read.status_code == 200:
                members = read.json()["members"]
                life.state = next(
                    (m["callState"] for m in members if m["identity"] == life.number), "absent"
                )
            end = await client.delete(session, headers=auth)
            life.statuses.append(end.status_code)
        except httpx.HTTPError as exc:
            self.log(f"  a call life failed: {exc!r}")
            life.statuses += [0] * (3 - len(life.statuses))
        return life

    def _drain(self, count: int) -> list[dict[str, Any]]:
        """Until the emulator has ended every leg of `count` lives and has sent nothing for a
        while (it alone is asked: a poll of Redis would count in the figures); its calls."""
        last: list[tuple[int, int]] = [(-1, -1)]
        up = [0]

        def settled() -> bool:
            calls = self.suite._emulator("calls")["calls"]
            ended = [c for c in calls if c["status"] in ENDED and not c["sending"]]
            sent = sum(len(c["callbacks"]) + len(c["failedCallbacks"]) for c in calls)
            inbound = sum(c["direction"] == "inbound" for c in ended)
            now, last[0], up[0] = last[0], (len(calls), sent), len(calls) - len(ended)
            return inbound >= count and up[0] == 0 and last[0] == now

        try:
            wait_until(settled, DRAIN_SECONDS, "every leg to end", interval=0.5)
        except TimeoutError:
            self.log(f"  {up[0]} legs still up after {DRAIN_SECONDS:.0f} s")
        time.sleep(SETTLE_SECONDS)
        return self.suite._emulator("calls")["calls"]

    def _groups(self) -> dict[str, dict[str, Any]]:
        """Every key by pattern (ids as *): count, MEMORY USAGE, type and longest TTL."""
        r = self.suite.r
        keys = list(r.scan_iter(count=1000))
        pipe = r.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
            pipe.ttl(key)
            pipe.type(key)
        replies = pipe.execute()
        groups: dict[str, dict[str, Any]] = {}
        for i, key in enumerate(keys):
            used, ttl, kind = replies[3 * i : 3 * i + 3]
            pattern = ID.sub("*", key.decode())
            group = groups.setdefault(pattern, {"keys": 0, "bytes": 0, "ttl": -1})
            group["keys"] += 1
            group["bytes"] += int(used or 0)
            group["type"] = kind.decode()
            group["ttl"] = max(group["ttl"], int(ttl))
        return groups

    @staticmethod
    def _kept(before: dict[str, Any], after: dict[str, Any], lives: int) -> list[dict[str, Any]]:
        """What the lives added, per life, by key pattern."""
        out = []
        for pattern, g in after.items():
            was = before.get(pattern, {"keys": 0, "bytes": 0})
            added = {"keys": (g["keys"] - was["keys"]) / lives}
            added["bytes"] = (g["bytes"] - was["bytes"]) / lives
            if added["bytes"] > 0:
                out.append({"pattern": pattern, "type": g["type"], "ttl": g["ttl"], **added})
        return sorted(out, key=lambda g: -g["bytes"])

    def _life_figures(
        self,
        lives: list[Life],
        calls: list[dict[str, Any]],
        span: Reading,
        idle: Reading,
        kept: list[dict[str, Any]],
    ) -> dict[str, Any]:
        n = len(lives)
        work = span.less(idle)
        kinds: Counter[str] = Counter()
        non_2xx = retried = 0
        failures: Counter[str] = Counter()
        for call in calls:
            for cb in call["callbacks"] + call["failedCallbacks"]:
                route = urlsplit(cb["url"]).path.rsplit("/", 1)[-1]
                params = cb.get("params", {})
                event = params.get("StatusCallbackEvent") or params.get("CallStatus", "")
                kinds[route if route == "voice" else f"{route} {event}"] += 1
                status = cb.get("status")  # none: not delivered (`error` says why)
                if status is None or status // 100 != 2:
                    non_2xx += 1
                    failures[f"{route} {event}: {status or cb.get('error')}"] += 1
                retried += len(cb.get("attempts", [])) > 1
        commands = {k: v / n for k, v in work.commands.items() if v > 0}
        top = sorted(commands.items(), key=lambda kv: -kv[1])[:TOP_COMMANDS]
        api = Counter(status for life in lives for status in life.statuses)
        figures = {
            "lives": n,
            "warmup_lives": WARM_LIVES,
            "rate": LIFE_RATE,
            "talk_seconds": TALK_SECONDS,
            "seconds": span.at,
            "connected": sum(life.connected for life in lives),
            "states": dict(Counter(life.state for life in lives)),
            "dial_wait_p50": percentile([life.waited for life in lives], 0.5),
            "dial_wait_p99": percentile([life.waited for life in lives], 0.99),
            "legs": len(calls),
            "legs_ended": sum(c["status"] in ENDED for c in calls),
            "api_requests": 3,
            "api_statuses": {str(k): v for k, v in sorted(api.items())},
            "callbacks": sum(kinds.values()) / n,
            "callbacks_by_kind": {k: v / n for k, v in sorted(kinds.items())},
            "callbacks_non_2xx": non_2xx,
            "callbacks_retried": retried,
            "callback_failures": dict(failures.most_common(5)),
            "commands": sum(commands.values()),
            "scripts": commands.get("evalsha", 0.0) + commands.get("eval", 0.0),
            "top_commands": top,
            "net_in": work.net_in / n,
            "net_out": work.net_out / n,
            "memory": span.memory / n,
            "cpu_ms": {k: v * 1000 / n for k, v in work.cpu.items() if k != "bench"},
            "idle": {
                "seconds": idle.at,
                "commands_per_s": sum(idle.commands.values()) / idle.at,
                "cpu": {k: v / idle.at for k, v in idle.cpu.items()},
            },
            "kept": kept,
            "others": span.others,
        }
        self.log(
            f"  {n} lives in {span.at:.1f} s: {figures['callbacks']:.1f} callbacks, "
            f"{figures['commands']:.0f} Redis commands, {figures['net_in']:,.0f} B in / "
            f"{figures['net_out']:,.0f} B out, {figures['memory']:,.0f} B kept per life; "
            f"{figures['connected']} connected; API {figures['api_statuses']}"
        )
        return figures

    # --- 2. concurrent calls ----------------------------------------------------------------

    def concurrent(self) -> dict[str, Any]:
        s, suite = self.stack, self.suite
        port = s.web_port
        suite._fresh()
        warm = self._webhook_requests(1000)
        loadgen.run(loadgen.Load(port, warm, duration=1.0))
        closed = self._load(
            "cap:webhook", functools.partial(self._fresh_webhooks, None), None, "cap:webhook"
        )
        steps = []
        for fraction in LADDER:
            steps.append(self._step(closed["rps"] * fraction))
            if not steps[-1]["keeps_up"]:
                break
        while steps[-1]["keeps_up"] and len(steps) < len(LADDER) + MAX_CLIMB:
            steps.append(self._step(steps[-1]["rate"] * CLIMB))
        while not any(step["keeps_up"] for step in steps) and len(steps) < len(LADDER) + 3:
            steps.append(self._step(min(step["rate"] for step in steps) * 0.7))
        for _ in range(REFINE):  # between the best rate kept up with and the next one not
            passed = [step["rate"] for step in steps if step["keeps_up"]]
            above = [step["rate"] for step in steps if passed and step["rate"] > max(passed)]
            if not above or min(above) < max(passed) * CLOSE_ENOUGH:
                break
            steps.append(self._step(math.sqrt(max(passed) * min(above))))
        passed_steps = [step for step in steps if step["keeps_up"]]
        best = max(passed_steps, key=lambda step: step["rate"]) if passed_steps else None
        return {
            "handle_seconds": HANDLE_SECONDS,
            "p99_limit_ms": P99_LIMIT_MS,
            "closed": closed,
            "steps": steps,
            "sustained": best,
        }

    def _webhook_requests(self, count: int | None, rate: float | None = None) -> list[bytes]:
        """Call-status lives of fresh 1-member sessions: `count` requests, or enough for
        `rate` (or the closed loop) over the measurement."""
        suite = self.suite
        if count is None:
            count = int((rate or suite.hint.get("cap:webhook", 4000) * 1.8) * suite.o.duration)
        members = workload.flatten(suite.seeder.sessions(suite.tenant, count // 4 + 1, 1))
        return suite._webhooks(members, self.stack.web_port)[:count]

    def _step(self, rate: float) -> dict[str, Any]:
        rate = round(rate)
        build = functools.partial(self._fresh_webhooks, None, rate)
        figures = self._load(f"cap:webhook@{rate}/s", build, rate)
        keeps_up = figures["errors"] == 0 and figures["p99"] < P99_LIMIT_MS
        return {"rate": rate, "keeps_up": keeps_up, **figures}

    def _fresh_webhooks(self, count: int | None, rate: float | None = None) -> list[bytes]:
        self.suite._fresh()
        return self._webhook_requests(count, rate)

    def _load(
        self,
        key: str,
        build: Callable[[], list[bytes]],
        rate: float | None,
        kind: str | None = None,
    ) -> dict[str, Any]:
        """One load (closed loop without `rate`), again while other work took the machine, as
        Suite._measure does; its Sample with the CPU Redis (and the replica) spent on it, per
        request, and the WAITs it caused, per request."""
        suite = self.suite
        pids = {"redis": [self._redis().process.pid]}
        if self.replica is not None:
            pids["replica"] = [self.replica.process.pid]

        def attempt() -> tuple[Sample, dict[str, float], int]:
            requests = build()  # seeding is Redis work too: before the readings
            before = {name: stack.cpu_seconds(p) for name, p in pids.items()}
            sample, _ = suite._apply(key, self.stack.web_port, requests, "web", rate=rate)
            spent = {name: stack.cpu_seconds(p) - before[name] for name, p in pids.items()}
            return sample, spent, suite.last_calls.get("wait", 0)

        sample, spent, waits = suite.retried(key, attempt)
        suite.results.add(key, sample)
        if kind is not None:
            suite.hint[kind] = max(suite.hint.get(kind, 0.0), sample.rps)
        done = max(1, sample.count)
        return {
            **asdict(sample),
            **{f"{name}_ms_per_request": v * 1000 / done for name, v in spent.items()},
            "waits_per_request": waits / done,
        }

    # --- 3. REDIS_MIN_REPLICAS --------------------------------------------------------------

    def replicas(self) -> dict[str, Any]:
        s, suite = self.stack, self.suite
        s.stop_all()  # the emulator is not needed: no worker runs, nothing is dialled
        primary = redis_server.start(s.workdir / "primary")
        s.start_redis(primary)
        self.replica = redis_server.start(
            s.workdir / "replica", extra=("--replicaof", "127.0.0.1", str(primary.port))
        )
        s.helpers.append(self.replica.process.pid)
        self._connect()

        def online() -> bool:
            info = self.suite.r.info("replication")
            return info.get("connected_slaves") == 1 and info["slave0"]["state"] == "online"

        wait_until(online, 30, "the replica to come online", interval=0.1)
        self.log(f"REDIS_MIN_REPLICAS: primary on {primary.port}, replica on {self.replica.port}")
        samples: dict[str, list[dict[str, Any]]] = {}
        for run in range(suite.o.runs):
            for n in HA_REPLICAS if run % 2 == 0 else HA_REPLICAS[::-1]:
                s.svc.settings = {**s.svc.settings, "REDIS_MIN_REPLICAS": str(n)}
                s.start_web(1)
                try:
                    self._warm_ha()
                    for load, sample in self._ha_loads(n):
                        samples.setdefault(f"{n}:{load}", []).append(sample)
                finally:
                    s.stop("web")
        return {"rate": HA_RATE, "runs": suite.o.runs, "samples": samples}

    def _warm_ha(self) -> None:
        suite, port = self.suite, self.stack.web_port
        suite._fresh()
        invites = suite._invites(port, suite.seeder.sessions(suite.tenant, 500, 1))
        loadgen.run(loadgen.Load(port, invites, duration=1.0))
        loadgen.run(loadgen.Load(port, self._webhook_requests(2000), duration=1.0))

    def _ha_loads(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        suite, port = self.suite, self.stack.web_port
        steady = int(HA_RATE * suite.o.duration)

        def invites(count: int | None) -> list[bytes]:
            suite._fresh()
            count = count or int(suite.hint.get(f"ha{n}:invite", 3000) * 1.8 * suite.o.duration)
            return suite._invites(port, suite.seeder.sessions(suite.tenant, count, 1))

        loads = [
            ("invite@200/s", functools.partial(invites, steady), HA_RATE, None),
            ("webhook@200/s", functools.partial(self._fresh_webhooks, steady), HA_RATE, None),
            ("invite", functools.partial(invites, None), None, f"ha{n}:invite"),
            ("webhook", functools.partial(self._fresh_webhooks, None), None, "cap:webhook"),
        ]
        return [
            (name, self._load(f"ha{n}:{name}", build, rate, kind))
            for name, build, rate, kind in loads
        ]

    def _others(self) -> dict[str, float]:
        """The machine's other load over every measurement: median and most."""
        shares = [x.other_cpu for xs in self.suite.results.samples.values() for x in xs]
        shares.append(self.data["call_life"]["others"])
        return {"median": statistics.median(shares), "max": max(shares)}


def machine() -> dict[str, Any]:
    """The machine, as bench/report.py's environment() says it, with the load average."""
    from bench.report import environment

    env = environment()
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[:3]
    names = ("date", "cpu", "python", "redis-server")
    return {**{k: env[k] for k in names}, "loadavg": loadavg}


def limits(data: dict[str, Any]) -> dict[str, float]:
    """Concurrent calls each part carries, from the figures (see `section`)."""
    life, conc = data["call_life"], data["concurrent"]
    per_call = life["callbacks"] / HANDLE_SECONDS  # webhooks per second of one concurrent call
    best = conc["sustained"] or {}
    rate = best.get("rate", math.nan)
    redis_rate = 1000 / best.get("redis_ms_per_request", math.nan)
    batched_rate = 1000 / conc["closed"]["redis_ms_per_request"]
    cpu = life["cpu_ms"]
    return {
        "webhooks_per_call_s": per_call,
        "web_rate": rate,
        "web_calls": rate / per_call,
        "redis_rate": redis_rate,
        "redis_calls": redis_rate / per_call,
        "redis_rate_batched": batched_rate,
        "redis_calls_batched": batched_rate / per_call,
        # The whole life (its API requests, the worker's commands): CPU per life against the
        # web's share of a core at its sustained rate, and against all of Redis's one core.
        "web_calls_life": best.get("web_cpu", math.nan) * HANDLE_SECONDS * 1000 / cpu["web"],
        "redis_calls_life": HANDLE_SECONDS * 1000 / cpu["redis"],
        "worker_calls_life": HANDLE_SECONDS * 1000 / cpu["worker"],
    }


# --- the command ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from bench.report import capacity_section

    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    p.add_argument("--output", type=Path, default=Path("bench/capacity.json"))
    p.add_argument("--lives", type=int, default=LIVES, help=f"call lives measured ({LIVES})")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per load (5)")
    p.add_argument("--runs", type=int, default=2, help="REDIS_MIN_REPLICAS runs, ABBA (2)")
    p.add_argument(
        "--retries", type=int, default=0, help="measure again while others use >25%% of a core"
    )
    p.add_argument(
        "--render", type=Path, metavar="JSON", help="print the section of an earlier run's JSON"
    )
    a = p.parse_args(argv)
    if a.render is not None:
        print(capacity_section(json.loads(a.render.read_text())))
        return 0
    if a.lives < 10 or a.duration <= 0 or a.runs < 1 or a.retries < 0:
        p.error("--lives >= 10, --duration > 0, --runs >= 1, --retries >= 0")
    workdir, log = stack.command("capacity")
    options = Options(output=None, duration=a.duration, runs=a.runs, retries=a.retries)
    data = Capacity(options, a.lives, workdir, log).run()
    data["limits"] = limits(data)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(data, indent=1))
    print(capacity_section(data))
    log(f"wrote {a.output}; logs in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
