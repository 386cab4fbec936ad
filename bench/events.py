"""Live events (docs/events.md): how soon a change reaches 200 subscribers, what they cost the
webhooks, the web processes' memory and Redis.

**Set-up.** `orchestrator web --workers 2` (two processes on one port: the kernel hands each
new connection to one of them; which one got each subscriber is read from /proc, and
`orchestrator_event_subscribers` on /metrics must count all 200). The web is started fresh
for every run. Two accounts: the *watched* one, with 200 connected sessions (a caller and one
member each, written with the service's scripts), and *another* one, whose fresh sessions
the throughput load's call-status callbacks go to. The worker is not running.

**Subscribers.** 200 `GET /sessions/events` streams of the watched account, held by two
forked client processes of raw asyncio sockets (100 each, connections staggered 3 ms apart
as independent consoles would open them; bench/sse.py). A client stamps each event's id
with `time.monotonic()` as its `id:` line arrives (CLOCK_MONOTONIC is one clock for every
process of the machine), or, where only completeness matters, counts them.

**Changes.** Signed conference-status callbacks, each exactly one change of the watched
account: participant-mute, then participant-unmute on the next round, over the 200 sessions'
members with increasing SequenceNumber. They go over one keep-alive connection at a steady
50/s, each sent after the previous answer, so the k-th answered callback made the k-th entry
of the account's stream; the load side stamps `time.monotonic()` when it has read each
answer. Latency of a (change, subscriber) pair: that subscriber's stamp of the entry's id
minus the callback's stamp; every subscriber must receive every change (losses: 0).

**Throughput.** The existing webhook load (closed loop, 32 connections, call-status life of
fresh members of 1-member sessions) to the other account's sessions, first with no
subscriber, then with the 200 attached and receiving the watched account's 50 changes/s
(started 0.5 s before the load, running until after it). Worst case, as a figure: the same
load aimed at the watched account, so each change fans out to all 200.

**Memory.** Web RSS (every process of `orchestrator web`) right before the 200 connect and
after they have received the steady run; Redis: `MEMORY USAGE <stream> SAMPLES 0` over
XLEN, per entry, times a rate for an hour (the stream keeps an hour: MINID ~).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import resource
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from bench import loadgen, sse, stack, workload
from orchestrator.keys import account_events
from orchestrator.launch import wait_until

if TYPE_CHECKING:
    from bench.suite import Sample, Suite

KEY = "2p:ev:"  # results keys: web x2, as every figure here
PROCESSES = 2
SUBSCRIBERS = 200
CLIENT_PROCESSES = 2
RATE = 50.0  # the watched account's changes per second
SESSIONS = 200  # the watched account's connected sessions, round which the changes go
WARM_SUBSCRIBERS = 4
STAGGER = 0.003  # seconds between two subscribers connecting
LAZY_BYTES = 65536  # a lazy stream is read once this much has come
PROMPT = 10  # streams that stamp promptly while the others read lazily
BURST = 2000  # events written at once for the fan-out's ceiling
DRAIN_SECONDS = 30.0  # after a load, for every subscriber to have read what it was sent
OVERLAP = 0.5  # the steady changes start this long before a throughput load, end after it
# What each results key measures (the report's rows).
STEADY = KEY + "steady"  # 50 changes/s, no subscriber
LATENCY = KEY + "latency"  # 50 changes/s, 200 subscribers
ALONE = KEY + "webhook"  # the throughput load, no subscriber
WATCHED = KEY + "webhook+subs"  # the same, 200 subscribers receiving 50 changes/s meanwhile
UNDER_LOAD = KEY + "latency+load"  # the 50 changes/s of that run, as latency
WORST = KEY + "webhook-watched"  # the load aimed at the watched account itself


# --- the subscribers ------------------------------------------------------------------------


class _Stream(sse.Stream):
    """One event stream: the ids it receives, stamped, or only counted (and then perhaps
    read lazily: the kernel wakes the client once LAZY_BYTES have come)."""

    def __init__(self, client: sse.Client) -> None:
        super().__init__(client)
        self.ids: list[bytes] = []
        self.times = array("d")

    def reset(self, stamp: bool, lazy: bool) -> None:
        self.ids, self.times = [], array("d")
        self.set_counting(not stamp)
        self.lowat(LAZY_BYTES if lazy else 1)

    def event(
        self, event_id: bytes | None, name: bytes | None, data: bytes | None, at: float
    ) -> None:
        if event_id is not None:
            self.ids.append(event_id)
            self.times.append(at)


class _Client(sse.Client):
    stream = _Stream

    def do_record(self, mode: str, prompt: int) -> str:
        n, k = self.processes, self.index
        share = prompt // n + (1 if k < prompt % n else 0)
        for i, s in enumerate(self.streams):
            s.reset(stamp=mode == "stamp" or i < share, lazy=mode == "lazy" and i >= share)
        return "ok"

    def do_flush(self) -> str:
        for s in self.streams:
            s.lowat(1)
        return "ok"

    def do_report(self, full: bool) -> dict[str, Any]:
        use = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "ids": [s.ids for s in self.streams] if full else [],
            "times": [s.times for s in self.streams] if full else [],
            "stamped": [not s.counting for s in self.streams],
            "counts": [s.count for s in self.streams],
            "dropped": sum(s.dropped for s in self.streams),
            "closed": sum(s.lost for s in self.streams),
            "cpu": use.ru_utime + use.ru_stime,
        }


@dataclass
class Report:
    ids: list[list[bytes]]  # per stream that stamps (else empty)
    times: list[array]
    stamped: list[bool]
    counts: list[int]
    dropped: int
    closed: int


class Subscribers(sse.Subscribers):
    """`count` streams of the watched account over CLIENT_PROCESSES clients, counted among
    the bench's own processes while they live."""

    def __init__(self, suite: Suite, key: str, count: int) -> None:
        self.helpers = suite.stack.helpers  # before: a failed start closes what it started
        super().__init__(_Client, suite.stack.web_port, key, count, CLIENT_PROCESSES, STAGGER)
        self.helpers += self.pids

    def cpu(self) -> float:
        return stack.cpu_seconds(self.pids)

    def record(self, mode: str, prompt: int = 0) -> None:
        """From now on, what came before forgotten: "stamp" each event's id as it comes,
        "count" them as they come, or "lazy": count them, read LAZY_BYTES at a time,
        except `prompt` streams in all, which stamp."""
        self.ask("record", mode, prompt)

    def report(self, full: bool = True) -> Report:
        out = Report([], [], [], [], 0, 0)
        for part in self.ask("report", full):
            out.ids += part["ids"]
            out.times += part["times"]
            out.stamped += part["stamped"]
            out.counts += part["counts"]
            out.dropped += part["dropped"]
            out.closed += part["closed"]
        return out

    def drain(self, expected: int, timeout: float = DRAIN_SECONDS) -> Report:
        """Counts until every open stream has `expected` events, or they stop growing
        (lazy streams read what they have first)."""
        self.ask("flush")
        last: list[list[int]] = [[]]
        reports: list[Report] = []

        def settled() -> bool:
            reports.append(self.report(full=False))
            counts = reports[-1].counts
            done = all(c >= expected for c in counts) or counts == last[0]
            last[0] = counts
            return done

        with contextlib.suppress(TimeoutError):
            wait_until(settled, timeout, "the subscribers to have every event", interval=0.5)
        return reports[-1]

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ValueError):
                self.helpers.remove(pid)
        super().close()


# --- the measurements -------------------------------------------------------------------------


class Events:
    """The measurements of this module, taken with a Suite's stack, seeder and results."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.watched: workload.Tenant
        self.members: list[workload.Member] = []
        self.turn = 0  # the mute toggles sent so far: the next ones continue the sequence

    @property
    def port(self) -> int:
        return self.suite.stack.web_port

    @property
    def facts(self) -> dict[str, Any]:
        return self.suite.results.facts.setdefault("events", {"runs": []})

    def _fresh(self) -> None:
        """The suite's empty Redis and new tenant (the other account), and the watched
        account with its connected sessions."""
        suite = self.suite
        suite._fresh()
        self.watched = suite.seeder.tenant()
        sessions = suite.seeder.sessions(self.watched, SESSIONS, 1)
        suite.seeder.connect(sessions)
        self.members = workload.flatten(sessions)
        self.turn = 0

    def _toggles(self, count: int) -> list[bytes]:
        """The next `count` mute toggles of the watched account: one change each."""
        s = self.suite.stack
        out = workload.mute_toggles(
            self.port, s.public_base_url, s.token, stack.ACCOUNT_SID, self.members,
            self.turn, count,
        )  # fmt: skip
        self.turn += count
        return out

    def _hooks(self, tenant: workload.Tenant) -> list[bytes]:
        """The throughput load (as the suite's webhook figure), to `tenant`'s fresh sessions."""
        suite = self.suite
        hint = suite.hint.get(ALONE, suite.hint.get("2p:webhook", 8000.0))
        need = suite._pool(ALONE, hint) // 4 + 1
        members = workload.flatten(suite.seeder.sessions(tenant, need, 1))
        return suite._webhooks(members, self.port, tenant=tenant)

    def _newest(self, tenant: workload.Tenant) -> str:
        newest = self.suite.r.xrevrange(account_events(tenant.account), count=1)
        return newest[0][0].decode() if newest else "0-0"

    def _web(self) -> list[int]:
        return self.suite.stack.web_workers()

    def _rss(self) -> int:
        return sum(stack.rss_kib(pid) for pid in stack.tree(self.suite.stack.procs["web"].pid))

    def _gauge(self, name: str) -> float:
        text = httpx.get(f"{self.suite.stack.public_base_url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + " ", name + "{")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    @contextlib.contextmanager
    def _subscribers(self, count: int) -> Iterator[Subscribers]:
        subs = Subscribers(self.suite, self.watched.key, count)
        try:
            yield subs
        finally:
            subs.close()

    # --- one run ----------------------------------------------------------------------------

    def run_all(self) -> None:
        """Every run with its own fresh `orchestrator web --workers 2`; then the profile."""
        suite = self.suite
        for run in range(1, suite.o.runs + 1):
            suite.log(f"events: run {run}/{suite.o.runs}")
            self._start()
            try:
                self.run()
            finally:
                suite.stack.stop("web")
        if suite.o.py_spy:
            self._start()
            try:
                self.profile()
            finally:
                suite.stack.stop("web")

    def _start(self) -> None:
        self.suite.stack.start_web(PROCESSES, cli=True)
        self._fresh()
        self._warmup()

    def _warmup(self) -> None:
        """An untimed second of the throughput load and of changes to a few subscribers."""
        loadgen.run(loadgen.Load(self.port, self._hooks(self.suite.tenant), duration=1.0))
        with self._subscribers(WARM_SUBSCRIBERS) as subs:
            toggles = self._toggles(int(RATE))
            loadgen.run(loadgen.Load(self.port, toggles, connections=1, duration=2, rate=RATE))
            subs.drain(int(RATE), timeout=5)
        time.sleep(0.5)

    def run(self) -> None:
        suite = self.suite
        o = suite.o
        run: dict[str, Any] = {}
        self.facts["runs"].append(run)
        seconds = max(2.0, 2 * o.duration)
        count = int(RATE * seconds)
        # No subscriber: the changes alone, then the throughput load.
        self._steady(STEADY, count, None)
        run["alone"] = self._throughput(ALONE, self.suite.tenant, None)
        # The worst case's sessions are written now: writing them is a change each, which
        # the 200 would be sent.
        worst = self._hooks(self.watched)
        time.sleep(0.5)
        run["gauge_before"] = self._gauge("orchestrator_event_subscribers")
        run["rss_before_kib"] = self._rss()
        with self._subscribers(SUBSCRIBERS) as subs:
            run["statuses"] = {str(k): subs.statuses.count(k) for k in set(subs.statuses)}
            time.sleep(0.5)
            run["gauge"] = self._gauge("orchestrator_event_subscribers")
            held = stack.connections(self._web())
            mine = set(subs.ports)
            run["spread"] = {
                str(pid): sum(1 for local, remote in c if local == self.port and remote in mine)
                for pid, c in held.items()
            }
            run["rss_connected_kib"] = self._rss()
            suite.log(
                f"  {SUBSCRIBERS} subscribers: per web process {list(run['spread'].values())}, "
                f"gauge {run['gauge']:.0f}, statuses {run['statuses']}"
            )
            stream0 = self._stream_bytes(self.watched)
            run["latency"] = self._steady(LATENCY, count, subs)
            run["watched_stream"] = self._stream_bytes(self.watched, stream0)
            time.sleep(0.5)
            run["rss_after_kib"] = self._rss()
            run["with_load"] = self._throughput(WATCHED, self.suite.tenant, subs)
            run["worst"] = self._throughput(WORST, self.watched, subs, worst)
            run["burst"] = self._burst(subs)
            run["dropped_total"] = self._gauge("orchestrator_event_subscribers_dropped_total")
        suite.log(
            f"  rss {run['rss_before_kib']} -> {run['rss_after_kib']} KiB "
            f"({(run['rss_after_kib'] - run['rss_before_kib']) / SUBSCRIBERS:.1f} KiB/subscriber);"
            f" stream {run['watched_stream']['per_entry']:.0f} B/entry"
        )

    def _stream_bytes(
        self, tenant: workload.Tenant, before: dict[str, float] | None = None
    ) -> dict[str, float]:
        """The account's stream: its bytes (`MEMORY USAGE`, every node counted) and entries;
        with `before`, what the entries added since cost each."""
        key = account_events(tenant.account)
        r = self.suite.r
        used = int(r.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
        entries = int(r.xlen(key))
        out = {"bytes": used, "entries": entries, "per_entry": used / max(1, entries)}
        if before is not None:
            added = entries - before["entries"]
            out["added"] = added
            out["per_entry"] = (used - before["bytes"]) / max(1, added)
        return out

    def _steady(self, key: str, count: int, subs: Subscribers | None) -> dict[str, Any]:
        """`count` changes at RATE, one connection; with `subs`, their latencies."""
        suite = self.suite
        reqs = self._toggles(count)
        after = self._newest(self.watched)
        if subs is not None:
            subs.record("stamp")
        cpu0 = subs.cpu() if subs else 0.0
        suite.quiet()
        started = time.monotonic()
        sample, out = suite._apply(key, self.port, reqs, "web", rate=RATE)
        wall = time.monotonic() - started
        if subs is None:
            suite.results.add(key, sample)
            return {}
        client_cpu = (subs.cpu() - cpu0) / wall
        expected = sum(1 for s in out.status if s // 100 == 2)
        report = subs.drain(expected)
        report = subs.report(full=True)
        figures = self._latencies(after, out, report)
        suite.results.add(
            key,
            dataclasses.replace(
                sample,
                p50=figures["p50"],
                p99=figures["p99"],
                count=figures["pairs"],
                errors=figures["lost"],
                client_cpu=client_cpu,
            ),
        )
        suite.log(
            f"  {key:<14} event latency p50 {figures['p50']:.2f} ms p99 {figures['p99']:.2f} ms "
            f"max {figures['max']:.2f} ms over {figures['pairs']:,} pairs; lost {figures['lost']},"
            f" unexpected {figures['unexpected']}, subscribers' CPU {client_cpu:.0%}"
        )
        return figures

    def _latencies(self, after: str, out: loadgen.Outcome, report: Report) -> dict[str, Any]:
        """Pair the k-th answered change with the k-th new entry of the watched stream, and
        each stamping subscriber's stamp of that entry's id with the change's answer; a
        counting one must have counted every entry."""
        from bench.suite import percentile

        r = self.suite.r
        key = account_events(self.watched.account)
        ids = [e[0] for e in r.xrange(key, min=f"({after}", max="+")]
        answered = [out.answered[i] for i in range(len(out.status)) if out.status[i] // 100 == 2]
        paired = len(ids) == len(answered)
        at = {entry: answered[k] for k, entry in enumerate(ids[: len(answered)])}
        lat: list[float] = []
        lost = unexpected = duplicated = 0
        for got, times, stamped, count in zip(
            report.ids, report.times, report.stamped, report.counts, strict=True
        ):
            if not stamped:
                lost += max(0, len(at) - count)
                unexpected += max(0, count - len(at))
                continue
            seen = set()
            for entry, t in zip(got, times, strict=True):
                when = at.get(entry)
                if when is None:
                    unexpected += 1
                elif entry in seen:
                    duplicated += 1
                else:
                    seen.add(entry)
                    lat.append((t - when) * 1000)
            lost += len(at) - len(seen)
        return {
            "events": len(ids),
            "answered": len(answered),
            "paired": paired,
            "subscribers": len(report.counts),
            "stamped": sum(report.stamped),
            "pairs": len(lat),
            "p50": percentile(lat, 0.5),
            "p99": percentile(lat, 0.99),
            "max": max(lat) if lat else math.nan,
            "min": min(lat) if lat else math.nan,
            "lost": lost,
            "unexpected": unexpected,
            "duplicated": duplicated,
            "dropped": report.dropped,
        }

    def _throughput(
        self,
        key: str,
        tenant: workload.Tenant,
        subs: Subscribers | None,
        hooks: list[bytes] | None = None,
    ) -> dict[str, Any]:
        """The webhook load to `tenant`, recorded as `key`; with `subs` and the other
        account as the target, the watched account's steady changes run meanwhile. Measured
        again while other processes take the machine, as every figure of the suite, except
        with `hooks` given (built before the subscribers came: one attempt)."""
        suite = self.suite
        once = functools.partial(self._throughput_once, key, tenant, subs, hooks)
        sample, facts = once() if hooks is not None else suite.retried(key, once, quiet=False)
        suite.results.add(key, sample)
        suite.hint[key] = max(suite.hint.get(key, 0.0), sample.rps)
        if key == ALONE:
            suite.hint[ALONE] = max(suite.hint.get(ALONE, 0.0), sample.rps)
        return facts

    def _throughput_once(
        self,
        key: str,
        tenant: workload.Tenant,
        subs: Subscribers | None,
        hooks: list[bytes] | None,
    ) -> tuple[Sample, dict[str, Any]]:
        suite = self.suite
        o = suite.o
        hooks = hooks if hooks is not None else self._hooks(tenant)
        beside = subs is not None and tenant is not self.watched
        facts: dict[str, Any] = {}
        steady = None
        if beside:
            toggles = self._toggles(int(RATE * (o.duration + 2 * OVERLAP)))
        after = self._newest(self.watched)
        stream0 = self._stream_bytes(tenant)
        if subs is not None:
            # All but PROMPT streams read lazily: the clients' CPU comes out of the same two
            # cores; the worst case only counts.
            subs.record("lazy", PROMPT if beside else 0)
        suite.quiet()  # a ratio of two loads: both on a machine as quiet as it gets
        cpu0 = subs.cpu() if subs else 0.0
        sent0 = self._gauge("orchestrator_events_sent_total") if subs else 0.0
        if beside:
            load = loadgen.Load(self.port, toggles, connections=1, duration=60, rate=RATE)
            steady = loadgen.start(load)
            suite.stack.helpers += steady.pids
            time.sleep(OVERLAP)
        started = time.monotonic()
        try:
            sample, out = suite._apply(key, self.port, hooks, "web")
        finally:
            if steady is not None:
                steady_out = steady.wait()
                for pid in steady.pids:
                    suite.stack.helpers.remove(pid)
        wall = time.monotonic() - started
        if subs is not None:  # handed to the subscribers' queues, by the web processes
            facts["sent"] = self._gauge("orchestrator_events_sent_total") - sent0
        facts["stream"] = self._stream_bytes(tenant, stream0)
        facts["entries"] = int(facts["stream"]["added"])
        facts["events_per_webhook"] = facts["entries"] / max(1, out.completed)
        if subs is None:
            return sample, facts
        client_cpu = (subs.cpu() - cpu0) / wall
        sample = dataclasses.replace(sample, client_cpu=client_cpu)
        if beside:
            expected = sum(1 for s in steady_out.status if s // 100 == 2)
            subs.drain(expected)
            figures = self._latencies(after, steady_out, subs.report(full=True))
            facts["latency"] = figures
            suite.results.add(
                UNDER_LOAD,
                dataclasses.replace(
                    sample,
                    rps=RATE,
                    p50=figures["p50"],
                    p99=figures["p99"],
                    count=figures["pairs"],
                    errors=figures["lost"],
                ),
            )
            suite.log(
                f"  {UNDER_LOAD:<14} event latency p50 {figures['p50']:.2f} ms p99 "
                f"{figures['p99']:.2f} ms over {figures['pairs']:,} pairs ({figures['stamped']} "
                f"stamping subscribers); lost {figures['lost']}, subscribers' CPU {client_cpu:.0%}"
            )
            return sample, facts
        drained = subs.drain(facts["entries"])
        facts.update(
            delivered=sum(drained.counts),
            expected=facts["entries"] * len(drained.counts),
            short=sum(max(0, facts["entries"] - c) for c in drained.counts),
            dropped=drained.dropped,
            seconds=wall,
            events_per_second=facts["entries"] / wall,
            deliveries_per_second=facts["sent"] / wall,
        )
        suite.log(
            f"  {key}: {facts['entries']:,} events ({facts['events_per_second']:,.0f}/s), "
            f"{facts['delivered']:,} of {facts['expected']:,} deliveries received "
            f"({facts['deliveries_per_second']:,.0f}/s handed out during the load), "
            f"{facts['dropped']} subscribers dropped, subscribers' CPU {client_cpu:.0%}"
        )
        return sample, facts

    def _burst(self, subs: Subscribers) -> dict[str, Any]:
        """The fan-out alone, as fast as it goes: the watched stream's newest entry written
        again BURST times straight into Redis (pipelined), the subscribers reading lazily.
        The web processes' CPU until every subscriber has them all, per delivery."""
        r = self.suite.r
        key = account_events(self.watched.account)
        ((_, fields),) = r.xrevrange(key, count=1)
        web = self._web()
        subs.record("lazy")
        cpu0 = {pid: stack.cpu_seconds([pid]) for pid in web}
        started = time.monotonic()
        for base in range(0, BURST, 500):
            pipe = r.pipeline(transaction=False)
            for _ in range(min(500, BURST - base)):
                pipe.xadd(key, fields)
            pipe.execute()
        report = subs.drain(BURST, timeout=120)
        wall = time.monotonic() - started
        cpu = {pid: stack.cpu_seconds([pid]) - c for pid, c in cpu0.items()}
        delivered = sum(min(c, BURST) for c in report.counts)
        out = {
            "events": BURST,
            "delivered": delivered,
            "short": BURST * len(report.counts) - delivered,
            "seconds": wall,  # an upper bound: the clients are polled every 0.5 s
            "web_cpu_seconds": sum(cpu.values()),
            "us_per_delivery": sum(cpu.values()) / max(1, delivered) * 1e6,
        }
        self.suite.log(
            f"  burst: {BURST:,} events to {len(report.counts)} subscribers in <= {wall:.1f} s, "
            f"{out['us_per_delivery']:.1f} us of web CPU per delivery, "
            f"{out['short']} deliveries missing"
        )
        return out

    # --- where the time goes -------------------------------------------------------------------

    def profile(self) -> None:
        """py-spy on the web process holding most subscribers: the steady changes (busy
        samples only) and the worst case."""
        suite = self.suite
        hooks = self._hooks(self.watched)  # before the subscribers: see run()
        with self._subscribers(SUBSCRIBERS) as subs:
            time.sleep(0.5)
            mine = set(subs.ports)
            held = stack.connections(self._web())
            counts = {
                pid: sum(1 for local, remote in c if local == self.port and remote in mine)
                for pid, c in held.items()
            }
            pid = max(counts, key=lambda p: counts[p])
            seconds = max(2.0, 2 * suite.o.duration)
            reqs = self._toggles(int(RATE * seconds))
            name = (
                f"web (one of 2, {counts[pid]} subscribers), {RATE:g} changes/s fanned out "
                "(busy samples only)"
            )
            subs.record("stamp")
            with suite._spy(name, pid, seconds, idle=False):
                suite._apply("profile:ev-steady", self.port, reqs, "web", rate=RATE)
            subs.record("lazy")
            name = (
                f"web (one of 2, {counts[pid]} subscribers), webhooks of the watched account "
                "at 32 connections"
            )
            with suite._spy(name, pid, suite.o.duration, idle=False):
                suite._apply("profile:ev-worst", self.port, hooks, "web")
