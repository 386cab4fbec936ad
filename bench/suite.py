"""The web process against its baselines, in the order that keeps the measurements independent.

Each run starts from an empty Redis (FLUSHDB, a new tenant) and takes every measurement
once, so slow drift of the machine spreads over all of them; figures are the median of the
runs with their min and max. The worker runs only while dispatch latency (and the time a
removal takes to reach Twilio) is measured:
invites are measured with it stopped (their jobs wait in the queue and go with the next
FLUSHDB), so the invite figures are the web process alone, not web plus the emulator's
callbacks and the worker competing for the same two cores.

With one web process, each run also takes the session-control measurements of
bench/control.py (every session-control operation against the same run's B0, removals
reaching Twilio, ListSessions at 100 and 10,000 sessions); `--only control` runs just those (with
B0), `--skip control` leaves them out. After the web x1 and x2 runs come the live events
measurements of bench/events.py (their own `orchestrator web --workers 2`, fresh each run);
`--only events` runs just those, `--skip events` leaves them out. With one web process each
run also takes the agents' calls of bench/agents.py (GetAppConfig against the same run's B0,
a softphone's call and click to call reaching Twilio); `--only agents` runs just those (with
B0), `--skip agents` leaves them out. Likewise the ring queues of bench/queues.py (a queued
call's first offer reaching Twilio, ring-all's withdrawals, ring-all's creates by worker
count, then one soak after the runs); `--only queues` runs just those, with B0 and the
webhook and invite loads of each run, `--skip queues` leaves them out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
from rq import Queue
from rq.job import Job

from bench import loadgen, stack, workload
from bench.agents import Agents
from bench.control import KEY as CONTROL_KEY
from bench.control import OPS as CONTROL_OPS
from bench.control import Control
from bench.events import Events
from bench.profile import summarise
from bench.queues import Queues
from orchestrator import jobs
from orchestrator.launch import Process, free_port, wait_until
from orchestrator.store import new_id

T = TypeVar("T")
DISPATCH_RATE = 20.0
NAIVE_DELAY = 0.2
CONTENDED = 0.25  # other processes' CPU (share of a core) past which a measurement is redone
QUIET = 0.15  # ... below which the machine counts as quiet again, waited for before a retry
QUIET_SECONDS = 45.0  # the longest such wait
MAX_RSS_SECONDS = 900.0


@dataclass
class Options:
    runs: int = 3
    duration: float = 5.0
    output: Path | None = Path("bench/RESULTS.md")  # None: the work directory
    rss_requests: int = 100_000
    sizes: tuple[int, ...] = (1, 10, 100)
    web_processes: tuple[int, ...] = (1, 2)
    py_spy: str | None = None
    memory_sessions: int = 1000
    retries: int = 2
    control: bool = True  # the session-control section (bench/control.py)
    events: bool = True  # the live events section (bench/events.py)
    agents: bool = True  # the agents' calls section (bench/agents.py)
    queues: bool = True  # the ring queues section (bench/queues.py)
    # "control", "agents" or "queues": that section alone (with its B0); "events": that one
    only: str | None = None
    # A git revision: the ring queues' webhook and invite loads run against its web too, in
    # the same runs, for the "ratio to B0 unchanged" targets (bench/queues.py).
    before: str | None = None


@dataclass
class Sample:
    """One measurement: throughput, latency percentiles (ms), and who used the CPU."""

    rps: float
    p50: float
    p99: float
    count: int
    errors: int
    gen_cpu: float  # fraction of one core
    web_cpu: float
    redis_cpu: float
    other_cpu: float = 0.0  # processes that are not the bench's: others sharing the machine
    web_ms_per_request: float = math.nan  # web CPU per completed request
    redis_calls: float = 0.0  # Redis commands per completed request, inside scripts included
    redis_scripts: float = 0.0  # of which EVAL/EVALSHA: one round trip each
    # dispatch only, medians in ms: 200 -> RQ job started -> create accepted -> job ended
    to_start: float = math.nan
    to_accept: float = math.nan
    to_end: float = math.nan
    exhausted: bool = False
    client_cpu: float = 0.0  # the bench's other clients meanwhile (live event subscribers)


@dataclass
class Results:
    options: Options
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, sample: Sample) -> None:
        self.samples.setdefault(key, []).append(sample)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(sample: Sample, delays: list[float], errors: int, phases: dict[str, float]) -> Sample:
    """`sample` (a load's own figures) with the latencies of what the load set off: each
    delay in ms (inf: it never came), `errors` counting those and the load's own, and the
    phases' medians (200 → RQ job started → create accepted → job ended)."""
    return dataclasses.replace(
        sample,
        p50=percentile(delays, 0.5),
        p99=percentile(delays, 0.99),
        count=len(delays),
        errors=errors,
        **phases,
    )


def phases_text(phases: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} ms" for k, v in phases.items())


class Suite:
    def __init__(self, options: Options, workdir: Path, log: Callable[[str], None]) -> None:
        self.o = options
        self.log = log
        self.stack = stack.Stack(workdir)
        self.results = Results(options)
        self.hint: dict[str, float] = {}  # kind -> best req/s seen, sizes the request pools
        self.last_calls: dict[str, int] = {}  # Redis commands by name during the last load
        self.r: redis.Redis
        self.seeder: workload.Seeder
        self.tenant: workload.Tenant
        self.control = Control(self)
        self.events = Events(self)
        self.agents = Agents(self)
        self.queues = Queues(self)
        # One client for the emulator's inspection API: a new one per request would build a
        # TLS context each time, tens of ms of the bench's CPU beside the processes timed.
        self.emulator_http = httpx.Client(timeout=60, trust_env=False)

    # --- plumbing -------------------------------------------------------------------------

    def run(self) -> Results:
        try:
            self._run()
        finally:
            self.stack.stop_all()
            self.emulator_http.close()
        return self.results

    def _run(self) -> None:
        s = self.stack
        s.start_redis()
        assert s.redis is not None
        self.r = redis.Redis.from_url(s.redis.url)
        self.seeder = workload.Seeder(self.r)
        s.start_emulator()
        self.log(f"work directory {s.workdir}; Redis on {s.redis.port}")
        self._ceiling()
        if self.o.only in ("control", "agents", "queues"):
            self._section_only(self.o.only)
            return
        if self.o.only == "events":
            self.events.run_all()
            return
        for procs in self.o.web_processes:
            s.start_web(procs)
            s.start_floor(procs)
            if procs == 1:
                self._start_naive()
            self._warmup(procs)
            for run in range(1, self.o.runs + 1):
                self.log(f"web x{procs}: run {run}/{self.o.runs}")
                self._one_run(procs)
            if procs == 1 and self.o.py_spy:
                self._profile()
            for name in ("web", "floor", "naive", "fake-twilio"):
                s.stop(name)
        if self.o.queues:
            s.start_web(1)
            self.queues.soak()
            s.stop("web")
        if self.o.events:
            self.events.run_all()
        s.start_web(1)
        self._memory()
        self._rss()
        s.stop("web")

    def _warmup(self, procs: int) -> None:
        """One untimed second of each load, so no figure includes a cold process."""
        s = self.stack
        self._fresh()
        members = workload.flatten(self.seeder.sessions(self.tenant, 250, 1))
        loads = [
            (s.floor_port, self._webhooks(members, s.floor_port, path="/floor")),
            (s.web_port, self._webhooks(members, s.web_port)),
            (s.web_port, self._invites(s.web_port, self.seeder.sessions(self.tenant, 1000, 1))),
        ]
        if procs == 1:
            sessions = self.seeder.sessions(self.tenant, 64, 1)
            loads.append((s.naive_port, self._invites(s.naive_port, sessions)))
        for port, reqs in loads:
            loadgen.run(loadgen.Load(port, reqs, duration=1.0))
        if procs == 1 and self.o.control:
            self.control.warmup()
        if procs == 1 and self.o.agents:
            self.agents.check()
            self.agents.warmup()
        if procs == 1 and self.o.queues:
            self.queues.warmup()

    def _section_only(self, name: str) -> None:
        """`--only control`, `--only agents` or `--only queues`: that section, each run with
        its own B0 (and, for queues, the webhook and invite loads against it; the queues'
        soak once after the runs)."""
        s = self.stack
        s.start_web(1)
        s.start_floor(1)
        self._fresh()
        members = workload.flatten(self.seeder.sessions(self.tenant, 250, 1))
        loadgen.run(loadgen.Load(s.floor_port, self._b0_requests("1p"), duration=1.0))
        loadgen.run(loadgen.Load(s.web_port, self._webhooks(members, s.web_port), duration=1.0))
        section: Control | Agents | Queues = {
            "control": self.control,
            "agents": self.agents,
            "queues": self.queues,
        }[name]
        if name == "agents":
            self.agents.check()
        section.warmup()
        for run in range(1, self.o.runs + 1):
            self.log(f"{name}: run {run}/{self.o.runs}")
            self._fresh()
            self._measure("1p:b0", s.floor_port, lambda: self._b0_requests("1p"), "floor", "1p:b0")
            if name == "queues":
                self.queues.run(baseline=True)
            else:
                section.run()
        if name == "queues":
            self.queues.soak()
        if self.o.py_spy and name == "control":
            self._profile_control()
        s.stop("web")
        s.stop("floor")

    def _fresh(self) -> None:
        """Empty Redis, the control job template back (the seeder's scripts refuse to run
        without it; the web would reinstall it on its first script call) and a new tenant
        (account, number, API key)."""
        self.r.flushdb()
        jobs.install_control_template(self.r)
        self.tenant = self.seeder.tenant()

    def _pool(self, kind: str, default: float) -> int:
        rate = self.hint.get(kind, default)
        return int(rate * self.o.duration * 1.8) + 64

    def _apply(
        self,
        key: str,
        port: int,
        requests: list[bytes],
        server: str,
        rate: float | None = None,
        bodies: bool = False,
    ) -> tuple[Sample, loadgen.Outcome]:
        """Apply one load; the Sample says what it achieved and who used the CPU meanwhile
        (with `bodies`, the Outcome keeps the answers' bodies)."""
        web = stack.tree(self.stack.procs[server].pid)
        assert self.stack.redis is not None
        redis_pid = [self.stack.redis.process.pid]
        ours = self.stack.pids()
        web0, redis0 = stack.cpu_seconds(web), stack.cpu_seconds(redis_pid)
        each0 = [stack.cpu_seconds([pid]) for pid in web]
        ours0, machine0 = stack.cpu_seconds(ours), stack.machine_busy_seconds()
        calls0 = self._commands()
        duration = self.o.duration if rate is None else len(requests) / rate + 0.01
        started = time.monotonic()
        load = loadgen.Load(port, requests, duration=duration, rate=rate)
        out = loadgen.run(load, keep_bodies=bodies)
        wall = time.monotonic() - started  # CPU shares over the same span as the /proc deltas
        foreign = stack.machine_busy_seconds() - machine0
        foreign -= stack.cpu_seconds(ours) - ours0 + out.cpu_seconds
        calls = self._commands()
        lat = out.latencies_ms()
        self.last_calls = {
            k: v - calls0.get(k, 0) for k, v in calls.items() if v > calls0.get(k, 0)
        }
        sample = Sample(
            rps=out.rps,
            p50=percentile(lat, 0.50),
            p99=percentile(lat, 0.99),
            count=out.completed,
            errors=out.errors,
            gen_cpu=out.cpu_seconds / wall,
            web_cpu=(stack.cpu_seconds(web) - web0) / wall,
            redis_cpu=(stack.cpu_seconds(redis_pid) - redis0) / wall,
            other_cpu=max(0.0, foreign) / wall,
            web_ms_per_request=(stack.cpu_seconds(web) - web0) * 1000 / max(1, out.completed),
            redis_calls=(sum(self.last_calls.values()) - 1) / max(1, out.completed),
            redis_scripts=sum(self.last_calls.get(c, 0) for c in ("evalsha", "eval"))
            / max(1, out.completed),
            exhausted=rate is None and out.sent >= len(requests),
        )
        if out.errors:
            self.log(f"  {key}: {out.errors} errors, statuses {out.statuses()}")
        each = [(stack.cpu_seconds([pid]) - c) / wall for pid, c in zip(web, each0, strict=True)]
        split = "+".join(f"{c:.0%}" for c in each if c >= 0.005) if len(web) > 1 else ""
        web_text = f"{sample.web_cpu:.0%}" + (f" ({split})" if split else "")
        self.log(
            f"  {key:<14} {sample.rps:8.0f} req/s  p50 {sample.p50:7.2f} ms  p99 {sample.p99:7.2f}"
            f" ms  (web {web_text} redis {sample.redis_cpu:.0%} gen {sample.gen_cpu:.0%}"
            f" other {sample.other_cpu:.0%})"
        )
        return sample, out

    def _commands(self) -> dict[str, int]:
        """Redis commands served so far, by name (scripts' inner calls count too)."""
        stats = self.r.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def retried(self, key: str, attempt: Callable[[], T], quiet: bool = True) -> T:
        """`attempt()` (a Sample, or a tuple that starts with one), again while other
        processes took a real share of the machine, up to --retries times, after waiting
        for a quieter machine; the least disturbed attempt."""
        attempts: list[T] = []

        def sample(a: Any) -> Sample:
            return a[0] if isinstance(a, tuple) else a

        while True:
            if attempts and quiet:
                self.quiet()
            attempts.append(attempt())
            last = sample(attempts[-1])
            if last.other_cpu <= CONTENDED or len(attempts) > self.o.retries:
                return min(attempts, key=lambda a: sample(a).other_cpu)
            self.log(f"  {key}: other processes used {last.other_cpu:.0%} of a core; again")
            self.results.facts["retries"] = self.results.facts.get("retries", 0) + 1

    def quiet(self, seconds: float = QUIET_SECONDS) -> float:
        """Wait, up to `seconds`, for a second in which processes other than the bench's use
        less than QUIET of a core; their share in the last second."""
        shares: list[float] = []

        def quiet_second() -> bool:
            ours = self.stack.pids()
            machine0, ours0, started = (
                stack.machine_busy_seconds(),
                stack.cpu_seconds(ours),
                time.monotonic(),
            )
            time.sleep(1.0)  # the second measured
            foreign = stack.machine_busy_seconds() - machine0 - (stack.cpu_seconds(ours) - ours0)
            shares.append(max(0.0, foreign) / (time.monotonic() - started))
            return shares[-1] < QUIET

        with contextlib.suppress(TimeoutError):
            wait_until(quiet_second, seconds, "a quiet machine", interval=0)
        if len(shares) > 1:
            self.log(f"  waited {len(shares) - 1} s for the machine (others now {shares[-1]:.0%})")
        return shares[-1]

    def _measure(
        self,
        key: str,
        port: int,
        build: Callable[[], list[bytes]],
        server: str,
        kind: str | None = None,
        rate: float | None = None,
    ) -> Sample:
        """Build the requests and apply them, again (fresh requests) while the machine is
        busy with other work; record the least disturbed attempt."""
        sample = self.retried(key, lambda: self._apply(key, port, build(), server, rate)[0])
        self.results.add(key, sample)
        if kind is not None:
            self.hint[kind] = max(self.hint.get(kind, 0.0), sample.rps)
        return sample

    # --- the measurements -------------------------------------------------------------------

    def _ceiling(self) -> None:
        """The generator against a server that does nothing: the most it can ever report."""
        self._fresh()
        members = [workload.Member(new_id("ses"), new_id("mem"), "+14155550199")] * 256
        reqs = self._webhooks(members, port=0, path="/floor")
        reqs = reqs * (60_000 * max(1, int(self.o.duration)) // len(reqs) + 1)
        out = loadgen.ceiling(free_port(), reqs, self.o.duration)
        lat = out.latencies_ms()
        self.results.facts["ceiling"] = {
            "rps": out.rps,
            "p50": percentile(lat, 0.5),
            "p99": percentile(lat, 0.99),
            "gen_cpu": out.cpu_seconds / out.elapsed,
        }
        self.log(f"generator ceiling: {out.rps:.0f} req/s (one process, 32 connections)")

    def _webhooks(
        self,
        members: list[workload.Member],
        port: int,
        path: str | None = None,
        tenant: workload.Tenant | None = None,
    ) -> list[bytes]:
        """Signed call-status callbacks of `members` (of `tenant`, default the run's)."""
        s = self.stack
        tenant = tenant or self.tenant
        return workload.webhooks(
            port, s.public_base_url, s.token, stack.ACCOUNT_SID, tenant, members, path
        )

    def _one_run(self, procs: int) -> None:
        s = self.stack
        p = f"{procs}p"
        self._fresh()
        if procs == 1:
            self._dispatch()

        b0 = functools.partial(self._b0_requests, p)
        self._measure(f"{p}:b0", s.floor_port, b0, "floor", kind=f"{p}:b0")
        sizes = self.o.sizes if procs == 1 else self.o.sizes[:1]
        for n in sizes:
            build = functools.partial(self._webhook_load, p, n)
            self._measure(f"{p}:webhook@{n}", s.web_port, build, "web", kind=f"{p}:webhook")
        for n in sizes:
            build = functools.partial(self._invite_load, p, n)
            self._measure(f"{p}:invite@{n}", s.web_port, build, "web", kind=f"{p}:invite")
        if procs == 1:
            self._naive()
            if self.o.control:
                self.control.run()
            if self.o.agents:
                self.agents.run()
            if self.o.queues:
                self.queues.run(baseline=False)

    def _b0_requests(self, p: str) -> list[bytes]:
        """B0: the same callback bodies and headers as the webhooks, to the bare route."""
        count = self._pool(f"{p}:b0", 15000) // 4 + 1  # before any run: ample
        fake = [workload.Member(new_id("ses"), new_id("mem"), "+14155550199")] * count
        return self._webhooks(fake, self.stack.floor_port, path="/floor")

    def _webhook_load(self, p: str, n: int) -> list[bytes]:
        """Call-status callbacks for members of fresh sessions of `n` members."""
        need = self._pool(f"{p}:webhook", self.hint[f"{p}:b0"]) // 4 + 1
        members = workload.flatten(self.seeder.sessions(self.tenant, -(-need // n), n))
        return self._webhooks(members, self.stack.web_port)

    def _invite_load(self, p: str, n: int) -> list[bytes]:
        """Invites into fresh sessions of `n` members: one each, or ~10 each at 100 members."""
        count = self._pool(f"{p}:invite", self.hint[f"{p}:b0"])
        sessions = self.seeder.sessions(self.tenant, count if n <= 10 else -(-count // 10), n)
        return self._invites(self.stack.web_port, sessions, count)

    # --- dispatch: invite 200 -> the emulator accepts the participant create ----------------

    def _dispatch(self, prefix: str = "1p") -> None:
        """Record `{prefix}:invite@20/s` and `{prefix}:dispatch`; the worker runs meanwhile."""
        s = self.stack
        self._fresh()  # an empty queue: the worker dials only what is measured here
        worker = s.start_worker()
        seconds = max(1.0, self.o.duration * 2)
        try:
            warm = self._dispatch_invites(10)
            loadgen.run(loadgen.Load(s.web_port, warm, duration=1.0, rate=DISPATCH_RATE))
            time.sleep(1.0)
            self.results.facts["dispatch_method"] = (
                "emulator `GET /_emulator/creates` times, paired by conference name"
            )
            if prefix == "profile":
                name = (
                    "worker, dispatching 20 invites/s (busy samples only: the wait for the "
                    "next job is left out, short waits for Redis replies are not)"
                )
                with self._spy(name, worker.pid, seconds, idle=False):
                    self._dispatch_once(prefix, seconds)
                return
            invite, dispatch = self.retried(
                f"{prefix}:dispatch", lambda: self._dispatch_once(prefix, seconds), quiet=False
            )
            self.results.add(f"{prefix}:invite@20/s", invite)
            self.results.add(f"{prefix}:dispatch", dispatch)
        finally:
            s.stop("worker")
            time.sleep(1.0)  # the emulator's callbacks for the last calls drain

    def _dispatch_once(self, prefix: str, seconds: float) -> tuple[Sample, Sample]:
        """One open-loop load of invites; (the invites' Sample, the dispatch delays' Sample)."""
        s = self.stack
        self._emulator("reset", {})
        count = max(20, int(DISPATCH_RATE * seconds))
        sessions = self.seeder.sessions(self.tenant, count, 1)
        targets = [(ss.sid, next(self.seeder.numbers)) for ss in sessions]
        reqs = [workload.invite(s.web_port, self.tenant, sid, n) for sid, n in targets]
        sample, out = self._apply(
            f"{prefix}:invite@20/s", s.web_port, reqs, "web", rate=DISPATCH_RATE
        )
        with contextlib.suppress(TimeoutError):  # a create that never came counts as missing
            wait_until(lambda: self._emulator("creates")["total"] >= count, 10, "the creates", 0.1)
        accepted, labels = self._create_times()
        replied = {sid: out.done_at[i] for i, (sid, _) in enumerate(targets) if out.status[i]}
        time.sleep(0.5)  # the last jobs finish
        phases = self._phases(replied, accepted, labels)
        delays = [
            (accepted[sid] - out.done_at[i]) * 1000
            for i, (sid, _) in enumerate(targets)
            if out.status[i] == 200 and sid in accepted
        ]
        missing = sum(1 for i in range(len(targets)) if out.status[i] == 200) - len(delays)
        dials = max(1, len(delays))
        top = sorted(self.last_calls.items(), key=lambda kv: -kv[1])[:14]
        self.results.facts[f"{prefix}:dispatch_commands"] = [(k, v / dials) for k, v in top]
        dispatch = timed(sample, delays, missing, phases)
        self.log(
            f"  {prefix}:dispatch    p50 {dispatch.p50:7.2f} ms  p99 {dispatch.p99:7.2f} ms"
            f"  ({len(delays)} dials, {missing} missing; {phases_text(phases)})"
        )
        return sample, dispatch

    def _invites(
        self, port: int, sessions: list[workload.Session], count: int | None = None
    ) -> list[bytes]:
        """`count` invites of fresh numbers, round-robin over `sessions` (default: one each)."""
        return [
            workload.invite(port, self.tenant, sessions[i % len(sessions)].sid, number)
            for i, number in zip(range(count or len(sessions)), self.seeder.numbers, strict=False)
        ]

    def _dispatch_invites(self, count: int) -> list[bytes]:
        return self._invites(self.stack.web_port, self.seeder.sessions(self.tenant, count, 1))

    def _emulator(self, path: str, form: dict[str, str] | None = None) -> Any:
        """GET the emulator's `/_emulator/{path}`, or POST `form` there; its JSON."""
        url = f"{self.stack.emulator_url}/_emulator/{path}"
        method = "GET" if form is None else "POST"
        answer = self.emulator_http.request(method, url, data=form)
        answer.raise_for_status()
        return answer.json()

    def _create_times(self) -> tuple[dict[str, float], dict[str, str]]:
        """Session id -> when the emulator accepted its first participant create, and
        session id -> that participant's label (the member id)."""
        times = self._emulator("creates")["times"]
        outbound = [c for c in self._emulator("calls")["calls"] if c["direction"] == "outbound-api"]
        accepted: dict[str, float] = {}
        labels: dict[str, str] = {}
        for call, at in zip(outbound, times, strict=False):
            accepted.setdefault(call["conferenceName"], at)
            labels.setdefault(call["conferenceName"], call["label"])
        return accepted, labels

    def _phases(
        self, replied: dict[str, float], accepted: dict[str, float], labels: dict[str, str]
    ) -> dict[str, float]:
        """Split each dial at the RQ job's own timestamps: 200 -> job started -> create
        accepted -> job ended; medians in ms, as Sample fields."""
        pipe = self.r.pipeline(transaction=False)
        sids = [sid for sid in replied if sid in labels]
        for sid in sids:
            pipe.hmget(Job.key_for(jobs.job_id(labels[sid])), "started_at", "ended_at")
        spans: list[tuple[float, float, float]] = []
        for sid, (started, ended) in zip(sids, pipe.execute(), strict=True):
            if started is None or ended is None:
                continue
            t_start, t_end = _rq_time(started), _rq_time(ended)
            spans.append((t_start - replied[sid], accepted[sid] - t_start, t_end - accepted[sid]))
        names = ("to_start", "to_accept", "to_end")
        return {name: percentile([x[k] * 1000 for x in spans], 0.5) for k, name in enumerate(names)}

    # --- the naive design -------------------------------------------------------------------

    def _start_naive(self) -> None:
        self.results.facts["naive_twilio"] = (
            f"the emulator, answering creates after {NAIVE_DELAY * 1000:.0f} ms "
            "(`POST /_emulator/faults mode=delay`)"
        )
        self.stack.start_naive()

    def _naive(self) -> None:
        s = self.stack

        def closed() -> list[bytes]:
            count = self._pool("naive", 32 / NAIVE_DELAY)
            return self._invites(s.naive_port, self.seeder.sessions(self.tenant, count, 1))

        def steady() -> list[bytes]:
            count = max(20, int(DISPATCH_RATE * self.o.duration))
            return self._invites(s.naive_port, self.seeder.sessions(self.tenant, count, 1))

        window = str((self.o.duration * 3 + loadgen.GRACE_SECONDS) * (1 + self.o.retries))
        form = {"mode": "delay", "seconds": str(NAIVE_DELAY), "for_seconds": window}
        self._emulator("faults", form)
        try:
            self._measure("1p:naive", s.naive_port, closed, "naive", kind="naive")
            self._measure("1p:naive@20/s", s.naive_port, steady, "naive", rate=DISPATCH_RATE)
        finally:
            self._emulator("reset", {})

    # --- memory ---------------------------------------------------------------------------

    def _used(self) -> int:
        time.sleep(0.2)
        return int(self.r.info("memory")["used_memory"])

    def _memory(self) -> None:
        """Redis bytes per session and per member, from used_memory over many of them."""
        s = self.stack
        # The web's Redis connection pool grows under load and each client costs Redis
        # memory: fill it first, so the deltas below are data only.
        self._fresh()
        self._load_mix(2000, 60)
        self._fresh()
        k = self.o.memory_sessions
        base = self._used()
        self.seeder.sessions(self.tenant, k, 0)
        after_sessions = self._used()
        members = self.seeder.sessions(self.tenant, k, 10)
        after_members = self._used()
        sample = workload.flatten(members[: max(1, k // 5)])
        reqs = self._webhooks(sample, s.web_port)
        out = loadgen.run(loadgen.Load(s.web_port, reqs, duration=120))
        after_calls = self._used()
        response = httpx.post(
            f"{s.public_base_url}/sessions/{members[0].sid}/members",
            json={"memberToAdd": next(self.seeder.numbers)},
            headers={"Authorization": f"Bearer {self.tenant.key}"},
            timeout=10,
            trust_env=False,
        )
        response.raise_for_status()
        queued = Queue(jobs.DIAL_QUEUE, connection=self.r).get_job_ids(0, 1)
        job_bytes = int(self.r.memory_usage(Job.key_for(queued[0])) or 0) if queued else 0
        self.results.facts["memory"] = {
            "sessions": k,
            "per_session": (after_sessions - base) / k,
            "members": k * 10,
            "per_member": (after_members - after_sessions) / (k * 10),
            "called_members": len(sample),
            "per_call": (after_calls - after_members) / len(sample),
            "callbacks_ok": out.completed - out.errors,
            "dial_job": job_bytes,
        }
        self.log(f"memory: {self.results.facts['memory']}")

    # --- web RSS over many requests ---------------------------------------------------------

    def _rss(self) -> None:
        """RSS of a fresh one-process web before and after `rss_requests` mixed requests."""
        s = self.stack
        s.stop("web")
        proc = s.start_web(1)
        self._fresh()
        fresh = stack.rss_kib(proc.pid)
        warm = min(2000, max(200, self.o.rss_requests // 20))
        self._load_mix(warm, 120)
        before = stack.rss_kib(proc.pid)
        series: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not stop.wait(1.0):
                series.append((time.monotonic() - start, stack.rss_kib(proc.pid)))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            out = self._load_mix(self.o.rss_requests, MAX_RSS_SECONDS)
        finally:
            stop.set()
            thread.join(5)
        after = stack.rss_kib(proc.pid)
        self.results.facts["rss"] = {
            "fresh_kib": fresh,
            "warmup_requests": warm,
            "before_kib": before,
            "after_kib": after,
            "peak_kib": max([after, before] + [v for _, v in series]),
            "requests": out.completed,
            "errors": out.errors,
            "seconds": out.elapsed,
            "series": series,
        }
        self.log(f"rss: {before} KiB -> {after} KiB over {out.completed} requests")

    def _load_mix(self, count: int, seconds: float) -> loadgen.Outcome:
        """`count` requests, alternately an invite (1-member session) and a webhook."""
        s = self.stack
        invites = count // 2
        hooks = count - invites
        sessions = self.seeder.sessions(self.tenant, invites, 1)
        inv = self._invites(s.web_port, sessions)
        members = workload.flatten(self.seeder.sessions(self.tenant, -(-hooks // 40), 10))
        wh = self._webhooks(members, s.web_port)[:hooks]
        mixed = [r for pair in zip(inv, wh, strict=False) for r in pair] + wh[len(inv) :]
        return loadgen.run(loadgen.Load(s.web_port, mixed[:count], duration=seconds))

    # --- where the time goes ------------------------------------------------------------------

    def _spy(
        self, name: str, pid: int, seconds: float, idle: bool = True
    ) -> contextlib.AbstractContextManager:
        """py-spy records `pid` inside a load of `seconds`; the summary goes to facts["profile"].

        It starts 0.5 s into the load and stops 0.5 s before its end, so the profile holds
        no idle time from before or after the load.
        """
        assert self.o.py_spy is not None
        raw = self.stack.workdir / f"profile-{name.split(',')[0]}-{len(name)}.txt"
        profiles = self.results.facts.setdefault("profile", {})
        args = [self.o.py_spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
        args += ["--output", str(raw), "--nonblocking", "--duration", str(max(1, int(seconds - 1)))]
        args += ["--idle"] if idle else []
        started: list[Process] = []
        log = self.stack.workdir / "py-spy.log"

        def start() -> None:
            started.append(Process("py-spy", args, log_path=log).start())

        @contextlib.contextmanager
        def recording() -> Iterator[None]:
            timer = threading.Timer(0.5, start)
            timer.start()
            try:
                yield
            finally:
                timer.join()
                for spy in started:
                    try:
                        wait_until(lambda: not spy.alive(), seconds + 30, "py-spy", 0.1)  # noqa: B023
                    except TimeoutError:
                        spy.kill()
            if raw.exists():
                profiles[name] = summarise(raw.read_text())

        return recording()

    def _profile(self) -> None:
        """py-spy on one web process (webhooks, invites) and on the worker (dispatch)."""
        s = self.stack
        self._fresh()
        default = self.hint.get("1p:b0", 2000)
        need = self._pool("1p:webhook", default) // 4
        hooks = self._webhooks(
            workload.flatten(self.seeder.sessions(self.tenant, need, 1)), s.web_port
        )
        count = self._pool("1p:invite", default)
        invites = self._invites(s.web_port, self.seeder.sessions(self.tenant, count, 1))
        web = s.procs["web"].pid
        d = self.o.duration
        with self._spy("web, webhooks at 32 connections", web, d):
            self._apply("profile:webhook", s.web_port, hooks, "web")
        with self._spy("web, invites at 32 connections", web, d):
            self._apply("profile:invite", s.web_port, invites, "web")
        self._dispatch(prefix="profile")
        if self.o.control:
            self._profile_control()

    def _profile_control(self) -> None:
        """py-spy on the web process (DeleteChatMember) and on the worker (removals)."""
        s = self.stack
        self.control._fresh()
        delete = next(op for op in CONTROL_OPS if op.key == "delete")
        reqs = self.control.requests(delete, self.control._pool(CONTROL_KEY + "delete"))
        with self._spy(
            "web, DeleteChatMember at 32 connections", s.procs["web"].pid, self.o.duration
        ):
            self._apply("profile:ctl-delete", s.web_port, reqs, "web")
        name = (
            "worker, removing connected members at 20/s (busy samples only: the wait for "
            "the next job is left out)"
        )
        self.control.removals(spy=lambda pid, seconds: self._spy(name, pid, seconds, idle=False))


def _rq_time(value: bytes) -> float:
    """RQ's timestamps (UTC, ISO 8601 with microseconds) as Unix time."""
    text = value.decode().rstrip("Z")
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def find_py_spy() -> str | None:
    """py-spy from $BENCH_PY_SPY, beside this Python (the `bench` extra) or on PATH;
    profiling is skipped without it."""
    import shutil

    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    candidate = (
        os.environ.get("BENCH_PY_SPY")
        or (beside if os.path.exists(beside) else None)
        or shutil.which("py-spy")
    )
    return candidate if candidate and os.access(candidate, os.X_OK) else None
