"""Session control (docs/api.md): what each operation costs the web process, how soon a removal
reaches Twilio, and whether a page of ListSessions stays flat as sessions pile up.

**Operations** (closed loop, 32 connections, worker stopped, B0 of the same run as the base).
Every request does real work on state prepared for it. Sessions are seeded with the service's
own scripts (bench/workload.py) and put in the call as their callbacks would put them: the
caller and one invited member connected, each with a CallSid. A request that changes a call
acts on a session of its own (each DeleteChatMember removes a different connected member,
each HoldSession holds a different session, ...); PatchSession's hold/resume pair holds a
block of sessions, then resumes the same block, so every request flips a session; reads go
round sessions prepared for them. The control jobs the changes write wait in the queue,
undone (each measurement starts from an empty Redis), so the figure is the web process alone.

**Removals** (worker running, open loop of 20 removals/s). Each session is a real incoming
call (`POST /_emulator/incoming`: the emulator asks /twilio/voice, the caller joins the
conference) with one invited member the worker has dialled: a number ending 0002, which rings
until it is cancelled (the emulator runs with a long `--no-answer-seconds`), or an ordinary
one, which answers. Each DeleteChatMember's 200 (the load generator's clock) is paired with
the time the emulator received that member's cancel (Calls update `Status=canceled`) or its
participant DELETE (`requests` of `GET /_emulator/calls/{sid}`; one machine, one clock). A
removal whose cancel or delete never comes counts as infinitely late.

**ListSessions**: page 0 of 20 at 32 connections, for an account keeping 100 sessions and one
keeping 10,000 (the index is a sorted set: a page should cost O(log n + page)).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from bench import loadgen, workload
from orchestrator import jobs, keys
from orchestrator.launch import wait_until

if TYPE_CHECKING:
    from bench.suite import Sample, Suite

KEY = "1p:ctl:"  # results keys: web x1, as every figure here
REMOVAL_RATE = 20.0
REMOVAL_CASES = ("ringing", "connected")
REMOVAL_WARMUP = 5  # untimed removals first: the worker imports the control job on its first
LIST_SIZES = (100, 10_000)
PAGE_SIZE = 20
ACTIVE_SESSIONS = 20
READ_SESSIONS = 4000  # GetSession goes round this many sessions
HOLD_BLOCK = 128  # PatchSession: this many held, then the same resumed (> 32 connections)
CALLER = "+14155550100"  # the customer's number of every seeded or incoming session
READY_SECONDS = 30.0  # for the dialled members to ring or answer
RECORD_SECONDS = 10.0  # after the last removal, for the emulator to have seen every cancel


@dataclass(frozen=True)
class Op:
    key: str
    name: str  # the ServiceStack operation
    route: str
    does: str  # what each request of the load does


OPS = (
    Op(
        "add",
        "AddConferenceMember",
        "POST /sessions/{id}/conference/members",
        "a new number (`destination`) into a session of its own: member, dial job, SessionInfo",
    ),
    Op(
        "delete",
        "DeleteChatMember",
        "DELETE /sessions/{id}/members/{memberId}",
        "a connected member of a session of its own: marked removed, control job written",
    ),
    Op(
        "update",
        "UpdateConferenceMember",
        "PATCH /sessions/{id}/conference/members/{callSid}",
        "`hold: true` for a connected member (by its CallSid) of a session of its own",
    ),
    Op(
        "hold",
        "HoldSession",
        "POST /sessions/{id}/hold",
        "a session of its own: its caller and member, both connected, held",
    ),
    Op(
        "patch-console",
        "PatchSession",
        "PATCH /sessions/{id} (consoleData)",
        "about 300 bytes of `consoleData` into a session of its own",
    ),
    Op(
        "patch-hold",
        "PatchSession",
        "PATCH /sessions/{id} (callState Hold, then Connected)",
        f"`callState: Hold` for {HOLD_BLOCK} sessions, then `Connected` for the same ones: "
        "each request holds or resumes a session and both its members",
    ),
    Op(
        "redirect",
        "RedirectSession",
        "POST /sessions/{id}/redirect",
        "a new destination for a session of its own: invited, the connected member leaves, "
        "the caller held; 204",
    ),
    Op(
        "end",
        "EndSession",
        "DELETE /sessions/{id}",
        "a live session of its own ended (kept a week, control job written); 204",
    ),
    Op(
        "get",
        "GetSession",
        "GET /sessions/{id}",
        f"round {READ_SESSIONS:,} connected sessions (2 members, members JSON cached)",
    ),
    Op(
        "active",
        "GetActiveSessions",
        "GET /sessions/active",
        f"an account with {ACTIVE_SESSIONS} live sessions (2 members each): all of them",
    ),
    *(
        Op(
            f"list@{n}",
            f"ListSessions ({n:,} kept)",
            f"GET /sessions?page=0&countPerPage={PAGE_SIZE}",
            f"page 0 of an account keeping {n:,} sessions (2 members each)",
        )
        for n in LIST_SIZES
    ),
)
REMOVAL_WHAT = {"ringing": "the cancel (Calls update)", "connected": "the participant DELETE"}


def removal_key(case: str) -> str:
    return f"{KEY}remove-{case}"


class Control:
    """The measurements of this module, taken with a Suite's stack, seeder and results."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.suite.stack.web_port

    def _fresh(self) -> workload.Tenant:
        """The suite's empty Redis and new tenant, with the control job template back (the
        web process would reinstall it on its first script call; that is not measured)."""
        self.suite._fresh()
        jobs.install_control_template(self.suite.r)
        return self.suite.tenant

    def _pool(self, key: str) -> int:
        hint = self.suite.hint
        return self.suite._pool(key, hint.get("1p:invite", hint.get("1p:b0", 6000) / 2))

    def _connected(self, tenant: workload.Tenant, count: int) -> list[workload.Session]:
        seeder = self.suite.seeder
        sessions = seeder.sessions(tenant, count, 1, caller=CALLER)
        seeder.connect(sessions)
        return sessions

    # --- the requests of each operation -------------------------------------------------------

    def requests(self, op: Op, count: int) -> list[bytes]:
        """`count` requests for `op`, on state seeded for them in the suite's tenant (or, for
        the listings, in an account of their own)."""
        tenant = self.suite.tenant
        seeder = self.suite.seeder
        api = functools.partial(workload.api, self.port, tenant)
        kind, _, size = op.key.partition("@")
        if kind == "add":
            return [
                api(
                    "POST",
                    f"/sessions/{x.sid}/conference/members",
                    {"destination": next(seeder.numbers)},
                )
                for x in seeder.sessions(tenant, count, 1, caller=CALLER)
            ]
        if kind in ("get", "active", "list"):
            return self._reads(kind, int(size or 0), count)
        if kind == "patch-hold":  # whole blocks: a session's two requests are a block apart
            count_sessions = -(-count // (2 * HOLD_BLOCK)) * HOLD_BLOCK
        else:
            count_sessions = count
        sessions = self._connected(tenant, count_sessions)
        if kind == "delete":
            return [
                api("DELETE", f"/sessions/{x.sid}/members/{x.members[0].mid}") for x in sessions
            ]
        if kind == "update":
            return [
                api(
                    "PATCH",
                    f"/sessions/{x.sid}/conference/members/{workload.call_sid(x.members[0])}",
                    {"hold": True},
                )
                for x in sessions
            ]
        if kind == "hold":
            return [api("POST", f"/sessions/{x.sid}/hold", {"reason": "None"}) for x in sessions]
        if kind == "patch-console":
            return [
                api("PATCH", f"/sessions/{x.sid}", {"consoleData": _console_data(i)})
                for i, x in enumerate(sessions)
            ]
        if kind == "patch-hold":
            out = []
            for start in range(0, len(sessions), HOLD_BLOCK):
                block = sessions[start : start + HOLD_BLOCK]
                for state in ("Hold", "Connected"):
                    out += [api("PATCH", f"/sessions/{x.sid}", {"callState": state}) for x in block]
            return out[:count]
        if kind == "redirect":
            return [
                api("POST", f"/sessions/{x.sid}/redirect", {"destination": next(seeder.numbers)})
                for x in sessions
            ]
        if kind == "end":
            return [api("DELETE", f"/sessions/{x.sid}") for x in sessions]
        raise ValueError(f"unknown operation {op.key}")

    def _reads(self, kind: str, size: int, count: int) -> list[bytes]:
        seeder = self.suite.seeder
        if kind == "get":
            tenant = self.suite.tenant
            sessions = self._connected(tenant, min(count, READ_SESSIONS))
            seeder.render(tenant, sessions)
            return [
                workload.api(
                    self.port, tenant, "GET", f"/sessions/{sessions[i % len(sessions)].sid}"
                )
                for i in range(count)
            ]
        tenant = seeder.tenant()  # an account holding exactly the sessions listed
        sessions = self._connected(tenant, ACTIVE_SESSIONS if kind == "active" else size)
        seeder.render(tenant, sessions)
        target = (
            "/sessions/active" if kind == "active" else f"/sessions?page=0&countPerPage={PAGE_SIZE}"
        )
        return [workload.api(self.port, tenant, "GET", target)] * count

    # --- measurements -------------------------------------------------------------------------

    def warmup(self) -> None:
        """Half an untimed second of each operation, so no figure includes a cold code path
        (the removals warm the worker up themselves)."""
        for op in OPS:
            if "@" in op.key and int(op.key.partition("@")[2]) > 1000:
                continue
            self._fresh()
            loadgen.run(loadgen.Load(self.port, self.requests(op, 300), duration=0.5))

    def run(self) -> None:
        """One run: every operation, then the removals (B0 of this run is measured already)."""
        for op in OPS:
            self._fresh()
            key = KEY + op.key
            build = functools.partial(self._build, op, key)
            self.suite._measure(key, self.port, build, "web", kind=key)
        self.removals()

    def _build(self, op: Op, key: str) -> list[bytes]:
        return self.requests(op, self._pool(key))

    def removals(self, spy: Callable[[int, float], Any] | None = None) -> None:
        """Both removal cases with the worker running, recorded; or, with `spy(worker pid,
        seconds)` (a context manager: a profiler), one pass of the connected case under it,
        not recorded."""
        suite = self.suite
        self._fresh()
        suite._emulator("reset", {})
        worker = suite.stack.start_worker()
        try:
            self._removal("connected", REMOVAL_WARMUP)  # untimed
            count = max(20, int(REMOVAL_RATE * suite.o.duration))
            if spy is not None:
                targets = self._prepare("connected", count)
                with spy(worker.pid, len(targets) / REMOVAL_RATE):
                    self._remove("profile:remove-connected", "connected", targets)
                return
            for case in REMOVAL_CASES:
                key = removal_key(case)
                removal = functools.partial(self._removal, case, count, key)
                suite.results.add(key, suite.retried(key, removal, quiet=False))
        finally:
            suite.stack.stop("worker")
            time.sleep(1.0)  # the emulator's callbacks for the last legs drain

    def _removal(self, case: str, count: int, key: str | None = None) -> Sample:
        targets = self._prepare(case, count)
        return self._remove(key or f"warmup:remove-{case}", case, targets)

    def _prepare(self, case: str, count: int) -> list[tuple[str, str, str]]:
        """`count` incoming calls, each with one member dialled by the worker and now ringing
        (a number ending 0002) or connected: [(session id, member id, member's CallSid)]."""
        suite = self.suite
        tenant = suite.tenant
        emulator = suite.stack.emulator_url
        sids: list[str] = []
        with httpx.Client(trust_env=False, timeout=30) as client:
            for _ in range(count):
                answer = client.post(
                    f"{emulator}/_emulator/incoming",
                    data={"From": CALLER, "To": tenant.number},
                    headers={"Accept": "text/plain"},
                )
                answer.raise_for_status()
                sids.append(answer.text.strip())
        if case == "ringing":
            numbers = [f"+1415{200 + i % 800:03d}0002" for i in range(count)]
        else:
            numbers = [next(suite.seeder.numbers) for _ in range(count)]
        invites = [
            workload.invite(self.port, tenant, sid, n) for sid, n in zip(sids, numbers, strict=True)
        ]
        out = loadgen.run(loadgen.Load(self.port, invites, connections=8, duration=30))
        if out.errors:
            raise RuntimeError(f"inviting the members to remove failed: {out.statuses()}")
        rank = "1" if case == "ringing" else "2"
        ready: list[tuple[str, str, str]] = []

        def all_ready() -> bool:
            ready[:] = self._members(sids, numbers, rank)
            return len(ready) == count

        with contextlib.suppress(TimeoutError):
            wait_until(all_ready, READY_SECONDS, "the members to remove", interval=0.05)
        if len(ready) < count:
            suite.log(f"  {case}: only {len(ready)} of {count} members ready in time")
        time.sleep(0.2)  # the last callbacks' answers and the dial jobs' ends
        return ready

    def _members(
        self, sids: list[str], numbers: list[str], rank: str
    ) -> list[tuple[str, str, str]]:
        r = self.suite.r
        pipe = r.pipeline(transaction=False)
        for sid, number in zip(sids, numbers, strict=True):
            pipe.hget(keys.session_active(sid), number)
        mids = [m.decode() if m else "" for m in pipe.execute()]
        pipe = r.pipeline(transaction=False)
        for sid, mid in zip(sids, mids, strict=True):
            pipe.hmget(keys.member(sid, mid), "_rank", "callSid")
        out = []
        for sid, mid, (have, call) in zip(sids, mids, pipe.execute(), strict=True):
            if mid and call and have is not None and have.decode() == rank:
                out.append((sid, mid, call.decode()))
        return out

    def _remove(self, key: str, case: str, targets: list[tuple[str, str, str]]) -> Sample:
        """DeleteChatMember of each target at 20/s; the Sample's p50/p99 are the delays from
        each 200 to the emulator receiving that leg's cancel or participant DELETE (ms)."""
        from bench.suite import percentile

        suite = self.suite
        tenant = suite.tenant
        reqs = [
            workload.api(self.port, tenant, "DELETE", f"/sessions/{sid}/members/{mid}")
            for sid, mid, _ in targets
        ]
        sample, out = suite._apply(key, self.port, reqs, "web", rate=REMOVAL_RATE)
        removed = [i for i in range(len(targets)) if out.status[i] // 100 == 2]
        seen: dict[int, tuple[float, float]] = {}
        with httpx.Client(trust_env=False, timeout=30) as client:

            def all_seen() -> bool:
                for i in (i for i in removed if i not in seen):
                    url = f"{suite.stack.emulator_url}/_emulator/calls/{targets[i][2]}"
                    hit = _hit(case, client.get(url).json().get("requests", []))
                    if hit is not None:
                        seen[i] = hit
                return len(seen) == len(removed)

            with contextlib.suppress(TimeoutError):  # one never seen counts as infinitely late
                wait_until(all_seen, RECORD_SECONDS, "every removal at the emulator", 0.2)
        delays = [(seen[i][1] - out.done_at[i]) * 1000 if i in seen else math.inf for i in removed]
        firsts = [(seen[i][0] - out.done_at[i]) * 1000 for i in removed if i in seen]
        rests = [(seen[i][1] - seen[i][0]) * 1000 for i in removed if i in seen]
        missing = len(removed) - len(seen)
        if missing:
            facts = suite.results.facts.setdefault("ctl_missing", {})
            facts[key] = facts.get(key, 0) + missing
        timed = dataclasses.replace(
            sample,
            p50=percentile(delays, 0.5),
            p99=percentile(delays, 0.99),
            count=len(delays),
            to_start=percentile(firsts, 0.5),
            to_accept=percentile(rests, 0.5),
        )
        suite.log(
            f"  {key:<14} p50 {timed.p50:7.2f} ms  p99 {timed.p99:7.2f} ms  ({len(delays)} "
            f"removals, {missing} never reached the emulator; 200 -> first Twilio request "
            f"{timed.to_start:.2f} ms, -> {REMOVAL_WHAT[case]} {timed.to_accept:.2f} ms more)"
        )
        return timed


def _hit(case: str, requests: list[dict[str, Any]]) -> tuple[float, float] | None:
    """(when the control job's first request about the call came, when the cancel or the
    participant DELETE came), from the emulator's record of the call; None if not yet."""
    first = None
    for entry in requests:
        if entry["operation"] == "CreateParticipant":
            continue
        first = entry["time"] if first is None else first
        cancel = entry["operation"] == "UpdateCall" and entry["params"].get("Status") == "canceled"
        delete = entry["operation"] == "DeleteParticipant"
        if (cancel and case == "ringing") or (delete and case == "connected"):
            return first, entry["time"]
    return None


def _console_data(i: int) -> str:
    """What an agent console keeps on a session: about 300 bytes of its own JSON."""
    return json.dumps(
        {
            "ticket": f"T-{i:08d}",
            "customer": {"name": "Ada Lovelace", "tier": "gold", "since": "2019-04-01"},
            "notes": "Called about the invoice of March; wants a callback after 5 pm.",
            "tags": ["billing", "callback", "priority"],
            "step": i % 7,
        }
    )
