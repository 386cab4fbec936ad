"""RESULTS.md: the machine, the figures (min/median/max, ratio to B0), the targets, the notes.

Everything here is computed from one `Results`, so the file is always the latest run as a
whole; nothing is edited by hand. A ratio to B0 is taken within each run (same run, same
number of web processes, as the targets are stated), then the median over runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import agents as ag
from bench import capacity, control, soak
from bench import events as ev
from bench import queues as qu
from bench.suite import Options, Results, Sample
from workers.control import LEG_CONCURRENCY

B0 = "b0"


@dataclass(frozen=True)
class Target:
    name: str
    value: float  # NaN when not measured
    limit: float
    below: bool  # pass when value < limit (else value >= limit)
    shown: str
    digits: int = 2

    @property
    def verdict(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        if math.isnan(self.limit):
            return "figure (no limit)"
        return verdict(self.value < self.limit if self.below else self.value >= self.limit)


def _get(sample: Sample | dict[str, Any], attr: str) -> Any:
    return sample[attr] if isinstance(sample, dict) else getattr(sample, attr)


def median(samples: Sequence[Sample | dict[str, Any]], attr: str) -> float:
    values = [_get(s, attr) for s in samples if not math.isnan(_get(s, attr))]
    return statistics.median(values) if values else math.nan


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def row(*cells: object) -> str:
    """One row of a Markdown table."""
    return "|" + "".join(f" {c} |" if c != "" else " |" for c in cells)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table: the header, its rule, the rows. Every table of RESULTS.md is one."""
    return [row(*header), "|" + "---|" * len(header), *(row(*r) for r in rows)]


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _spread(samples: list[Sample], attr: str) -> str:
    values = [getattr(s, attr) for s in samples if not math.isnan(getattr(s, attr))]
    if not values:
        return "-"
    if len(values) == 1:
        return _num(values[0])
    return f"{_num(min(values))} / **{_num(statistics.median(values))}** / {_num(max(values))}"


def paired(samples: list[Sample], base: list[Sample], attr: str) -> float:
    """The median over runs of sample/base, each run with its own base (same run, so slow
    drift of the machine cancels); the ratio of medians if the runs do not pair up."""
    if samples and len(samples) == len(base):
        ratios = [
            getattr(a, attr) / getattr(b, attr)
            for a, b in zip(samples, base, strict=True)
            if getattr(b, attr) and not math.isnan(getattr(a, attr) / getattr(b, attr))
        ]
        if ratios:
            return statistics.median(ratios)
    a, b = median(samples, attr), median(base, attr)
    return a / b if b and not math.isnan(b) else math.nan


def _ratio(samples: list[Sample], base: list[Sample], attr: str) -> str:
    value = paired(samples, base, attr)
    return "-" if math.isnan(value) else f"{value:.2f}"


# --- the environment --------------------------------------------------------------------------


def environment() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        mem_kib = 0
    from orchestrator.redis_server import find_binary

    redis_server = subprocess.run(
        [find_binary(), "--version"], capture_output=True, text=True, timeout=10
    ).stdout.split()
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "hiredis" if importlib.util.find_spec("hiredis") else "pure Python (no hiredis)"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))})",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": ", ".join(
            f"{n} {version(n)}" for n in ("uvicorn", "starlette", "redis", "rq", "twilio", "h11")
        ),
        "redis-server": next((w for w in redis_server if w.startswith("v=")), "?")[2:],
        "uvicorn http/loop": f"{http} / {loop}",
        "redis-py reply parser": parser,
        "commit": commit or "?",
    }


# --- the report --------------------------------------------------------------------------------


def targets(results: Results) -> list[Target]:
    s = results.samples
    out: list[Target] = []

    def m(key: str, attr: str) -> float:
        return median(s.get(key, []), attr)

    def r(key: str, base: str, attr: str) -> float:
        return paired(s.get(key, []), s.get(base, []), attr)

    for procs in results.options.web_processes:
        p = f"{procs}p"
        hook, inv = r(f"{p}:webhook@1", f"{p}:{B0}", "rps"), r(f"{p}:invite@1", f"{p}:{B0}", "rps")
        out.append(Target(f"webhook req/s ≥ 0.7 x B0 (web x{procs})", hook, 0.7, False, "x"))
        out.append(Target(f"invite req/s ≥ 0.4 x B0 (web x{procs})", inv, 0.4, False, "x"))
        p99 = m(f"{p}:invite@1", "p99")
        out.append(
            Target(f"invite p99 < 25 ms at 32 connections (web x{procs})", p99, 25, True, "ms")
        )
    out.append(
        Target("dispatch p50 < 5 ms at 20 invites/s", m("1p:dispatch", "p50"), 5, True, "ms")
    )
    out.append(
        Target("dispatch p99 < 30 ms at 20 invites/s", m("1p:dispatch", "p99"), 30, True, "ms")
    )
    big = max(results.options.sizes)
    for kind in ("invite", "webhook"):
        for q in ("p50", "p99"):
            ratio = r(f"1p:{kind}@{big}", f"1p:{kind}@1", q)
            name = f"{kind} {q} at {big} members ≤ 1.2 x at 1 member"
            out.append(Target(name, ratio, 1.2 + 1e-9, True, "x"))
    rss = results.facts.get("rss")
    growth = (rss["after_kib"] - rss["before_kib"]) / rss["before_kib"] * 100 if rss else math.nan
    requests = rss["requests"] if rss else 0
    out.append(Target(f"web RSS growth < 10% over {requests:,} requests", growth, 10, True, "%"))
    out += control_targets(results)
    out += events_targets(results)
    out += agents_targets(results)
    out += queues_targets(results)
    return out


def control_targets(results: Results) -> list[Target]:
    """Session control (bench/control.py): removals reach Twilio fast, a page of
    ListSessions costs the same whatever the account keeps, and nothing answers non-2xx."""
    s = results.samples
    out = []
    for case in control.REMOVAL_CASES:
        value = median(s.get(control.removal_key(case), []), "p50")
        name = (
            f"DeleteChatMember 200 → emulator receives {control.REMOVAL_WHAT[case]}, p50 < 10 ms "
            f"({case} member, {control.REMOVAL_RATE:g} removals/s, worker running)"
        )
        out.append(Target(name, value, 10, True, "ms"))
    small, big = min(control.LIST_SIZES), max(control.LIST_SIZES)
    for q in ("p50", "p99"):
        ratio = paired(
            s.get(f"{control.KEY}list@{big}", []), s.get(f"{control.KEY}list@{small}", []), q
        )
        spread = max(ratio, 1 / ratio) if ratio and not math.isnan(ratio) else math.nan
        name = (
            f"ListSessions page 0 {q}: {big:,} and {small:,} sessions kept within 1.5 x of "
            "each other"
        )
        out.append(Target(name, spread, 1.5 + 1e-9, True, "x"))
    ops = [x for op in control.OPS for x in s.get(control.KEY + op.key, [])]
    errors = float(sum(x.errors for x in ops)) if ops else math.nan
    name = f"session-control loads ({len(control.OPS)}, 32 connections): answers other than 2xx"
    out.append(Target(name, errors, 1, True, "", digits=0))
    return out


LABELS = {
    "b0": "B0 floor (bare route, parse form, 1 HSET)",
    "webhook": "webhook: signed call-status",
    "invite": "invite: POST /sessions/{id}/members",
    "naive": "naive invite (Twilio create inside the request)",
    "invite@20/s": "invite at a steady 20/s (worker running)",
    "naive@20/s": "naive invite at a steady 20/s",
    "dispatch": "dispatch: invite 200 → emulator accepts the create",
}


def _label(key: str) -> str:
    kind = key.split(":", 1)[1]
    if kind in LABELS:
        return LABELS[kind]
    base, _, n = kind.partition("@")
    return f"{LABELS[base]}, {n}-member sessions"


# The columns of a load's figures against B0.
SAMPLE_COLUMNS = (
    "req/s (min / **median** / max)",
    "x B0",
    "p50 ms",
    "x B0",
    "p99 ms",
    "x B0",
    "web CPU ms/req",
    "Redis cmds/req (of them EVALSHA)",
    "CPU: web / Redis / generator / not ours",
)


def _cpu(samples: list[Sample], client: bool = False) -> str:
    """Who used the CPU: web / Redis / generator (/ the bench's clients) / not ours."""
    attrs = ("web_cpu", "redis_cpu", "gen_cpu", *(("client_cpu",) if client else ()), "other_cpu")
    return " / ".join(f"{median(samples, a):.0%}" for a in attrs)


def _sample_cells(samples: list[Sample], base: list[Sample], steady: bool = False) -> list[str]:
    """A load's SAMPLE_COLUMNS; `steady` (open loop) has no B0 to compare with."""
    rps = "20 (fixed)" if steady else _spread(samples, "rps")
    cells = [rps + (" *" if any(x.exhausted for x in samples) else "")]
    cells.append("-" if steady else _ratio(samples, base, "rps"))
    for q in ("p50", "p99"):
        cells += [_spread(samples, q), "-" if steady else _ratio(samples, base, q)]
    cells.append("-" if steady else f"{median(samples, 'web_ms_per_request'):.2f}")
    calls = f"{median(samples, 'redis_calls'):.1f} ({median(samples, 'redis_scripts'):.1f})"
    return [*cells, calls, _cpu(samples)]


def figures(results: Results) -> list[str]:
    rows = []
    order = ["b0"] + [f"webhook@{n}" for n in results.options.sizes]
    order += [f"invite@{n}" for n in results.options.sizes]
    order += ["naive", "invite@20/s", "naive@20/s", "dispatch"]
    for procs in results.options.web_processes:
        p = f"{procs}p"
        base = results.samples.get(f"{p}:{B0}", [])
        for kind in order:
            samples = results.samples.get(f"{p}:{kind}")
            if not samples:
                continue
            steady = kind.endswith("/s") or kind == "dispatch"  # open loop: no B0 to compare
            rows.append([_label(f"{p}:{kind}"), procs, *_sample_cells(samples, base, steady)])
    header = ("measurement", "web procs", *SAMPLE_COLUMNS)
    return table(header, rows)


TARGET_COLUMNS = ("target", "measured (median)", "limit", "verdict")


def _target_rows(ts: list[Target]) -> list[tuple[str, ...]]:
    rows = []
    for t in ts:
        count = t.digits == 0 and not math.isnan(t.value)  # a count: "0", limit "< 1"
        value = f"{t.value:,.0f}" if count else _num(t.value, 2)
        limit = f"{'<' if t.below else '≥'} {t.limit:g}" if t.digits == 0 else f"{t.limit:g}"
        shown = f"{value} {t.shown}".strip(), f"{limit} {t.shown}".strip()
        if math.isnan(t.limit):
            shown = shown[0], "-"
        rows.append((t.name, *shown, t.verdict))
    return rows


def render(results: Results, env: dict[str, str], command: str) -> str:
    o = results.options
    f = results.facts
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{command}` on {env['date']}; do not edit by hand. Each figure is the "
        f"median of {o.runs} run(s) of {o.duration:g} s (min / **median** / max); a ratio is "
        "the median over runs of the figure over B0's in the same run, with the same number "
        "of web processes.",
        "",
        "## Machine",
        "",
        *(f"- **{k}**: {v}" for k, v in env.items()),
        "- **load generator**: bench/loadgen.py (raw asyncio, pre-serialised keep-alive "
        "HTTP/1.1, 32 connections, one forked process; wrk is not installed)"
        + _ceiling_text(f.get("ceiling")),
        "",
        "## Targets",
        "",
    ]
    lines += table(TARGET_COLUMNS, _target_rows(targets(results)))
    lines += ["", "## Figures", "", *figures(results), ""]
    if any(x.exhausted for v in results.samples.values() for x in v):
        lines += ["\\* some runs used up their pre-built requests before the time was up.", ""]
    if any(k.startswith(("1p:webhook", "1p:invite")) for k in results.samples):
        lines += _method(results)
    phases = results.samples.get("1p:dispatch", [])
    if phases and not math.isnan(median(phases, "to_start")):
        lines += [
            "Dispatch, split at the RQ job's own timestamps (`started_at`, `ended_at`; medians "
            f"over runs of per-run medians): invite 200 → job started "
            f"**{median(phases, 'to_start'):.2f} ms**, job started → emulator accepts the "
            f"create **{median(phases, 'to_accept'):.2f} ms**, accepted → job ended "
            f"{median(phases, 'to_end'):.2f} ms.",
            "",
        ]
    commands = f.get("1p:dispatch_commands")
    if commands:
        lines += [
            "Redis commands per dial while dispatch is measured (INFO commandstats; this counts "
            "the invite, the worker's job and the emulator's callbacks to the web, and commands "
            "run inside scripts): " + ", ".join(f"{name} {n:.1f}" for name, n in commands) + ".",
            "",
        ]
    lines += _control(results)
    lines += _agents(results)
    lines += _queues(results)
    lines += _events(results)
    lines += _memory(f.get("memory"))
    lines += _rss(f.get("rss"))
    lines += _profile(f.get("profile"))
    lines += _long_runs()
    lines += ["## Where the time goes", "", *notes(results), ""]
    return "\n".join(lines)


def _long_runs() -> list[str]:
    """What the soak and capacity commands last wrote: they run for longer than the rest of
    the bench together, so `python -m bench` shows their latest figures instead of running
    them."""
    lines = []
    here = Path(__file__).parent
    for path, section in (
        (here / "soak.json", soak_section),
        (here / "capacity.json", capacity_section),
    ):
        if path.exists():
            lines += [section(json.loads(path.read_text())), ""]
        else:
            lines += [f"({path.name} is missing: run `python -m bench.{path.stem}` first.)", ""]
    return lines


def _ceiling_text(c: dict[str, Any] | None) -> str:
    if not c:
        return ""
    return (
        f". Its ceiling against a trivial asyncio server (fixed 204): **{c['rps']:,.0f} req/s** "
        f"at 32 connections, p50 {c['p50']:.2f} ms, generator CPU {c['gen_cpu']:.0%} of a core"
    )


def _method(results: Results) -> list[str]:
    f = results.facts
    return [
        "How each figure is taken:",
        "",
        "- Closed loop, 32 keep-alive connections, each sending its next request when the "
        "previous answer is complete; every request is distinct and pre-built.",
        "- Webhooks: Twilio's call-progress parameters, signed as Twilio signs them, one "
        "idempotency token each; every member gets initiated, ringing, in-progress, completed "
        "in order. B0 gets the same bodies and headers on its own route.",
        "- Invites: JSON bodies with distinct numbers; with 1 and 10 members each invite goes "
        "to its own session, with 100 members each session takes ~10 (100 → ~110). The worker "
        "is stopped while invites are measured (their jobs wait in the queue; each run starts "
        "from an empty Redis), so the figure is the web process alone.",
        f"- Dispatch: worker running, open loop of 20 invites/s; the emulator's accept time "
        f"comes from {f.get('dispatch_method', '?')}, minus the client's time of the 200.",
        f"- Naive: bench/naive.py with Twilio simulated by {f.get('naive_twilio', '?')}.",
        "- CPU: user+system time of the web process(es), Redis and the generator over the "
        "measurement, as a share of one core (the machine has two); *not ours* is the "
        "machine's busy time (/proc/stat) less every bench process: other work sharing the "
        "machine, which lowers throughput and raises latency of that run.",
        "",
    ]


def _control(results: Results) -> list[str]:
    """The session-control section: each operation against B0, removals, ListSessions."""
    s = results.samples
    ops = [op for op in control.OPS if s.get(control.KEY + op.key)]
    removals = [c for c in control.REMOVAL_CASES if s.get(control.removal_key(c))]
    if not ops and not removals:
        return []
    base = s.get("1p:b0", [])
    lines = [
        "## Session control",
        "",
        "One web process, closed loop at 32 connections, the worker stopped (the control "
        "jobs the changes write wait in the queue), each run against its own B0; every "
        "request acts on state prepared for it (what each does is listed below the table). "
        "A row fails if any request got an answer other than 2xx (or none).",
        "",
    ]
    rows = []
    for op in ops:
        samples = s[control.KEY + op.key]
        errors = sum(x.errors for x in samples)
        cells = _sample_cells(samples, base)
        rows.append([f"{op.name}: `{op.route}`", *cells, errors, verdict(errors == 0)])
    lines += table(("operation", *SAMPLE_COLUMNS, "non-2xx", "verdict"), rows)
    lines += ["", "What each request does:", ""]
    lines += [f"- {op.name} `{op.route}`: {op.does}." for op in ops]
    lines.append("")
    small, big = min(control.LIST_SIZES), max(control.LIST_SIZES)
    listed = [s.get(f"{control.KEY}list@{n}", []) for n in (small, big)]
    if all(listed):
        p50 = paired(listed[1], listed[0], "p50")
        p99 = paired(listed[1], listed[0], "p99")
        lines += [
            f"ListSessions, page 0 of {control.PAGE_SIZE}: with {big:,} sessions kept, p50 "
            f"{median(listed[1], 'p50'):.2f} ms and p99 {median(listed[1], 'p99'):.2f} ms "
            f"against {median(listed[0], 'p50'):.2f} / {median(listed[0], 'p99'):.2f} ms with "
            f"{small:,} ({p50:.2f} x and {p99:.2f} x; web CPU "
            f"{median(listed[1], 'web_ms_per_request'):.2f} vs "
            f"{median(listed[0], 'web_ms_per_request'):.2f} ms per request).",
            "",
        ]
    if removals:
        missing = results.facts.get("ctl_missing", {})
        lines += [
            f"Removals at a steady {control.REMOVAL_RATE:g}/s, worker running: the time from "
            "each DeleteChatMember's 200 (client clock) to the emulator receiving that leg's "
            "cancel or participant DELETE (its clock: the same machine's). Each session is a "
            "real incoming call (the caller in the conference) with one member the worker "
            "dialled; a ringing member's number ends 0002 and never answers. The control job "
            "first fetches the call (and, for a connected leg, its participant), as Twilio "
            "requires; the split is at the first of its requests the emulator received.",
            "",
        ]
        rows = []
        for case in removals:
            key = control.removal_key(case)
            samples = s[key]
            rows.append(
                [
                    f"{case}: {control.REMOVAL_WHAT[case]}",
                    str(sum(x.count for x in samples)),
                    _spread(samples, "p50"),
                    _spread(samples, "p99"),
                    _num(median(samples, "to_start"), 2),
                    _num(median(samples, "to_accept"), 2),
                    missing.get(key, 0),
                    sum(x.errors for x in samples),
                ]
            )
        header = (
            "member", "removals timed", "200 → Twilio gets it: p50 ms", "p99 ms",
            "200 → first Twilio request (median ms)", "first request → the cancel/DELETE",
            "never arrived", "non-2xx",
        )  # fmt: skip
        lines += [*table(header, rows), ""]
    return lines


# --- agents' calls (bench/agents.py) -----------------------------------------------------------

AGENTS_HEADING = "## Agents' calls"
# Every target of the section starts with one of these (`--splice` replaces such rows).
AGENTS_TARGETS = ("GetAppConfig ", "softphone call: ", "click to call: ", "agents' calls: ")
AGENTS_CALLS = (
    (
        ag.SOFTPHONE,
        ag.JOIN,
        "softphone call: the agent's participant-join callback sent → emulator accepts the "
        "destination's participant create",
    ),
    (
        ag.CLICK,
        ag.CLICK_REQUESTS,
        "click to call: NewOutgoingSession 200 → emulator accepts the agent's participant create",
    ),
)


def agents_targets(results: Results) -> list[Target]:
    """Agents' calls: GetAppConfig against B0, each call's first leg at Twilio fast, and
    every request answered 2xx with every create arriving."""
    s = results.samples
    keys = [ag.APP_CONFIG] + [k for k, _, _ in AGENTS_CALLS]
    if not any(s.get(k) for k in keys):
        return []
    ratio = paired(s.get(ag.APP_CONFIG, []), s.get(f"1p:{B0}", []), "rps")
    out = [
        Target(
            "GetAppConfig req/s ≥ 0.5 x B0 (web x1, 32 connections, keys of 100 users, an "
            "access token minted per request)",
            ratio,
            0.5,
            False,
            "x",
        )
    ]
    for key, _, what in AGENTS_CALLS:
        name = f"{what}, p50 < 10 ms ({ag.RATE:g} calls/s, worker running)"
        out.append(Target(name, median(s.get(key, []), "p50"), 10, True, "ms"))
    errors = [x.errors for k in keys for x in s.get(k, [])]
    out.append(
        Target(
            "agents' calls: answers other than 2xx, and participant creates that never reached "
            "the emulator",
            float(sum(errors)) if errors else math.nan,
            1,
            True,
            "",
            digits=0,
        )
    )
    return out


def _agents(results: Results, provenance: str = "") -> list[str]:
    """The agents' calls section: GetAppConfig against B0, then the two calls' latency."""
    s = results.samples
    base = s.get(f"1p:{B0}", [])
    if not s.get(ag.APP_CONFIG) and not any(s.get(k) for k, _, _ in AGENTS_CALLS):
        return []
    lines = [AGENTS_HEADING, ""]
    if provenance:
        lines += [provenance, ""]
    lines += [
        "**GetAppConfig**: one web process, closed loop at 32 connections, the worker stopped, "
        f"against B0 of the same run. `GET {ag.APP_CONFIG_ROUTE}` with the keys of "
        f"{ag.USERS} users of one account, round robin; every answer mints a Twilio access "
        "token (the `twilio` library's AccessToken, HS256) with the API key and TwiML App "
        "that `orchestrator twilio setup` made at the emulator when the stack started.",
        "",
    ]
    rows = []
    for label, samples in (
        ("B0 floor (bare route, parse form, 1 HSET)", base),
        (f"GetAppConfig: `GET {ag.APP_CONFIG_ROUTE}`", s.get(ag.APP_CONFIG, [])),
    ):
        if samples:
            errors = sum(x.errors for x in samples)
            rows.append([label, *_sample_cells(samples, base), errors])
    lines += [*table(("load", *SAMPLE_COLUMNS, "non-2xx"), rows), ""]
    lines += [
        f"**Calls** at a steady {ag.RATE:g}/s, worker running, each run after 5 untimed "
        "calls of each kind; the emulator's accept time is its `GET /_emulator/creates` "
        "time of the participant create with the expected label (the member id; one "
        "machine, one clock).",
        "",
        "- *Softphone call*: the web driven as Twilio drives it, every request signed with "
        "the auth token. First, untimed, each call's voice webhook (`POST /twilio/voice`, "
        "`From=client:<user id>`, `To` a number, `Direction=inbound`): the service creates "
        "the outgoing session and answers TwiML joining the agent's leg to the conference "
        "named after it. Then, at the steady rate, each agent leg's conference-status "
        "`participant-join` (`FriendlyName` the session, `CallSid` the softphone's), which "
        "releases the destination's dial job. Timed from when the generator sends the join "
        "callback (its due time in the open loop: the web receiving it) to the emulator "
        "accepting the destination's create. The web is driven directly, not through the "
        "emulator's softphones, so the interval starts exactly when the web gets the "
        "callback rather than when the emulator logged sending it.",
        '- *Click to call*: `POST /sessions/outgoing` `{"numberToDial"}` with a user\'s '
        "key; timed from its 200 to the emulator accepting the agent's participant create "
        "(label: the session's first member, the agent). No softphone is registered at the "
        "emulator, so the agent's leg rings unanswered and the destination is never dialled.",
        "",
    ]
    rows = []
    for key, requests_key, what in AGENTS_CALLS:
        samples = s.get(key, [])
        if not samples:
            continue
        sent = s.get(requests_key, [])
        rows.append(
            [
                what,
                str(sum(x.count for x in samples)),
                _spread(samples, "p50"),
                _spread(samples, "p99"),
                _num(median(sent, "p50"), 2),
                _num(median(samples, "to_start"), 2),
                _num(median(samples, "to_accept"), 2),
                _num(median(samples, "to_end"), 2),
                sum(x.errors for x in samples),
                _cpu(sent),
            ]
        )
    header = (
        "call", "calls timed", "p50 ms (min / **median** / max)", "p99 ms",
        "the request's own answer, p50 ms", "200 → RQ job started (median ms)",
        "job started → create accepted", "accepted → job ended",
        "non-2xx + creates missing", "CPU: web / Redis / generator / not ours",
    )  # fmt: skip
    lines += [*table(header, rows), ""]
    return lines


# --- ring queues (bench/queues.py) ------------------------------------------------------------

QUEUES_HEADING = "## Ring queues"
# Every target of the section starts with one of these (`--splice` replaces such rows).
QUEUES_TARGETS = ("ring queue", "ring-all", "web x1 ")
# The web x1 targets of the file whose ratios the queues' run must keep (within 10 %).
REFERENCE_ROWS = {
    "webhook": "| webhook req/s ≥ 0.7 x B0 (web x1) |",
    "invite": "| invite req/s ≥ 0.4 x B0 (web x1) |",
}


def _reference_ratios(lines: list[str]) -> dict[str, float]:
    """The web x1 webhook and invite ratios to B0 in a RESULTS.md's targets."""
    out = {}
    for kind, start in REFERENCE_ROWS.items():
        line = next((x for x in lines if x.startswith(start)), None)
        if line is not None:
            out[kind] = float(line[len(start) :].split("|")[0].strip().split()[0])
    return out


def _queue_runs(results: Results) -> list[dict[str, Any]]:
    return results.facts.get("queues", {}).get("runs", [])


def _spread_by_workers(results: Results) -> dict[int, dict[str, float]]:
    """Worker count -> the ring-all create spreads over every run: median, worst, calls."""
    spreads: dict[int, list[float]] = {}
    for run in _queue_runs(results):
        for count, found in run.get("spread", {}).items():
            spreads.setdefault(int(count), []).extend(found["spreads"])
    return {
        n: {
            "p50": _mid(v),
            "p95": _nearest(v, 0.95),
            "max": max(v, default=math.nan),
            "calls": len(v),
        }
        for n, v in sorted(spreads.items())
    }


def _nearest(values: list[float], q: float) -> float:
    """Nearest-rank percentile (bench.suite's)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def _smallest_workers(results: Results) -> int | None:
    by = _spread_by_workers(results)
    return next((n for n, v in by.items() if v["p95"] <= qu.SPREAD_LIMIT_MS), None)


def _withdraw_by_workers(results: Results) -> dict[int, dict[str, float]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for run in _queue_runs(results):
        for count, w in run.get("withdraw", {}).items():
            found.setdefault(int(count), []).append(w)
    return {
        n: {
            "p50": _mid([w["p50"] for w in ws]),
            "p99": _mid([w["p99"] for w in ws]),
            "first": _mid([w["first_p50"] for w in ws]),
            "min": min(w["p50"] for w in ws),
            "max": max(w["p50"] for w in ws),
            "calls": sum(w["calls"] for w in ws),
            "missing": sum(w["missing"] for w in ws),
        }
        for n, ws in sorted(found.items())
    }


def queues_targets(results: Results) -> list[Target]:
    """Ring queues: a queued call rings an agent fast, ring-all's other phones stop fast,
    enough workers keep ring-all's creates together, the soak keeps every promise, and the
    web's own loads are as fast as before queues."""
    s = results.samples
    q = results.facts.get("queues")
    if not q:
        return []
    out = []
    offer = s.get(qu.OFFER, [])
    what = (
        f"ring queue: voice webhook 200 → emulator accepts the first offer's participant "
        f"create ({qu.RATE:g} calls/s to a longest-idle queue of {qu.OFFER_AGENTS} Ready agents, "
        "1 worker)"
    )
    out.append(Target(f"{what}, p50 < 20 ms", median(offer, "p50"), 20, True, "ms"))
    out.append(Target(f"{what}, p99 < 100 ms", median(offer, "p99"), 100, True, "ms"))
    for n, w in _withdraw_by_workers(results).items():
        name = (
            f"ring-all to {qu.RING_ALL}: the winner's join at the web → emulator receives the "
            f"last of the other {qu.RING_ALL - 1} legs' cancels, p50 < 10 ms ({n} worker"
            f"{'s' if n > 1 else ''})"
        )
        out.append(Target(name, w["p50"], 10, True, "ms"))
    by = _spread_by_workers(results)
    smallest = _smallest_workers(results)
    shown = smallest if smallest is not None else max(by, default=0)
    if by:
        name = (
            f"ring-all to {qu.RING_ALL}, creates answered after {qu.SPREAD_DELAY * 1000:.0f} ms: "
            f"the last offer's create ≤ {qu.SPREAD_LIMIT_MS:.0f} ms after the first (95th "
            f"percentile of {by[shown]['calls']} calls; worst {by[shown]['max']:.0f} ms), at "
            f"{shown} workers: the fewest that meet it of {', '.join(str(n) for n in by)}"
        )
        out.append(Target(name, by[shown]["p95"], qu.SPREAD_LIMIT_MS + 1e-9, True, "ms"))
    soak = q.get("soak")
    if soak:
        seconds = soak["calls"] / soak["rate"] if soak["rate"] else math.nan
        scale = (
            f"{soak['agents']} agents, {soak['calls']:,} calls over {seconds:.0f} s, longest-idle"
        )
        checks = (
            ("agents offered a call while their previous call's leg was not over yet "
             f"({soak['overlapping_offers']} while that call was live, "
             f"{soak['offers_before_last_leg_over']} after it was ended but before its leg "
             f"left; {soak['snapshot_doubles']} snapshots of an agent in two sessions)",
             soak["overlapping_offers"] + soak["offers_before_last_leg_over"]
             + soak["snapshot_doubles"]),
            ("a call queued (no offer ringing) while a Ready agent was free for 1 s or more "
             f"(snapshots {qu.SNAPSHOT_SECONDS * 1000:.0f} ms apart; "
             f"{soak['queued_while_free']} single snapshots showed it)",
             float(soak["queued_while_free_longest_s"] >= 1.0)),
            (f"offers not to the longest-idle free agent (of {soak['offers']:,}; "
             f"{soak['idle_undecidable']} too close to call)", soak["idle_wrong"]),
            ("voice webhooks answered other than 200", soak["errors"]),
        )  # fmt: skip
        for text, value in checks:
            out.append(Target(f"ring queue soak ({scale}): {text}", float(value), 1, True, "", 0))
        out.append(
            Target(
                f"ring queue soak: Redis commands per queued call (scripts' inner calls "
                f"included; {soak['scripts_per_call']:.1f} of them EVALSHA)",
                soak["commands_per_call"],
                math.nan,
                True,
                "",
                1,
            )
        )
        out.append(
            Target(
                "ring queue soak: Redis used_memory growth per call (sessions kept for "
                "the retention time)",
                soak["memory_per_call"],
                math.nan,
                True,
                "bytes",
                0,
            )
        )
    # With `--before REV`, the same runs measured that revision's web too: the change is
    # this web's req/s over that one's, run by run (the same B0 divides both).
    before = results.options.before
    for kind, key in (("webhook", qu.WEBHOOK), ("invite", qu.INVITE)) if before else ():
        then = s.get(key + qu.BEFORE, [])
        if not then:
            continue
        now, was = (paired(x, s.get(f"1p:{B0}", []), "rps") for x in (s.get(key, []), then))
        change = abs(paired(s.get(key, []), then, "rps") - 1) * 100
        name = (
            f"web x1 {kind} req/s x B0 ({now:.2f} x) within 10 % of the web before ring queues "
            f"({before}: {was:.2f} x), the two taking turns in the same runs"
        )
        out.append(Target(name, change, 10, True, "%"))
    # Without it, only a spliced run has the file's ratios to compare with (a full run's
    # are its own), and those may come from another machine.
    reference = q.get("reference", {}) if not before else {}
    for kind, key in (("webhook", qu.WEBHOOK), ("invite", qu.INVITE)) if reference else ():
        now = paired(s.get(key, []), s.get(f"1p:{B0}", []), "rps")
        before = reference.get(kind, math.nan)
        change = abs(now / before - 1) * 100 if before else math.nan
        name = (
            f"web x1 {kind} req/s x B0 with ring queues ({now:.2f} x) within 10 % of this "
            f"file's ({before:.2f} x)"
        )
        out.append(Target(name, change, 10, True, "%"))
        rerun = q.get("ratio_rerun", {}).get(kind)
        if rerun is not None and before:
            name = (
                f"web x1 {kind} req/s x B0, the same loads re-run alone ({rerun:.2f} x, 3 runs "
                f"with their own B0; see the section), within 10 % of this file's ({before:.2f} x)"
            )
            out.append(Target(name, abs(rerun / before - 1) * 100, 10, True, "%"))
    return out


def _queues(results: Results, provenance: str = "") -> list[str]:
    """The ring queues section: loads against B0, offer and withdraw latency, ring-all's
    creates by worker count, the soak."""
    s = results.samples
    q = results.facts.get("queues")
    if not q:
        return []
    base = s.get(f"1p:{B0}", [])
    lines = [QUEUES_HEADING, ""]
    if provenance:
        lines += [provenance, ""]
    lines += [
        "Each measurement stages a queue as an operator and agents do: the queue and its "
        "number, users as its agents, each agent's softphone registered at the emulator with "
        "the token of `GET /app/config`, and the agent `Ready` (`PATCH /app/agent-state`); "
        "wrap-up 0 s, ring timeout 60 s. Callers are the signed voice webhook (`POST "
        "/twilio/voice`, `To` the queue's number) sent straight to the web, so an interval "
        "can start at the web's own answer; a call ends by EndSession. Every load is "
        "under 60 s (2-core machine).",
        "",
        "**The web's own loads** with ring queues in the code, against B0 of the same run "
        "(closed loop, 32 connections, worker stopped), and the voice webhooks of the offer "
        "load:",
        "",
    ]
    rows = []
    before = results.options.before
    for label, key, steady in (
        ("B0 floor (bare route, parse form, 1 HSET)", f"1p:{B0}", False),
        ("webhook: signed call-status, 1-member sessions", qu.WEBHOOK, False),
        (f"webhook, the web of {before} (before ring queues)", qu.WEBHOOK + qu.BEFORE, False),
        ("invite: POST /sessions/{id}/members, 1-member sessions", qu.INVITE, False),
        (f"invite, the web of {before} (before ring queues)", qu.INVITE + qu.BEFORE, False),
        (f"voice webhook to a queue's number at {qu.RATE:g}/s (worker running)", qu.VOICE, True),
    ):
        samples = s.get(key, [])
        if samples:
            cells = _sample_cells(samples, base, steady)
            if steady:
                cells[0] = f"{qu.RATE:g} (fixed)"
            rows.append([label, *cells, sum(x.errors for x in samples)])
    lines += [*table(("load", *SAMPLE_COLUMNS, "non-2xx"), rows), ""]
    if q.get("ratio_rerun_text"):
        lines += [q["ratio_rerun_text"], ""]
    offer = s.get(qu.OFFER, [])
    lines += [
        f"**Offer**: {qu.RATE:g} calls/s for {qu.OFFER_SECONDS:g} s to a longest-idle queue "
        f"of {qu.OFFER_AGENTS} Ready agents whose softphones answer after the emulator's ring "
        f"time; each call ends {qu.HOLD_SECONDS:g} s after it came in, so agents keep coming "
        "free. Timed from each voice webhook's 200 (the generator's clock) to the emulator "
        "accepting the participant create labelled with the call's first offer (its member "
        "id; `GET /_emulator/creates` times; one machine, one clock).",
        "",
        f"**Withdraw**: ring-all to {qu.RING_ALL} agents, one softphone answering after the "
        f"ring time and {qu.RING_ALL - 1} never answering, one call at a time "
        f"({qu.WITHDRAW_CALLS} timed after 2 untimed). Timed from the web's receipt of the "
        "winner's participant-join (the session log's \"took the call\" line, which the web "
        "stamps in ms as it handles the callback; the truncation can only lengthen the "
        "interval) to the emulator receiving the last of the other legs' cancels (its record "
        "of each call's `POST Calls/{sid}` `Status=canceled`).",
        "",
    ]
    rows = []
    if offer:
        rows.append(
            [
                "offer: voice webhook 200 → first offer's create (1 worker)",
                str(sum(x.count for x in offer)),
                _spread(offer, "p50"),
                _spread(offer, "p99"),
                f"{_num(median(offer, 'to_start'), 2)} → {_num(median(offer, 'to_accept'), 2)} "
                f"→ {_num(median(offer, 'to_end'), 2)}",
                sum(x.errors for x in offer),
            ]
        )
    for n, w in _withdraw_by_workers(results).items():
        rows.append(
            [
                f"withdraw: winner's join → last of {qu.RING_ALL - 1} cancels ({n} worker"
                f"{'s' if n > 1 else ''}; the first cancel: p50 {w['first']:.1f} ms)",
                str(w["calls"]),
                f"{w['min']:.1f} / **{w['p50']:.1f}** / {w['max']:.1f}",
                _num(w["p99"], 1),
                "-",
                w["missing"],
            ]
        )
    floors = [run["withdraw_floor"] for run in _queue_runs(results) if "withdraw_floor" in run]
    for how, what in (
        ("bare", "a bare client writing all 9 at once on open connections"),
        ("library", f"the helper library from {LEG_CONCURRENCY} threads, as the control job"),
    ):
        found = [f[how] for f in floors if how in f]
        if found:
            p50s = [f["p50"] for f in found]
            rows.append(
                [
                    f"the emulator's floor: {qu.RING_ALL - 1} ringing legs cancelled by {what} "
                    f"(first byte sent → last cancel received; the first: p50 "
                    f"{_mid([f['first_p50'] for f in found]):.1f} ms)",
                    str(sum(len(f["delays"]) for f in found)),
                    f"{min(p50s):.1f} / **{_mid(p50s):.1f}** / {max(p50s):.1f}",
                    _num(_mid([f["p99"] for f in found]), 1),
                    "-",
                    0,
                ]
            )
    header = (
        "interval", "calls timed", "p50 ms (min / **median** / max)", "p99 ms (median)",
        "200 → RQ job started → create accepted → job ended (medians, ms)",
        "never arrived + non-2xx",
    )  # fmt: skip
    lines += [*table(header, rows), ""]
    if floors:
        lines += [
            "The last two rows take the service out: the same nine cancels of a conference's "
            "ringing legs (their callbacks going to the web, as an offer's do), sent straight "
            "to the emulator, the web otherwise idle and no worker running. They are what the "
            "emulator and the helper library cost on this machine before any of the service's "
            "own work.",
            "",
        ]
    by = _spread_by_workers(results)
    if by:
        smallest = _smallest_workers(results)
        lines += [
            f"**Ring-all's creates by worker count**: ring-all to {qu.RING_ALL} agents whose "
            "softphones never answer, the emulator answering each participant create after "
            f"{qu.SPREAD_DELAY * 1000:.0f} ms (`POST /_emulator/faults mode=delay`; it "
            "accepts the create at once and holds its answer, so a worker is busy that long), "
            f"{qu.SPREAD_CALLS} calls per count and run, one at a time. The spread is the last "
            "offer's create time minus the first's (emulator times). Each worker process "
            "dials one create at a time.",
            "",
        ]
        extra = [r["supplementary"] for r in _queue_runs(results) if r.get("supplementary")]
        lines += [*extra, ""] if extra else []
        rows = [
            [
                n,
                v["calls"],
                f"{v['p50']:.0f}",
                f"{v['p95']:.0f}",
                f"{v['max']:.0f}",
                verdict(v["p95"] <= qu.SPREAD_LIMIT_MS),
            ]
            for n, v in by.items()
        ]
        header = (
            "workers", "calls", "spread p50 ms", "p95 ms", "worst ms",
            f"p95 ≤ {qu.SPREAD_LIMIT_MS:.0f} ms",
        )  # fmt: skip
        lines += [*table(header, rows), ""]
        if smallest is not None:
            lines += [
                f"The fewest workers that keep ring-all to {qu.RING_ALL} within "
                f"{qu.SPREAD_LIMIT_MS:.0f} ms: **{smallest}** (docs/deployment.md).",
                "",
            ]
    soak = q.get("soak")
    if soak:
        lines += _queue_soak(soak)
    return lines


def _queue_soak(soak: dict[str, Any]) -> list[str]:
    seconds = soak["calls"] / soak["rate"] if soak["rate"] else math.nan
    top = ", ".join(f"{name} {n:.1f}" for name, n in soak["top_commands"])
    states = ", ".join(f"{k or 'none'} {v}" for k, v in sorted(soak["queue_states"].items()))
    return [
        f"**Soak** (once, after the runs): a longest-idle queue of {soak['agents']} agents, "
        f"{soak['calls']:,} calls at an even {soak['rate']:.1f}/s over {seconds:.0f} s, one "
        f"worker; each call held {soak['hold'][0]:g}-{soak['hold'][1]:g} s (uniform) after "
        f"its agent connected, then ended by EndSession; {soak['seconds']:.0f} s from the "
        "first call to the last one's end. The calls last long enough that at times every "
        "agent is busy and calls wait in the queue; the bench's `TWILIO_CPS` is 1000, so "
        "Twilio's dial rate is not what limits it.",
        "",
        f"- Offers: {soak['offers']:,} in {soak['sessions']:,} sessions (their queueState at "
        f"the end: {states}).",
        f"- An atomic snapshot of the queue and every agent (one read-only Lua script, "
        f"{qu.SNAPSHOT_SECONDS * 1000:.0f} ms apart): {soak['snapshots']} snapshots; up to "
        f"{soak['most_waiting']} calls waiting; calls queued with no offer ringing in "
        f"{soak['snapshots_with_waiting']} snapshots (the longest such wait "
        f"{soak['longest_queued_ms'] / 1000:.1f} s); free Ready agents at fewest "
        f"{soak['fewest_free']}. A call queued while an agent was free: "
        f"**{soak['queued_while_free']}** snapshots, at most "
        f"{soak['queued_while_free_longest_s']:.2f} s in a row; an agent in two sessions: "
        f"**{soak['snapshot_doubles']}** snapshots.",
        "- Overlap, from the sessions' logs: each agent's offers in time order, each from "
        'its "Offered to" line to the last line naming the agent (their leg left the '
        "conference). Offers made before the agent's previous call's leg was over: "
        f"**{soak['overlapping_offers']}** while that call was still live, "
        f"**{soak['offers_before_last_leg_over']}** after it had been ended by EndSession "
        "but before Twilio had hung their leg up"
        + (
            f" (the new offer came {soak['leg_still_up_ms_p50']:.0f} ms, median, at most "
            f"{soak['leg_still_up_ms_max']:.0f} ms, before the old leg left)."
            if soak["offers_before_last_leg_over"]
            else "."
        ),
        "- Longest-idle, from the same records and the AgentStateChanged entries of the "
        "account's event stream (Redis time): at each offer, another agent who was Ready, "
        "outside any offer span, and Ready since earlier than the chosen one would have been "
        f"the better choice. Offers with a clearly better agent: **{soak['idle_wrong']}**; "
        f"offers where a better one is within {qu.TIE_MS:g} ms of a boundary (each offer's "
        "time is Redis', as the stream's, but the offer spans come from log lines, which "
        f"carry the web's or worker's clock: undecidable): {soak['idle_undecidable']}.",
        f"- Redis: {soak['commands_per_call']:.0f} commands per offered call, "
        f"{soak['scripts_per_call']:.1f} of them EVALSHA (INFO commandstats over the whole "
        "soak, calls' ends included, less the commands of the bench's own snapshots and "
        f"polling); the most frequent (those of the bench included): {top}. "
        f"used_memory {soak['memory_before'] / 2**20:.1f} MiB → "
        f"{soak['memory_after'] / 2**20:.1f} MiB: {soak['memory_per_call']:,.0f} bytes per "
        "call (sessions, logs, event entries and jobs kept for their retention times).",
        "",
    ]


def splice(text: str, results: Results, env: dict[str, str], command: str) -> str:
    """`text` (a RESULTS.md) with one section's target rows and section replaced by those
    of `results` (a run of `python -m bench --only agents` or `--only queues`), the rest
    left as it was: the section says which run it comes from."""
    queues = bool(results.facts.get("queues"))
    prefixes = QUEUES_TARGETS if queues else AGENTS_TARGETS
    heading = QUEUES_HEADING if queues else AGENTS_HEADING
    lines = text.split("\n")
    if queues:
        # The web x1 ratios the rest of the file has, for the "unchanged" targets.
        results.facts["queues"]["reference"] = _reference_ratios(lines)
    lines = [x for x in lines if not any(x.startswith(f"| {n}") for n in prefixes)]
    head = lines.index("## Targets")
    end = next(i for i in range(head + 3, len(lines)) if not lines[i].startswith("|"))
    found = queues_targets(results) if queues else agents_targets(results)
    lines[end:end] = [row(*r) for r in _target_rows(found)]
    if heading in lines:
        start = lines.index(heading)
        stop = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
        del lines[start:stop]
    following = ("## Live events", "## Redis memory", "## Web process RSS", "## Soak")
    if not queues:
        following = (QUEUES_HEADING, *following)
    at = next((lines.index(h) for h in following if h in lines), len(lines))
    provenance = (
        f"Measured by `{command}` on {env['date']} (commit {env['commit']}), in its own "
        f"run(s) with their own B0 ({results.options.runs} run(s) of "
        f"{results.options.duration:g} s), and put into this file by `python -m bench.report "
        "--splice`; the rest of the file is from the run named at the top. Compare its "
        "figures with its own B0 row, not with the rest of the file: the machine may not "
        "have been as fast, or as quiet, as in that run."
    )
    lines[at:at] = (_queues if queues else _agents)(results, provenance)
    return "\n".join(lines)


# --- live events (bench/events.py) -------------------------------------------------------------


def _runs(results: Results) -> list[dict[str, Any]]:
    return [r for r in results.facts.get("events", {}).get("runs", []) if "latency" in r]


def _mid(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _events_memory(results: Results) -> dict[str, float]:
    """Medians over runs: web KiB per subscriber, stream bytes per entry, MB an hour."""
    s = results.samples
    runs = _runs(results)
    per_sub = _mid([(r["rss_after_kib"] - r["rss_before_kib"]) / ev.SUBSCRIBERS for r in runs])
    watched = _mid([r["watched_stream"]["per_entry"] for r in runs])
    other = _mid([r["with_load"]["stream"]["per_entry"] for r in runs])
    per_hook = _mid([r["alone"]["events_per_webhook"] for r in runs if "alone" in r])
    rate = median(s.get(ev.ALONE, []), "rps") * per_hook
    return {
        "kib_per_subscriber": per_sub,
        "bytes_per_event": watched,
        "bytes_per_event_other": other,
        "events_per_webhook": per_hook,
        "throughput_events_per_second": rate,
        "mb_hour_steady": watched * ev.RATE * 3600 / 1e6,
        "mb_hour_throughput": other * rate * 3600 / 1e6,
    }


def _spread_text(run: dict[str, Any]) -> str:
    return " + ".join(str(v) for v in run["spread"].values())


def events_targets(results: Results) -> list[Target]:
    """Live events: latency to 200 subscribers, nothing lost, what they cost the webhooks,
    and (figures, no limit) the memory they take."""
    s = results.samples
    runs = _runs(results)
    if not runs and not s.get(ev.ALONE):
        return []
    spreads = " / ".join(_spread_text(r) for r in runs) or "-"
    lat = s.get(ev.LATENCY, [])
    where = (
        f"{ev.SUBSCRIBERS} subscribers of one account over {ev.PROCESSES} web processes "
        f"({spreads}), {ev.RATE:g} changes/s"
    )
    out = [
        Target(f"event latency p50 < 5 ms: {where}", median(lat, "p50"), 5, True, "ms"),
        Target(f"event latency p99 < 50 ms: {where}", median(lat, "p99"), 50, True, "ms"),
    ]
    fewest = min((min(r["spread"].values(), default=0) for r in runs), default=math.nan)
    out.append(
        Target(
            f"subscribers on each of the {ev.PROCESSES} web processes (fewest on one)",
            float(fewest),
            1,
            False,
            "",
            digits=0,
        )
    )
    lost = (
        float(
            sum(
                r["latency"]["lost"]
                + r["latency"]["unexpected"]
                + r["with_load"].get("latency", {}).get("lost", 0)
                + r["worst"].get("short", 0)
                + r["worst"].get("dropped", 0)
                + r.get("burst", {}).get("short", 0)
                for r in runs
            )
        )
        if runs
        else math.nan
    )
    out.append(
        Target(
            "events lost: (change, subscriber) pairs never received, in every load of the "
            "section (steady, under the throughput load, worst case, burst)",
            lost,
            1,
            True,
            "",
            digits=0,
        )
    )
    ratio = paired(s.get(ev.WATCHED, []), s.get(ev.ALONE, []), "rps")
    out.append(
        Target(
            f"webhook req/s with the {ev.SUBSCRIBERS} subscribers receiving {ev.RATE:g} "
            f"changes/s ≥ 0.8 x without (load to another account's sessions, web "
            f"x{ev.PROCESSES})",
            ratio,
            0.8,
            False,
            "x",
        )
    )
    mem = _events_memory(results)
    out += [
        Target(
            f"web RSS per subscriber ({ev.SUBSCRIBERS} minus 0, all web processes)",
            mem["kib_per_subscriber"],
            math.nan,
            True,
            "KiB",
            digits=1,
        ),
        Target(
            "Redis per event (MEMORY USAGE of the stream, per entry added)",
            mem["bytes_per_event"],
            math.nan,
            True,
            "bytes",
        ),
        Target(
            f"Redis for an hour of events at {ev.RATE:g} changes/s",
            mem["mb_hour_steady"],
            math.nan,
            True,
            "MB",
        ),
        Target(
            f"Redis for an hour of events at the throughput run's rate (no subscriber: "
            f"{mem['throughput_events_per_second']:,.0f} events/s)",
            mem["mb_hour_throughput"],
            math.nan,
            True,
            "MB",
        ),
    ]
    return out


def _events(results: Results) -> list[str]:
    """The live events section: latency, throughput with and without subscribers, memory."""
    s = results.samples
    runs = _runs(results)
    if not runs:
        return []
    lat, under = s.get(ev.LATENCY, []), s.get(ev.UNDER_LOAD, [])
    alone, watched, worst = s.get(ev.ALONE, []), s.get(ev.WATCHED, []), s.get(ev.WORST, [])
    steady = s.get(ev.STEADY, [])
    lines = [
        "## Live events",
        "",
        f"`orchestrator web --workers {ev.PROCESSES}` (one port; the kernel gives each new "
        "connection to one process: which one got each subscriber is read from /proc), "
        "started fresh for each run, worker stopped. "
        f"**Subscribers**: {ev.SUBSCRIBERS} `GET /sessions/events` streams of one account "
        f"(the *watched* one), held by {ev.CLIENT_PROCESSES} forked client processes of raw "
        "asyncio sockets (uvloop) on this machine, which stamp each `id:` line with "
        "`time.monotonic()` when its bytes arrive (CLOCK_MONOTONIC: one clock for every "
        "process). "
        f"**Changes**: signed conference-status callbacks, participant-mute then -unmute with "
        f"rising SequenceNumber, round the members of the watched account's {ev.SESSIONS} "
        f"connected sessions (a caller and one member each): each is exactly one change, one "
        f"entry of the account's stream. They go at a steady {ev.RATE:g}/s over one keep-alive "
        "connection, each after the previous answer, so the k-th answered callback made the "
        "k-th new entry; latency of a (change, subscriber) pair = that subscriber's stamp of "
        "the entry's id minus the load side's stamp on reading the callback's answer.",
        "",
        f"**Throughput** (the target's set-up): the suite's webhook load (closed loop, 32 "
        "connections, the call-status life of fresh members of 1-member sessions) aimed at "
        "*another* account's sessions; once with no subscriber, then with the "
        f"{ev.SUBSCRIBERS} attached and receiving the watched account's {ev.RATE:g} changes/s "
        f"all along (started {ev.OVERLAP:g} s before the load, ended after it) — consoles of "
        "one account watching its calls while the service carries everyone's. In that run "
        f"{ev.PROMPT} subscribers stamp as above and the other {ev.SUBSCRIBERS - ev.PROMPT} "
        f"read lazily (SO_RCVLOWAT {ev.LAZY_BYTES // 1024} KiB: woken once that much has "
        "come, then counted): the server writes to every one of them as to any client, but "
        "the clients, which share the two cores with it here, cost little; in a deployment "
        "they are consoles on other machines. **Worst case** (a figure, no target): the same "
        "load aimed at the watched account itself, so each change goes to all "
        f"{ev.SUBSCRIBERS} (all reading lazily).",
        "",
    ]
    rows = [
        [
            f"{ev.RATE:g} changes/s, all {ev.SUBSCRIBERS} stamping",
            f"{sum(x.count for x in lat):,}",
            _spread(lat, "p50"),
            _spread(lat, "p99"),
            _num(_mid([r["latency"]["max"] for r in runs]), 1),
            sum(x.errors for x in lat),
            " / ".join(_spread_text(r) for r in runs),
            _cpu(lat, client=True),
        ]
    ]
    if under:
        loaded = [r["with_load"]["latency"] for r in runs if "latency" in r["with_load"]]
        rows.append(
            [
                f"the same during the throughput load ({ev.PROMPT} stamping)",
                f"{sum(x.count for x in under):,}",
                _spread(under, "p50"),
                _spread(under, "p99"),
                _num(_mid([x["max"] for x in loaded]), 1),
                sum(x.errors for x in under),
                "(same)",
                "(see the throughput table)",
            ]
        )
    header = (
        "measurement", "(change, subscriber) pairs", "latency p50 ms (min / **median** / max)",
        "p99 ms", "worst ms", "lost", "subscribers per web process",
        "CPU: web / Redis / sender / subscribers / not ours",
    )  # fmt: skip
    lines += [*table(header, rows), ""]
    loads = [
        ("to another account, no subscriber", alone, "alone", False),
        (
            f"to another account, {ev.SUBSCRIBERS} subscribers receiving {ev.RATE:g} changes/s",
            watched,
            "with_load",
            True,
        ),
        (f"worst case: to the watched account, {ev.SUBSCRIBERS} subscribers", worst, "worst", True),
    ]
    rows = []
    for name, samples, fact, subscribed in loads:
        if not samples:
            continue
        per_hook = _mid([r[fact].get("events_per_webhook", math.nan) for r in runs])
        sent = _mid([r[fact]["sent"] / r[fact]["seconds"] for r in runs if "seconds" in r[fact]])
        if fact != "worst":
            sent = ev.RATE * ev.SUBSCRIBERS if subscribed else 0.0
        rows.append(
            [
                name,
                _spread(samples, "rps"),
                _ratio(samples, alone, "rps"),
                _spread(samples, "p50"),
                _spread(samples, "p99"),
                f"{median(samples, 'web_ms_per_request'):.2f}",
                _num(per_hook, 2),
                _num(sent, 0),
                _cpu(samples, client=True),
            ]
        )
    header = (
        "webhook load (web x2)", "req/s (min / **median** / max)", "x without", "p50 ms",
        "p99 ms", "web CPU ms/req", "events per webhook", "deliveries/s (to subscribers)",
        "CPU: web / Redis / generator / subscribers / not ours",
    )  # fmt: skip
    lines += [*table(header, rows), ""]
    mem = _events_memory(results)
    per_delivery = (median(lat, "web_cpu") - median(steady, "web_cpu")) / (ev.RATE * ev.SUBSCRIBERS)
    burst = [r["burst"] for r in runs if "burst" in r]
    burst_us = _mid([b["us_per_delivery"] for b in burst])
    dropped = sum(r["worst"].get("dropped", 0) for r in runs)
    lines += [
        "**Fan-out cost and ceiling.** At the steady "
        f"{ev.RATE:g} changes/s each change reaches each subscriber in a write of its own: the "
        f"web processes used {median(lat, 'web_cpu'):.0%} of a core with the "
        f"{ev.SUBSCRIBERS} against {median(steady, 'web_cpu'):.0%} without, "
        f"**{per_delivery * 1e6:.0f} µs of web CPU per (change, subscriber)**, so one web "
        f"process on a core of its own would write at most ~{1 / per_delivery:,.0f} such "
        f"deliveries/s (about {1 / per_delivery / ev.SUBSCRIBERS:,.0f} changes/s to "
        f"{ev.SUBSCRIBERS} subscribers) when changes come one at a time. When they come "
        "faster than a stream writes, a stream sends all it has queued in one write: "
        f"{ev.BURST:,} entries written straight into the stream at once cost "
        f"**{burst_us:.1f} µs of web CPU per delivery** (~{1e6 / burst_us:,.0f} deliveries/s "
        "per core), which is what a busy account gets; "
        "the worst case above sits between the two. Subscribers dropped for falling behind "
        f"in the worst case: {dropped}.",
        "",
        *_events_limits(alone, watched, worst, per_delivery),
        "",
        "**Memory.** "
        f"Web RSS of all processes of `orchestrator web` right before the {ev.SUBSCRIBERS} "
        f"connected and after they had received the steady run: "
        + "; ".join(
            f"{r['rss_before_kib'] / 1024:.1f} → {r['rss_after_kib'] / 1024:.1f} MiB" for r in runs
        )
        + f", **{mem['kib_per_subscriber']:.1f} KiB per subscriber** (median). Redis: the "
        "account's event stream, `MEMORY USAGE … SAMPLES 0` before and after a run, over "
        f"the entries it added: **{mem['bytes_per_event']:,.0f} bytes per event** for the "
        f"mute changes of 2-member sessions, {mem['bytes_per_event_other']:,.0f} for the "
        "call-status changes of the throughput load's 1-member sessions (an entry holds "
        "the session hash and its members' JSON, so it grows with the members). The stream "
        f"keeps an hour: at {ev.RATE:g} changes/s that is **{mem['mb_hour_steady']:,.0f} MB**; "
        f"at the throughput run's {mem['throughput_events_per_second']:,.0f} events/s "
        f"({mem['events_per_webhook']:.2f} per webhook: a member's initiated, in-progress "
        f"and completed change its session, ringing after initiated does not) "
        f"**{mem['mb_hour_throughput']:,.0f} MB**.",
        "",
    ]
    return lines


def _events_limits(
    alone: list[Sample], watched: list[Sample], worst: list[Sample], per_delivery: float
) -> list[str]:
    """What the throughput figures with subscribers say: where the CPU went."""
    if not (alone and watched):
        return []

    def total(samples: list[Sample]) -> float:
        attrs = ("web_cpu", "redis_cpu", "gen_cpu", "client_cpu", "other_cpu")
        return sum(median(samples, a) for a in attrs)

    fan = per_delivery * ev.RATE * ev.SUBSCRIBERS
    out = [
        f"**What limits it.** Without subscribers the webhooks cost the web "
        f"{median(alone, 'web_ms_per_request'):.2f} ms of CPU each, with the machine's two "
        f"cores {total(alone):.0%} busy (web, Redis, generator); the {ev.SUBSCRIBERS} "
        f"subscribers' {ev.RATE * ev.SUBSCRIBERS:,.0f} deliveries/s take about "
        f"{fan:.0%} of a core at the steady figure above, and the clients "
        f"{median(watched, 'client_cpu'):.0%} more, out of the same two cores: the web's CPU "
        f"per webhook (fan-out included) goes to {median(watched, 'web_ms_per_request'):.2f} "
        f"ms, the machine is {total(watched):.0%} busy, and each change's fan-out (about "
        f"{ev.SUBSCRIBERS // ev.PROCESSES} writes in a row in each process) holds up the "
        "webhooks that process is serving, so the closed loop's latency rises and its rate "
        "falls. The cost is per (change, subscriber): one stream task woken, one write "
        "through Starlette's and uvicorn's send, one send() to the socket (the profile "
        "below: uvicorn's send, which is mostly the socket write, is the largest part)."
    ]
    if worst:
        out[0] += (
            f" In the worst case every webhook's change goes to all {ev.SUBSCRIBERS}: "
            f"{median(worst, 'web_ms_per_request'):.2f} ms of web CPU per webhook, the "
            f"clients receiving it all on this machine take {median(worst, 'client_cpu'):.0%} "
            f"of a core, the machine is {total(worst):.0%} busy: the two cores, shared by "
            "the fan-out and the clients that read it, are the limit."
        )
    return [*out, ""]


def _memory(mem: dict[str, Any] | None) -> list[str]:
    if not mem:
        return []
    return [
        "## Redis memory",
        "",
        "From `INFO used_memory` before and after writing many of each with the service's "
        "own scripts:",
        "",
        *table(
            ("what", "bytes each", "measured over"),
            [
                (
                    "session (incoming call: session hash, caller member, lists, call index, "
                    "its live-event entry)",
                    f"{mem['per_session']:,.0f}",
                    f"{mem['sessions']:,} sessions",
                ),
                (
                    "invited member (member hash, list and active entries, its part of the "
                    "session's cached members JSON, log line, a live-event entry)",
                    f"{mem['per_member']:,.0f}",
                    f"{mem['members']:,} members",
                ),
                (
                    "a member's call life (4 callbacks: callSid, call index, 3 log lines, "
                    "idempotency keys and 3 live-event entries, both kept 1 h)",
                    f"{mem['per_call']:,.0f}",
                    f"{mem['called_members']:,} members",
                ),
                (
                    "its RQ dial job hash (`MEMORY USAGE`; kept for result_ttl after it ran)",
                    f"{mem['dial_job']:,}",
                    "1 job",
                ),
            ],
        ),
        "",
    ]


def _rss(rss: dict[str, Any] | None) -> list[str]:
    if not rss:
        return []
    growth = (rss["after_kib"] - rss["before_kib"]) / rss["before_kib"] * 100
    series = rss["series"]
    step = max(1, len(series) // 8)
    points = ", ".join(f"{t:.0f} s: {kib / 1024:.1f}" for t, kib in series[::step])
    return [
        "## Web process RSS",
        "",
        f"One `orchestrator web` process, started fresh: {rss['fresh_kib'] / 1024:.1f} MiB; "
        f"after {rss['warmup_requests']:,} warm-up requests "
        f"**{rss['before_kib'] / 1024:.1f} MiB**; "
        f"after {rss['requests']:,} more (half invites, half webhooks, 32 connections, "
        f"{rss['seconds']:.0f} s, {rss['errors']} errors) **{rss['after_kib'] / 1024:.1f} MiB** "
        f"({growth:+.1f}%), peak {rss['peak_kib'] / 1024:.1f} MiB.",
        "",
        f"RSS during the run (MiB): {points or '-'}.",
        "",
    ]


def _profile(profile: dict[str, Any] | None) -> list[str]:
    if not profile:
        return [
            "## Profile",
            "",
            "py-spy was not found (PATH or $BENCH_PY_SPY), so no profile was taken.",
            "",
        ]
    lines = [
        "## Profiles (py-spy, 200 Hz, from inside each load)",
        "",
    ]
    for name, p in profile.items():
        if not p["samples"]:
            continue
        comps = ", ".join(f"{k} {v:.0%}" for k, v in p["components"] if v >= 0.01)
        lines += [
            f"**{name}** ({p['samples']:,} samples) by component (innermost known frame): {comps}.",
            "",
            "Hottest leaf functions: "
            + "; ".join(f"{k} {v:.1%}" for k, v in p["leaves"][:8])
            + ".",
            "",
            "Project functions, time inside (inclusive): "
            + "; ".join(f"{k} {v:.0%}" for k, v in p["project"][:8])
            + ".",
            "",
        ]
    return lines


def notes(results: Results) -> list[str]:
    """The short note: what the figures and the CPU columns say about the limits."""
    s = results.samples
    out = [
        "- The generator, Redis and the web process(es) share two cores; the CPU columns "
        "show who used them. A web process near 100% of a core is the limit of that "
        "measurement; the generator stays far below its ceiling above.",
    ]
    foreign = [x.other_cpu for k, v in s.items() if not k.startswith("profile") for x in v]
    retried = results.facts.get("retries", 0)
    if foreign and max(foreign) > 0.1:
        out.append(
            f"- The machine was shared: other processes used up to {max(foreign):.0%} of a core "
            f"during the recorded measurements (median {statistics.median(foreign):.0%}); "
            f"{retried} measurement(s) were redone because of it (the least disturbed attempt is "
            "kept). Throughput and latency move with that load; web CPU per request much less, "
            "so compare ratios and CPU per request more than absolute rates."
        )
    for procs in results.options.web_processes:
        p = f"{procs}p"
        b0 = s.get(f"{p}:{B0}", [])
        for kind in ("webhook@1", "invite@1"):
            k = s.get(f"{p}:{kind}", [])
            if not k or not b0:
                continue
            per_b0 = median(b0, "web_ms_per_request")
            per_req = median(k, "web_ms_per_request")
            out.append(
                f"- web x{procs}, {kind.split('@')[0]}: {per_req:.2f} ms of web CPU per request "
                f"against {per_b0:.2f} ms for B0 (web at {median(k, 'web_cpu'):.0%} of a core, "
                f"Redis {median(k, 'redis_cpu'):.0%})."
            )
    big = max(results.options.sizes)
    inv1, invn = s.get("1p:invite@1", []), s.get(f"1p:invite@{big}", [])
    if inv1 and invn:
        out.append(
            f"- An invite answers the whole SessionInfo. The members leave Redis as one cached "
            f"JSON string (an invite appends to it) read with a plain GET after the script, "
            f"never through Lua, and log lines as ready JSON, so a {big}-member reply is "
            f"mostly bytes moved: {median(invn, 'rps'):,.0f} vs {median(inv1, 'rps'):,.0f} "
            f"req/s at 1 member, {median(invn, 'web_ms_per_request'):.2f} vs "
            f"{median(inv1, 'web_ms_per_request'):.2f} ms of web CPU per request; what remains "
            f"grows with the size of the reply (about {big + 10} members and as many log lines)."
        )
    b0 = s.get("1p:b0", [])
    steady = s.get("1p:invite@20/s", [])
    if inv1 and b0 and median(inv1, "p99") >= 25:
        need = 32 / 0.025
        out.append(
            "- Closed loop at 32 connections, mean latency = 32 / throughput (Little's law): an "
            f"invite p99 under 25 ms there needs more than {need:,.0f} invites/s, "
            f"{need / median(b0, 'rps'):.2f} x B0 on this machine, more than the 0.4 x B0 "
            "throughput target asks; "
            "at a steady 20 invites/s the same endpoint answers with p99 "
            f"{median(steady, 'p99'):.1f} ms."
        )
    naive, naive_steady = s.get("1p:naive", []), s.get("1p:naive@20/s", [])
    if naive and naive_steady and steady:
        per_request = median(naive, "web_ms_per_request")
        out.append(
            f"- Naive design: p50 {median(naive_steady, 'p50'):.0f} ms at 20/s (Twilio's 200 ms "
            f"plus the call) against {median(steady, 'p50'):.1f} ms for the queued invite; at "
            f"32 connections it manages {median(naive, 'rps'):.0f} req/s, the twilio client "
            f"costing {per_request:.1f} ms of CPU per invite in the thread pool."
        )
    out += _control_notes(results)
    profile = results.facts.get("profile") or {}
    for name, p in profile.items():
        top = [f"{k} {v:.0%}" for k, v in p.get("components", [])[:4]]
        if top:
            out.append(f"- Profile of {name}: " + ", ".join(top) + ".")
    if environment_http() != "httptools and uvloop":
        out.append(
            f"- uvicorn runs with {environment_http()}: httptools/uvloop (`uvicorn[standard]`) "
            "are not installed, so HTTP parsing is pure Python (h11) for the service and B0 alike."
        )
    return out


def _control_notes(results: Results) -> list[str]:
    """What the session-control figures say: which operations cost the web process most,
    and where a removal's time goes before Twilio hears of it."""
    s = results.samples
    out = []
    costs = [
        (median(s[control.KEY + op.key], "web_ms_per_request"), op)
        for op in control.OPS
        if s.get(control.KEY + op.key)
    ]
    b0 = median(s.get("1p:b0", []), "web_ms_per_request")
    if costs and not math.isnan(b0):
        single = [
            c for c, op in costs if op.name.split()[0] not in ("ListSessions", "GetActiveSessions")
        ]
        listing = [
            (c, op)
            for c, op in costs
            if op.name.split()[0] in ("ListSessions", "GetActiveSessions")
        ]
        if single:
            out.append(
                f"- Session control: an operation on one session costs the web process "
                f"{min(single):.2f}-{max(single):.2f} ms of CPU per request (B0 {b0:.2f} ms): one "
                "script call, pipelined with its neighbours', and the SessionInfo read after it "
                "in the same MULTI/EXEC."
            )
        if listing:
            out.append(
                "- A listing answers many SessionInfos, "
                + ", ".join(f"{op.name} {c:.2f} ms" for c, op in listing)
                + f" of web CPU per request (a page of {control.PAGE_SIZE}, or the "
                f"{control.ACTIVE_SESSIONS} live sessions): the cost is per session rendered "
                "(one pipelined read of three keys each, then the JSON joined), not per "
                "session kept."
            )
    for case in control.REMOVAL_CASES:
        samples = s.get(control.removal_key(case), [])
        if not samples:
            continue
        first, rest = median(samples, "to_start"), median(samples, "to_accept")
        before = "a FetchCall" if case == "ringing" else "a FetchCall and a FetchParticipant"
        out.append(
            f"- Removing a {case} member: {first:.2f} ms from the 200 to the control job's first "
            f"request at Twilio (the worker takes the job from the control queue, ahead of any "
            f"dial, and reads the session), then {rest:.2f} ms to {control.REMOVAL_WHAT[case]}, "
            f"which follows {before} (the job asks Twilio for the leg's state first)."
        )
    return out


def environment_http() -> str:
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "the asyncio loop"
    return f"{http} and {loop}"


# --- the longer runs: soak (bench/soak.py) and capacity (bench/capacity.py) ---------------------


def _mib(kib_or_bytes: float | None, bytes_: bool = False) -> str:
    if kib_or_bytes is None:
        return "-"
    return f"{kib_or_bytes / (2**20 if bytes_ else 1024):,.1f} MiB"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} %"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def soak_section(data: dict[str, Any]) -> str:
    """The soak as a section of bench/RESULTS.md."""
    p, g, c, v = data["parameters"], data["growth"], data["counts"], data["verdicts"]
    minutes = p["minutes"]
    w, end = p["warmup_seconds"], minutes * 60
    windows = (
        f"median of t = {w:g}-{w + p['window_seconds']:g} s vs of "
        f"{end - p['window_seconds']:g}-{end:g} s"
    )
    lines = [
        f"## Soak ({minutes:g} minutes)",
        "",
        "`python -m bench.soak` (bench/soak.py): one `orchestrator web` process and one "
        "worker against the emulator and a private Redis, with "
        f"SESSION_RETENTION_SECONDS and EVENT_RETENTION_SECONDS at {p['session_retention_seconds']}"
        f" (ended sessions and events kept {p['session_retention_seconds']} s, so the state "
        "Redis holds levels off after a few minutes). "
        f"**Load**: {p['rate_calls_per_second']:g} incoming calls/s (`POST /_emulator/incoming`), "
        f"each session living a {p['life_seconds']:g} s script: two phone members invited "
        f"(a busy one too in one session in {p['busy_every']}), dialled by the worker and "
        "answered by the emulator with Twilio's signed callbacks; HoldSession and PatchSession "
        "`Connected`, mute/unmute and hold/unhold of a member (UpdateConferenceMember), "
        "DeleteChatMember of the second member in every other session, PatchSession "
        "`Hold`/`Connected`, then EndSession; "
        f"{p['subscribers']} live event subscribers (`GET /sessions/events`) reading all along. "
        f"Each session is checked {p['verify_after_seconds']:g} s after its end: ended, every "
        "invited member present and final, the answering ones connected during its life, every "
        "subscriber with the same events of it, ids rising, the last equal to GetSession; "
        "each member dialled exactly once (the emulator's creates by label). "
        f"Sampled every {p['sample_seconds']:g} s; growth is the {windows}.",
        "",
    ]
    rows = []
    for name, label in (
        ("web_rss", "web RSS growth"),
        ("worker_rss", "worker RSS growth (with RQ's scheduler process)"),
        ("redis_used_memory", "Redis used_memory growth"),
    ):
        x = g[name]
        as_bytes = name.startswith("redis")
        rows.append(
            (
                f"{label} ({windows}: {_mib(x['first'], as_bytes)} → {_mib(x['last'], as_bytes)})",
                _pct(x["percent"]),
                f"{soak.GROWTH_LIMIT:g} %",
                verdict(v[f"{name}_growth"]),
            )
        )
    rows += [
        (
            f"5xx answers (API {c['5xx_api']}, webhooks {c['5xx_callbacks']}; unanswered "
            f"{c['unanswered']})",
            c["5xx"] + c["unanswered"],
            0,
            verdict(v["no_5xx"]),
        ),
        (
            f"lost: invites answered 200 ({c['invites_answered_200']:,}) missing, not connected "
            f"or not final; sessions ({c['sessions']:,}) not ended",
            c["lost"],
            0,
            verdict(v["no_lost"]),
        ),
        (
            f"double dials (members dialled more than once; {c['creates']:,} creates)",
            c["double_dials"],
            0,
            verdict(v["no_double_dials"]),
        ),
        (
            f"subscribers ({p['subscribers']}): sessions whose events disagree or differ from "
            "GET, ids out of order, streams closed",
            c["event_problems"],
            0,
            verdict(v["subscribers"]),
        ),
    ]
    kinds = ", ".join(
        f"`{kind}` {x['first']:,.0f} → {x['last']:,.0f}"
        for kind, x in list(data.get("key_kinds_growth", {}).items())[:6]
    )
    lines += [
        *table(("target", "measured", "limit", "verdict"), rows),
        "",
        f"Other counts: {c['sessions']:,} sessions ({c['sessions_verified']:,} verified, "
        f"{c['removed']:,} members removed); invited members connected (seen by GET once a "
        f"second) p50 {_secs(c['connect_seconds']['p50'])}, p99 "
        f"{_secs(c['connect_seconds']['p99'])}, max {_secs(c['connect_seconds']['max'])} after "
        f"the call came in, {c['slow_connects']} sessions slower than "
        f"{soak.CONNECT_SECONDS:g} s; {c['unexpected_answers']} API answers other than "
        f"2xx, {c['callback_attempts']:,} webhook deliveries ({c['callbacks_failed']} failed), "
        f"{c['create_attempts']:,} create requests, {c['rechecks']} checks taken again, "
        f"Redis keys {g['redis_keys']['first'] or 0:,.0f} → {g['redis_keys']['last'] or 0:,.0f} "
        f"({_pct(g['redis_keys']['percent'])}), used_memory_dataset "
        f"{_pct(g['redis_used_memory_dataset']['percent'])}. Keys by kind, the same windows: "
        f"{kinds or 'no change'}.",
        "",
    ]
    step = max(1, round(60 / p["sample_seconds"]))
    samples = [x for x in data["samples"] if x["phase"] == "load"]
    shown = samples[::step]
    if samples and samples[-1] is not shown[-1]:
        shown.append(samples[-1])
    rows = []
    for x in shown:
        answers, cpu = x["answers"], x["cpu"]
        other = sum(n for k, n in answers.items() if k != "2xx")
        rows.append(
            (
                f"{x['t']:.0f}",
                x["live_sessions"],
                f"{x['web_rss_kib'] / 1024:.1f}",
                f"{x['worker_rss_kib'] / 1024:.1f}",
                f"{x['redis_used_memory'] / 2**20:.1f}",
                f"{x['redis_used_memory_dataset'] / 2**20:.1f}",
                f"{x['redis_keys']:,}",
                sum(x.get("queued", {}).values()),
                f"{answers.get('2xx', 0):,} / {other}",
                f"{cpu['web']:.0%} / {cpu['worker']:.0%} / {cpu['redis']:.0%}" if cpu else "-",
            )
        )
    header = (
        "t (s)", "live sessions", "web RSS MiB", "worker RSS MiB", "Redis used MiB",
        "Redis dataset MiB", "Redis keys", "jobs queued", "answers 2xx / other",
        "CPU web / worker / Redis",
    )  # fmt: skip
    return "\n".join([*lines, *table(header, rows)]) + "\n"


def capacity_section(data: dict[str, Any]) -> str:
    """`## Capacity` for bench/RESULTS.md, from what `python -m bench.capacity` wrote."""
    m, others = data["machine"], data["others"]
    return "\n".join(
        [
            "## Capacity",
            "",
            f"`python -m bench.capacity` on {m['date']}: {m['cpu']}, redis-server "
            f"{m['redis-server']}, Python {m['python']}. Other work on the machine took "
            f"{others['median']:.0%} of a core while these were measured (median over the "
            f"measurements; at most {others['max']:.0%}; column *not ours*), on the same two "
            "cores as every process of the bench.",
            "",
            *_life_section(data["call_life"]),
            *_concurrent_section(data),
            *_replica_section(data["replicas"]),
            *_capacity_limits(data),
        ]
    )


def _life_section(life: dict[str, Any]) -> list[str]:
    cpu = life["cpu_ms"]
    kept = life["kept"]
    out = [
        "### What one call costs",
        "",
        f"{life['lives']} call lives through the real path, {life['rate']:g} starting per "
        f"second (after {life['warmup_lives']} untimed): a customer calls the tenant's number "
        "(the emulator's incoming call asks /twilio/voice; the caller joins the conference), "
        "the console invites a number (InviteChatMember), the worker dials it through the "
        f"emulator, it rings {capacity.RING_SECONDS:g} s and answers, the console reads the "
        f"session (GetSession) {life['talk_seconds']:g} s later and ends it (EndSession), the "
        "worker ends the conference and its legs. Figures: Redis `INFO` (commandstats, "
        "total_net_input_bytes / total_net_output_bytes, used_memory) and /proc CPU over the "
        f"{life['seconds']:.0f} s from the first life to the emulator's last callback, less "
        f"what the same processes did in {life['idle']['seconds']:.0f} s idle just before "
        f"({life['idle']['commands_per_s']:.0f} Redis commands/s), divided by the lives. "
        f"{life['connected']} of {life['lives']} members were Connected when read ("
        + ", ".join(f"{v} {k}" for k, v in life.get("states", {}).items())
        + f"; the worker's create came {life.get('dial_wait_p50', math.nan):.2f} s after the "
        f"invite's answer at the median, {life.get('dial_wait_p99', math.nan):.2f} s at p99); "
        f"{life['legs_ended']} of {life['legs']} legs ended; API answers "
        + ", ".join(f"{v} x {k}" for k, v in life["api_statuses"].items())
        + f"; callbacks not answered 2xx: {life['callbacks_non_2xx']}"
        + "".join(f" ({k} x {v})" for k, v in life.get("callback_failures", {}).items())
        + f", retried by the emulator: {life['callbacks_retried']}.",
        "",
        *table(
            ("per call life", "figure"),
            [
                (
                    "callbacks Twilio sends (`GET /_emulator/calls`)",
                    f"**{life['callbacks']:.1f}**: "
                    + ", ".join(f"{k} {v:g}" for k, v in life["callbacks_by_kind"].items()),
                ),
                (
                    "API requests",
                    f"{life['api_requests']}: InviteChatMember, GetSession, EndSession",
                ),
                (
                    "Redis commands (commands run inside scripts included)",
                    f"**{life['commands']:.0f}** (of them {life['scripts']:.1f} EVALSHA/EVAL, "
                    "one round trip each)",
                ),
                (
                    "Redis network in / out",
                    f"**{life['net_in']:,.0f} / {life['net_out']:,.0f}** bytes",
                ),
                (
                    "Redis memory kept (used_memory after the lives less before)",
                    f"**{life['memory']:,.0f}** bytes",
                ),
                ("CPU ms: " + " / ".join(cpu), " / ".join(f"{v:.2f}" for v in cpu.values())),
            ],
        ),
        "",
        "Redis commands per call life, the most called: "
        + ", ".join(f"{k} {v:.1f}" for k, v in life["top_commands"])
        + ".",
        "",
        "What the lives left in Redis, per life (`MEMORY USAGE` of every key before and after "
        f"them, by key with ids as `*`; {sum(g['bytes'] for g in kept):,.0f} bytes in all):",
        "",
    ]
    rows = [
        (
            f"`{g['pattern']}`",
            g["type"],
            f"{g['keys']:.1f}{' (one for all)' if g['keys'] < 0.05 else ''}",
            f"{g['bytes']:,.0f}",
            _ttl(g["ttl"]),
        )
        for g in kept
    ]
    return [*out, *table(("key", "type", "keys", "bytes", "kept for"), rows), ""]


def _concurrent_section(data: dict[str, Any]) -> list[str]:
    life, conc = data["call_life"], data["concurrent"]
    lim = capacity.limits(data)
    closed = conc["closed"]
    steps = [
        (
            f"{s['rate']:,}",
            f"{s['rps']:,.0f}",
            _num(s["p50"], 2),
            _num(s["p99"], 2),
            s["errors"],
            f"{s['web_cpu']:.0%}",
            f"{s['redis_cpu']:.0%}",
            f"{s['redis_ms_per_request'] * 1000:.0f}",
            f"{s['other_cpu']:.0%}",
            "yes" if s["keeps_up"] else "**no**",
        )
        for s in conc["steps"]
    ]
    cpu = life["cpu_ms"]
    limits = [
        (
            "one web process, callbacks only (its sustained rate)",
            f"{_num(lim['web_rate'])} webhooks/s",
            f"**{_num(lim['web_calls'])}**",
        ),
        (
            "one Redis primary, callbacks only (one core / Redis CPU per webhook at that rate)",
            f"{_num(lim['redis_rate'])} webhooks/s",
            f"**{_num(lim['redis_calls'])}**",
        ),
        (
            "the same, at the closed loop's batching (Redis CPU per webhook there)",
            f"{_num(lim['redis_rate_batched'])} webhooks/s",
            _num(lim["redis_calls_batched"]),
        ),
        (
            "one web process, the whole life (API requests included: its CPU share at the "
            "sustained rate / its CPU per life)",
            f"{cpu['web']:.2f} ms per life",
            _num(lim["web_calls_life"]),
        ),
        (
            "one Redis primary, the whole life (the worker's commands included: one core / "
            "Redis CPU per life)",
            f"{cpu['redis']:.2f} ms per life",
            _num(lim["redis_calls_life"]),
        ),
        (
            "one worker process, the whole life (its CPU: dial and control jobs)",
            f"{cpu['worker']:.2f} ms per life",
            _num(lim["worker_calls_life"]),
        ),
    ]
    header = (
        "offered req/s", "achieved", "p50 ms", "p99 ms", "errors", "web CPU", "Redis CPU",
        "Redis µs/req", "not ours", "keeps up",
    )  # fmt: skip
    return [
        "### Concurrent calls",
        "",
        "One `orchestrator web` process, signed call-status callbacks of fresh 1-member "
        "sessions (bench/workload.py) in open loop at rising rates, 32 connections, "
        f"{data['duration']:g} s each, the worker stopped; the rates are fractions of its "
        f"closed-loop throughput just before ({closed['rps']:,.0f} req/s, p99 "
        f"{closed['p99']:.1f} ms, Redis {closed['redis_ms_per_request'] * 1000:.0f} µs/req). "
        f"It keeps up while p99 < {capacity.P99_LIMIT_MS:g} ms and every request is answered "
        "2xx. Redis µs/req: redis-server's CPU time over the step (/proc) per request.",
        "",
        "Steps in the order run (a step between the best kept up with and the next not, "
        "twice at most).",
        "",
        *table(header, steps),
        "",
        f"A concurrent call sends its {life['callbacks']:.1f} callbacks over "
        f"{capacity.HANDLE_SECONDS:g} s (taken as the average call: a contact centre's average "
        f"handle time), {lim['webhooks_per_call_s']:.3f} webhooks/s; concurrent calls = rate / "
        "that.",
        "",
        *table(("limit", "rate or cost", "concurrent calls"), limits),
        "",
        _which_limit(lim),
        "",
    ]


def _which_limit(lim: dict[str, float]) -> str:
    ratio = lim["redis_calls"] / lim["web_calls"]
    if math.isnan(ratio):
        return "No step kept up: no limit can be given."
    if ratio < 1:
        return "The limit is Redis: one primary saturates before one web process does."
    return (
        f"The limit is the web process: one Redis primary carries {ratio:.1f} x the calls of "
        "one web process, so about that many web processes (each on a core of its own) can "
        "share it before Redis is the limit; counted with the whole life, "
        f"{lim['redis_calls_life'] / lim['web_calls_life']:.1f} x."
    )


def _replica_section(ha: dict[str, Any]) -> list[str]:
    s = ha["samples"]
    rows: list[tuple[object, ...]] = []
    for load, what in (
        ("invite@200/s", "InviteChatMember at 200/s"),
        ("webhook@200/s", "call-status webhook at 200/s"),
    ):
        a, b = s[f"0:{load}"], s[f"1:{load}"]
        for attr in ("p50", "p99"):
            x, y = median(a, attr), median(b, attr)
            waits = _num(median(b, "waits_per_request"), 2)
            rows.append((f"{what}, {attr} ms", _num(x, 2), _num(y, 2), f"{y - x:+.2f} ms", waits))
    for load, what in (
        ("invite", "InviteChatMember, closed loop"),
        ("webhook", "call-status webhook, closed loop"),
    ):
        a, b = s[f"0:{load}"], s[f"1:{load}"]
        x, y = median(a, "rps"), median(b, "rps")
        waits = _num(median(b, "waits_per_request"), 2)
        rows.append((f"{what}, req/s", _num(x), _num(y), f"{y / x:.2f} x", waits))
        x, y = median(a, "p99"), median(b, "p99")
        rows.append((f"{what}, p99 ms", _num(x, 2), _num(y, 2), f"{y - x:+.2f} ms", ""))
    others = [x["other_cpu"] for xs in s.values() for x in xs]
    return [
        "### REDIS_MIN_REPLICAS",
        "",
        "A primary and one replica on the same machine (`--replicaof`, the same binary); one "
        "web process with `REDIS_MIN_REPLICAS=0`, then `=1`, against the same pair (the "
        "replica is attached in both, so the difference is the `WAIT`), the worker stopped, "
        f"{ha['runs']} run(s) in ABBA order, medians; every load starts from an empty Redis. "
        "WAIT/req: Redis `WAIT` calls per request with `=1` (the web waits once per batch of "
        "script calls, not once per request). Other work took "
        f"{statistics.median(others):.0%} of a core (median; at most {max(others):.0%}).",
        "",
        *table(("load", "MIN_REPLICAS=0", "=1", "difference", "WAIT/req"), rows),
        "",
    ]


def _capacity_limits(data: dict[str, Any]) -> list[str]:
    life = data["call_life"]
    return [
        "Limits of these figures:",
        "",
        "- Two cores shared by everything: the web, Redis, the worker, the emulator, the "
        "load generator and other work on the machine compete, so each rate is lower than "
        "the same process would reach on a core of its own; CPU per request or per life is "
        "much less affected.",
        "- Redis's saturation is linear in its CPU per request. At one web process's "
        "sustained rate its script calls seldom batch (one MULTI/EXEC per event-loop turn); "
        "near saturation, with many web processes, they batch more and Redis spends less "
        "per request (the closed-loop row), but its latency grows before its core is full. "
        f"The per-life Redis CPU was taken at {life['rate']:g} lives/s, where nothing "
        "batches: the least it carries.",
        "- The sustained rate is for call-status callbacks; a life's conference callbacks "
        "and its voice webhook are counted as callbacks of the same cost. The whole-life rows "
        "count each as it is, and the API requests with them.",
        "- The emulator answers Twilio REST in about a millisecond; Twilio takes tens to "
        "hundreds, which the worker spends waiting (more workers, not more CPU), and "
        "`TWILIO_CPS` (1 by default: Twilio's account limit) caps new outbound dials. With "
        f"one dial per call, {capacity.HANDLE_SECONDS:g} concurrent calls per dial per second.",
        "- Live event subscribers (consoles on `GET /sessions/events`) are left out; their "
        "own section gives what they cost the web.",
        "",
    ]


def _ttl(seconds: int) -> str:
    if seconds < 0:
        return "no expiry"
    if seconds >= 0.9 * 86400:
        return f"{seconds / 86400:.0f} d"
    if seconds >= 0.9 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


# --- the command --------------------------------------------------------------------------------


def load(path: Path) -> tuple[Results, dict[str, str], str]:
    """The results.json a run of `python -m bench` wrote: its Results, machine and command."""
    raw = json.loads(path.read_text())
    options = {**raw["options"], "output": None}
    options.update(sizes=tuple(options["sizes"]), web_processes=tuple(options["web_processes"]))
    samples = {k: [Sample(**x) for x in v] for k, v in raw["samples"].items()}
    return Results(Options(**options), samples, raw["facts"]), raw["environment"], raw["command"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="RESULTS.md again from the results.json of a run of `python -m bench` "
        "(in its work directory), with the soak and capacity sections of bench/*.json",
    )
    p.add_argument("results", type=Path, help="results.json")
    p.add_argument("--output", type=Path, help="default: print it")
    p.add_argument(
        "--splice",
        type=Path,
        help="a RESULTS.md whose agents' (or ring queues') section and targets are replaced "
        "by those of `results` (a run of `python -m bench --only agents` or `--only queues`), "
        "in place",
    )
    a = p.parse_args(argv)
    if a.splice is not None:
        a.splice.write_text(splice(a.splice.read_text(), *load(a.results)))
        return 0
    text = render(*load(a.results))
    if a.output is None:
        print(text)
    else:
        a.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
