"""Soak: a steady, mixed load against the real processes for minutes, to show nothing leaks.

`python -m bench.soak [--minutes 10] [--output bench/soak.json]`

**Set-up.** The bench's own helpers (bench/stack.py) start a private Redis, the Twilio
emulator, ONE `orchestrator web` process and ONE `orchestrator worker`, with
SESSION_RETENTION_SECONDS and EVENT_RETENTION_SECONDS at 120: an ended session's keys
expire two minutes after it ended and the event streams keep two minutes, so the state
Redis holds stops growing after a few minutes and a leak shows as growth past them. One
tenant (account, number, API key) is provisioned with the service's own code, as the rest
of the bench does (bench/workload.py).

**Load.** New incoming calls at a fixed rate (`POST /_emulator/incoming`: the emulator asks
/twilio/voice, the service creates the session, the caller joins its conference). Each
session then lives a script of about 40 s (SCRIPT): two phone members invited (and a busy
number in one session in BUSY_EVERY), which the worker dials through the emulator; the
emulator answers and sends Twilio's signed callbacks to the web; while they are connected:
HoldSession and PatchSession `Connected`, UpdateConferenceMember mute/unmute and
hold/unhold, DeleteChatMember of the second member (every other session), PatchSession
`Hold`/`Connected`; then EndSession. So the number of live calls is steady. Beside it,
SUBSCRIBERS live event streams (`GET /sessions/events`) in a forked client process read
everything all along.

**Checks.** Each session is verified VERIFY_AFTER seconds after its EndSession (well within
the retention): GET shows it ended, every invited member present and final (`callState:
None`), the answerable ones were connected during its life; every subscriber received its
events (the same count and last id), ids strictly increasing on every stream, and the last
SessionInfoChanged each got equals GET. At the end the emulator's creates count per member
(label) must be exactly 1. Every answer is counted by status class: the API's, and the
emulator's incoming calls and callbacks (each attempt, from `/_emulator/calls/{sid}`).

**Samples** every SAMPLE_SECONDS: VmRSS of the web and worker processes (with children:
RQ's scheduler runs in a process of its own), Redis `INFO memory` and DBSIZE with the keys
by kind, live sessions (the driver's count and GetActiveSessions), answers so far, CPU.
**Growth**: the median of the samples in the minute after the warm-up against the median
of the last minute of load, for web RSS, worker RSS and Redis used_memory; target < 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import redis
from rq import Queue

from bench import sse, stack, workload
from orchestrator import keys

# New incoming calls per second. About 9 worker jobs each (2-3 dials, the rest control jobs):
# at 4/s one worker on this 2-core machine fell behind (the control queue, taken first,
# starved the dials), which is a backlog, not a steady state.
RATE = 2.0
SUBSCRIBERS = 20
SAMPLE_SECONDS = 10.0
WARMUP_SECONDS = 180.0
WINDOW_SECONDS = 60.0  # each of the two windows compared
GROWTH_LIMIT = 5.0  # percent
RETENTION_SECONDS = 120
BUSY_EVERY = 5  # one session in this many also invites a number that is busy
CALLERS = 500  # distinct customers calling in, round robin
CONNECT_SECONDS = 12.0  # after the call came in, the invited members must be connected by
VERIFY_AFTER = 10.0  # seconds after EndSession a session is checked
RECHECK_SECONDS = 3.0  # a check that disagrees is taken again once, this much later
KEEPALIVE_SECONDS = 4.0
EXAMPLES = 5  # problems of each kind kept in the output
# (seconds after the call came in, step): the life of every session.
SCRIPT = (
    (0.5, "invite-agent"),
    (1.0, "invite-colleague"),
    (1.5, "invite-busy"),  # one session in BUSY_EVERY
    (5.0, "connected"),  # GET once a second until both are connected, CONNECT_SECONDS at most
    (8.0, "hold"),  # POST /sessions/{id}/hold
    (12.0, "resume"),  # PATCH /sessions/{id} callState Connected
    (15.0, "mute"),  # PATCH /sessions/{id}/conference/members/{agent's callSid}
    (18.0, "unmute"),
    (21.0, "member-hold"),  # the colleague
    (24.0, "member-unhold"),
    (27.0, "remove"),  # DELETE /sessions/{id}/members/{colleague}, every other session
    (30.0, "patch-hold"),  # PATCH /sessions/{id} callState Hold
    (33.0, "patch-resume"),
    (36.0, "end"),  # DELETE /sessions/{id}
)
LIFE_SECONDS = SCRIPT[-1][0]
# Ids in key names, replaced by * to count the keys by kind.
ID = re.compile(r"[a-z]{2,5}_[0-9a-f]{12,}|\b(CA|CF)[0-9a-f]{32}|[0-9a-f-]{24,}")


# --- the event subscribers (a forked client process) ------------------------------------------


class _Stream(sse.Stream):
    """One `GET /sessions/events`: per session, how many SessionInfoChanged came, the last
    one's id and data; ids must rise strictly."""

    def __init__(self, client: sse.Client) -> None:
        super().__init__(client)
        self.last: dict[str, list[Any]] = {}  # session id -> [count, id, data]
        self.previous: tuple[int, int] = (0, 0)
        self.events = 0  # SessionInfoChanged received
        self.names: Counter[str] = Counter()
        self.disorder = 0

    def event(
        self, event_id: bytes | None, name: bytes | None, data: bytes | None, at: float
    ) -> None:
        if name is None:
            return
        self.names[name.decode()] += 1
        if name != b"SessionInfoChanged" or event_id is None or data is None:
            return
        ms, _, seq = event_id.decode().partition("-")
        order = (int(ms), int(seq or 0))
        if order <= self.previous:
            self.disorder += 1
        self.previous = order
        self.events += 1
        sid = data[14 : data.index(b'"', 14)].decode()  # {"sessionId":"ses_..."
        entry = self.last.get(sid)
        if entry is None:
            self.last[sid] = [1, event_id.decode(), data]
        else:
            entry[0] += 1
            entry[1], entry[2] = event_id.decode(), data


class _Client(sse.Client):
    stream = _Stream

    def do_sessions(self, sids: list[str], forget: bool) -> dict[str, list[Any]]:
        """Per session: per stream (count, last id, digest of its data), and the data of
        the first stream's last event; forgotten after with `forget`."""
        out: dict[str, list[Any]] = {}
        for sid in sids:
            per = []
            data = None
            for s in self.streams:
                entry = s.last.pop(sid, None) if forget else s.last.get(sid)
                if entry is None:
                    per.append((0, None, None))
                    continue
                per.append((entry[0], entry[1], hashlib.sha1(entry[2]).hexdigest()))
                data = entry[2] if data is None else data
            out[sid] = [per, data]
        return out

    def do_stats(self) -> dict[str, Any]:
        names: Counter[str] = Counter()
        for s in self.streams:
            names.update(s.names)
        return {
            "events": [s.events for s in self.streams],
            "disorder": sum(s.disorder for s in self.streams),
            "closed": sum(s.lost for s in self.streams),
            "keepalives": sum(s.keepalives for s in self.streams),
            "names": dict(names),
            "held_sessions": sum(len(s.last) for s in self.streams),
        }


class Subscribers(sse.Subscribers):
    """The forked client of `count` account streams; stopped with `close`."""

    def __init__(self, port: int, key: str, count: int) -> None:
        super().__init__(_Client, port, key, count, processes=1, stagger=0.01)

    def sessions(self, sids: list[str], forget: bool) -> dict[str, list[Any]]:
        return self.ask("sessions", sids, forget)[0]

    def stats(self) -> dict[str, Any]:
        return self.ask("stats")[0]


# --- the driver ---------------------------------------------------------------------------------


@dataclass
class Options:
    minutes: float = 10.0
    rate: float = RATE
    subscribers: int = SUBSCRIBERS
    warmup: float = WARMUP_SECONDS
    window: float = WINDOW_SECONDS
    sample: float = SAMPLE_SECONDS
    retention: int = RETENTION_SECONDS
    output: Path = Path("bench/soak.json")


@dataclass
class Call:
    """One session of the load and what happened to it."""

    index: int
    started: float
    sid: str = ""
    caller_sid: str = ""
    invited: dict[str, str] = field(default_factory=dict)  # role -> number (answered 200)
    call_sids: dict[str, str] = field(default_factory=dict)  # role -> callSid
    connected: float | None = None  # seconds from the call to its members connected
    removed: bool = False
    ended: bool = False


class Soak:
    def __init__(self, o: Options, workdir: Path, log: Any) -> None:
        self.o = o
        self.log = log
        retention = str(o.retention)  # read by web and worker (orchestrator/settings.py)
        settings = {"SESSION_RETENTION_SECONDS": retention, "EVENT_RETENTION_SECONDS": retention}
        self.stack = stack.Stack(workdir, settings)
        self.answers: dict[str, Counter[int]] = {}  # operation -> status (0: no answer)
        self.callbacks: Counter[int] = Counter()  # the emulator's webhook attempts, by status
        self.failed_callbacks = 0
        self.problems: dict[str, list[str]] = {}
        self.counts: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []
        self.calls: list[Call] = []
        self.members: dict[str, str] = {}  # member id -> "session id number", every invited one
        self.live = 0
        self.numbers = workload.numbers()
        self.callers = [next(self.numbers) for _ in range(CALLERS)]
        self.retention_seen: dict[str, int] = {}
        self.t0 = 0.0
        self.load_end = 0.0

    # --- bookkeeping ----------------------------------------------------------------------

    def problem(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        examples = self.problems.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(text)

    def _count(self, op: str, status: int) -> None:
        self.answers.setdefault(op, Counter())[status] += 1

    async def _api(
        self, op: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response | None:
        try:
            response = await self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            self._count(op, 0)
            self.problem("no answer", f"{op} {path}: {exc!r}")
            return None
        self._count(op, response.status_code)
        if response.status_code >= 500:
            self.problem("5xx", f"{op} {path}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 300:
            self.problem(
                "unexpected answer", f"{op} {path}: {response.status_code} {response.text[:200]}"
            )
        return response

    # --- the run --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        s = self.stack
        subs = None
        try:
            s.start_redis()
            assert s.redis is not None
            self.r = redis.Redis.from_url(s.redis.url)
            self.tenant = workload.Seeder(self.r).tenant()
            s.start_emulator()
            s.start_web(1)
            s.start_worker()
            self.log(f"work directory {s.workdir}; Redis on {s.redis.port}")
            subs = Subscribers(s.web_port, self.tenant.key, self.o.subscribers)
            self.subs = subs
            s.helpers += subs.pids
            self.log(f"{self.o.subscribers} event subscribers connected")
            asyncio.run(self._main())
            return self._result()
        finally:
            if subs is not None:
                subs.close()
            s.stop_all()

    async def _main(self) -> None:
        headers = {"Authorization": f"Bearer {self.tenant.key}", "Accept": "application/json"}
        # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes
        # them, so no request is sent on a connection the server is closing.
        limits = httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_SECONDS
        )
        async with (
            httpx.AsyncClient(
                base_url=self.stack.public_base_url,
                headers=headers,
                timeout=30,
                limits=limits,
                trust_env=False,
            ) as self.http,
            httpx.AsyncClient(
                base_url=self.stack.emulator_url + "/_emulator",
                timeout=30,
                limits=limits,
                trust_env=False,
            ) as self.emulator,
        ):
            self.t0 = time.monotonic()
            self.load_end = self.t0 + self.o.minutes * 60
            sampler = asyncio.create_task(self._sampler())
            lives: set[asyncio.Task[None]] = set()
            for i in range(int(self.o.minutes * 60 * self.o.rate)):
                due = self.t0 + i / self.o.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                call = Call(i, due)
                self.calls.append(call)
                task = asyncio.create_task(self._life(call))
                lives.add(task)
                task.add_done_callback(lives.discard)
            await asyncio.sleep(max(0.0, self.load_end - time.monotonic()))
            self.log(f"load over: {len(self.calls)} calls; the last sessions finish")
            if lives:
                await asyncio.wait(lives, timeout=LIFE_SECONDS + VERIFY_AFTER + 60)
            for task in list(lives):  # late beyond reason: counted as not ended
                self.counts["sessions unfinished"] += 1
                task.cancel()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await self._sample("drain")
            await self._creates()

    async def _life(self, call: Call) -> None:
        try:
            await self._script(call)
        except Exception as exc:  # a bug of the soak's own: counted, shown
            self.problem("driver error", f"session {call.index} {call.sid}: {exc!r}")
        finally:
            if call.sid and not call.ended:
                self.live -= 1

    async def _at(self, call: Call, offset: float) -> None:
        await asyncio.sleep(max(0.0, call.started + offset - time.monotonic()))

    async def _script(self, call: Call) -> None:
        caller = self.callers[call.index % CALLERS]
        try:
            answer = await self.emulator.post(
                "/incoming", data={"From": caller, "To": self.tenant.number}
            )
        except httpx.HTTPError as exc:
            self._count("incoming", 0)
            self.problem("no answer", f"incoming call {call.index}: {exc!r}")
            return
        self._count("incoming", answer.status_code)
        if answer.status_code != 200:
            kind = "5xx" if answer.status_code >= 500 else "unexpected answer"
            self.problem(kind, f"incoming call {call.index}: {answer.status_code} {answer.text}")
            return
        body = answer.json()
        call.sid, call.caller_sid = body["conferenceName"], body["callSid"]
        self.live += 1
        base = f"/sessions/{call.sid}"
        for offset, step in SCRIPT:
            await self._at(call, offset)
            if step.startswith("invite-"):
                role = step.removeprefix("invite-")
                if role == "busy" and call.index % BUSY_EVERY:
                    continue
                number = f"+1415{200 + call.index % 800:03d}0001" if role == "busy" else None
                number = number or next(self.numbers)
                reply = await self._api(
                    "invite", "POST", base + "/members", {"memberToAdd": number}
                )
                if reply is not None and reply.status_code == 200:
                    call.invited[role] = number
            elif step == "connected":
                await self._connected(call)
            elif step in ("hold", "resume", "patch-hold", "patch-resume"):
                if step == "hold":
                    await self._api(step, "POST", base + "/hold", {"reason": "None"})
                else:
                    state = "Hold" if step == "patch-hold" else "Connected"
                    await self._api(step, "PATCH", base, {"callState": state})
            elif step in ("mute", "unmute", "member-hold", "member-unhold"):
                role = "agent" if "mute" in step else "colleague"
                if role not in call.call_sids:
                    await self._call_sids(call)  # a slow one may have connected since
                sid = call.call_sids.get(role)
                if sid is None:
                    self.counts["member operations skipped"] += 1
                    continue
                change = {"muted": step == "mute"} if "mute" in step else {}
                change = change or {"hold": step == "member-hold"}
                await self._api(step, "PATCH", f"{base}/conference/members/{sid}", change)
            elif step == "remove":
                if call.index % 2 == 0 and "colleague" in call.invited:
                    number = quote(call.invited["colleague"], safe="")
                    reply = await self._api(step, "DELETE", f"{base}/members/{number}")
                    call.removed = reply is not None and reply.status_code == 200
            elif step == "end":
                reply = await self._api(step, "DELETE", base)
                if reply is not None and reply.status_code == 204:
                    call.ended = True
                    self.live -= 1
        await self._at(call, LIFE_SECONDS + VERIFY_AFTER)
        await self._verify(call)

    async def _connected(self, call: Call) -> None:
        """GET the session once a second until the invited members that answer are in the
        call (their callSids are for the member operations); later than CONNECT_SECONDS
        after the call came in counts as slow (whether they ever connected is checked at
        the end, from the session's log)."""
        wanted = [r for r in call.invited if r != "busy"]
        while True:
            await self._call_sids(call)
            if all(r in call.call_sids for r in wanted):
                call.connected = time.monotonic() - call.started
                return
            if time.monotonic() - call.started >= CONNECT_SECONDS:
                missing = sorted(set(wanted) - set(call.call_sids))
                self.problem(
                    "slow",
                    f"{call.sid}: {missing} not connected {CONNECT_SECONDS:g} s after the call "
                    "came in",
                )
                return
            await asyncio.sleep(1.0)

    async def _call_sids(self, call: Call) -> None:
        reply = await self._api("get", "GET", f"/sessions/{call.sid}")
        if reply is None or reply.status_code != 200:
            return
        members = {m["identity"]: m for m in reply.json()["members"]}
        for role, number in call.invited.items():
            member = members.get(number)
            if member is not None and member["callState"] in ("Connected", "Hold"):
                call.call_sids[role] = member["callSid"]

    # --- checks ---------------------------------------------------------------------------

    async def _verify(self, call: Call, again: bool = True) -> None:
        reply = await self._api("get", "GET", f"/sessions/{call.sid}")
        if reply is None or reply.status_code != 200:
            self.problem(
                "lost",
                f"{call.sid}: GET after the end answered "
                f"{reply.status_code if reply else 'nothing'}",
            )
            return
        session = reply.json()
        found = self.subs.sessions([call.sid], forget=False)[call.sid]
        troubles = self._session_troubles(call, session) + self._event_troubles(session, found)
        if troubles and again:
            await asyncio.sleep(RECHECK_SECONDS)  # a callback may still have been on its way
            self.counts["rechecks"] += 1
            await self._verify(call, again=False)
            return
        self.subs.sessions([call.sid], forget=True)
        for kind, text in troubles:
            self.problem(kind, f"{call.sid}: {text}")
        self.counts["sessions verified"] += 1
        await self._record_members(call, session)
        if not self.retention_seen:
            self.retention_seen = {
                "session_ttl": int(self.r.ttl(keys.session(call.sid))),
                "events_ttl": int(self.r.ttl(keys.account_events(self.tenant.account))),
            }

    def _session_troubles(self, call: Call, session: dict[str, Any]) -> list[tuple[str, str]]:
        out = []
        if not session["ended"] or session["callState"] != "Disconnected":
            out.append(("lost", f"not ended: callState {session['callState']}"))
        members = {m["identity"]: m for m in session["members"]}
        for role, number in call.invited.items():
            member = members.get(number)
            if member is None:
                out.append(("lost", f"invited {role} {number} (200) is not a member"))
            elif member["callState"] != "None":
                out.append(("lost", f"{role} {number} ended {member['callState']}, not None"))
        log = {entry["message"] for entry in session["log"]}
        for role, number in call.invited.items():
            said = f"{number} was busy" if role == "busy" else f"{number} answered"
            if said not in log:
                out.append(("lost", f"{role} {number}: no '{said}' in the session's log"))
        for member in session["members"]:
            if member["callState"] != "None":
                out.append(("lost", f"member {member['identity']} still {member['callState']}"))
        return out

    def _event_troubles(self, session: dict[str, Any], found: list[Any]) -> list[tuple[str, str]]:
        per, data = found
        if data is None:
            return [("events", "no subscriber received an event of the session")]
        out = []
        if len(set(per)) != 1:
            counts = sorted({count for count, _, _ in per})
            out.append(("events", f"subscribers disagree: event counts {counts}"))
        event = json.loads(data)["session"]
        if event != session:
            differ = sorted(k for k in set(event) | set(session) if event.get(k) != session.get(k))
            out.append(("events", f"last event differs from GET in {differ}"))
        return out

    async def _record_members(self, call: Call, session: dict[str, Any]) -> None:
        """The invited members' ids (the emulator's labels), and the emulator's record of
        every webhook of the session's calls."""
        mids = [m.decode() for m in self.r.lrange(keys.session_members(call.sid), 0, -1)]
        pipe = self.r.pipeline(transaction=False)
        for mid in mids:
            pipe.hget(keys.member(call.sid, mid), "identity")
        identities = {(i or b"").decode(): mid for i, mid in zip(pipe.execute(), mids, strict=True)}
        for role, number in call.invited.items():
            mid = identities.get(number)
            if mid is None:
                self.problem("lost", f"{call.sid}: no member id for {role} {number}")
            else:
                self.members[mid] = f"{call.sid} {role} {number}"
        sids = [m["callSid"] for m in session["members"] if m["callSid"]]
        for sid in sids:
            try:
                reply = await self.emulator.get(f"/calls/{sid}")
            except httpx.HTTPError as exc:
                self.problem("driver error", f"emulator calls/{sid}: {exc!r}")
                continue
            if reply.status_code != 200:
                self.problem("driver error", f"emulator calls/{sid}: {reply.status_code}")
                continue
            record = reply.json()
            for delivery in record["callbacks"] + record["failedCallbacks"]:
                for attempt in delivery["attempts"] or [delivery]:
                    status = int(attempt.get("status") or 0)
                    self.callbacks[status] += 1
                    if status >= 500 or status == 0:
                        self.problem(
                            "5xx" if status else "no answer",
                            f"callback {delivery['url']} of {sid}: {attempt}",
                        )
            self.failed_callbacks += len(record["failedCallbacks"])

    async def _creates(self) -> None:
        """Every invited member dialled exactly once (the emulator's creates by label)."""
        creates = (await self.emulator.get("/creates")).json()
        by_label: dict[str, int] = creates["byLabel"]
        for mid, what in self.members.items():
            count = by_label.get(mid, 0)
            if count == 0:
                self.problem("lost", f"{what} (member {mid}) never dialled")
            elif count > 1:
                self.problem("double dials", f"{what} (member {mid}) dialled {count} times")
        for label, count in by_label.items():
            if count > 1 and label not in self.members:
                self.problem("double dials", f"label {label} (not verified) dialled {count} times")
        self.counts["creates"] = int(creates["total"])
        self.counts["create attempts"] = int(creates["attempts"])

    # --- samples --------------------------------------------------------------------------

    async def _sampler(self) -> None:
        while True:
            await self._sample("load")
            elapsed = time.monotonic() - self.t0
            await asyncio.sleep(self.o.sample - elapsed % self.o.sample)

    async def _sample(self, phase: str) -> None:
        s = self.stack
        now = time.monotonic()
        t = now - self.t0
        if t > self.o.minutes * 60 + 1 and phase == "load":
            phase = "drain"
        web, worker = stack.tree(s.procs["web"].pid), stack.tree(s.procs["worker"].pid)
        memory, kinds, queues = await asyncio.to_thread(self._redis_figures)
        active = None
        reply = await self._api("active", "GET", "/sessions/active")
        if reply is not None and reply.status_code == 200:
            active = len(reply.json()["sessions"])
        assert s.redis is not None
        groups = {
            "web": web,
            "worker": worker,
            "redis": [s.redis.process.pid],
            "emulator": stack.tree(s.procs["emulator"].pid),
            "subscribers": self.subs.pids,
            "driver": [os.getpid()],
        }
        cpu = {name: stack.cpu_seconds(pids) for name, pids in groups.items()}
        last = self.samples[-1] if self.samples else None
        share = {}
        if last is not None:
            span = now - last["_at"]
            share = {k: round((v - last["_cpu"][k]) / span, 3) for k, v in cpu.items()}
        stats = self.subs.stats()
        classes: Counter[str] = Counter()
        for statuses in self.answers.values():
            for status, n in statuses.items():
                classes[f"{status // 100}xx" if status else "none"] += n
        sample = {
            "t": round(t, 1),
            "phase": phase,
            "web_rss_kib": sum(stack.rss_kib(pid) for pid in web),
            "web_pids": {str(pid): stack.rss_kib(pid) for pid in web},
            "worker_rss_kib": sum(stack.rss_kib(pid) for pid in worker),
            "worker_pids": {str(pid): stack.rss_kib(pid) for pid in worker},
            "redis_used_memory": int(memory["used_memory"]),
            "redis_used_memory_dataset": int(memory["used_memory_dataset"]),
            "redis_keys": sum(kinds.values()),
            "keys": kinds,
            "queued": queues,
            "live_sessions": self.live,
            "active_sessions": active,
            "answers": dict(classes),
            "events_received": sum(stats["events"]),
            "cpu": share,
            "_at": now,
            "_cpu": cpu,
        }
        self.samples.append(sample)
        self.log(
            f"t={t:5.0f}s live {self.live:3d} (active {active}) web "
            f"{sample['web_rss_kib'] / 1024:6.1f} MiB worker "
            f"{sample['worker_rss_kib'] / 1024:6.1f} MiB redis "
            f"{sample['redis_used_memory'] / 2**20:6.1f} MiB ({sample['redis_keys']} keys) "
            f"queued {queues} answers {dict(classes)} events {sample['events_received']}"
        )

    def _redis_figures(self) -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
        """INFO memory, the keys by kind (ids in their names replaced by `*`) and the
        length of each RQ queue (jobs waiting)."""
        r = redis.Redis.from_url(self.stack.redis.url) if self.stack.redis else None
        assert r is not None
        with contextlib.closing(r):
            memory = r.info("memory")
            kinds: Counter[str] = Counter()
            for key in r.scan_iter(count=1000):
                kinds[ID.sub("*", key.decode(errors="replace"))] += 1
            queues = sorted(Queue.all(connection=r), key=lambda q: q.name)
            depth = {q.name: q.count for q in queues if q.count}
        return memory, dict(kinds.most_common()), depth

    # --- the result -----------------------------------------------------------------------

    def _result(self) -> dict[str, Any]:
        o = self.o
        end = o.minutes * 60
        load = [x for x in self.samples if x["phase"] == "load"]
        first = [x for x in load if o.warmup <= x["t"] < o.warmup + o.window]
        last = [x for x in load if x["t"] >= end - o.window]
        growth = {}
        for name, key in (
            ("web_rss", "web_rss_kib"),
            ("worker_rss", "worker_rss_kib"),
            ("redis_used_memory", "redis_used_memory"),
            ("redis_used_memory_dataset", "redis_used_memory_dataset"),
            ("redis_keys", "redis_keys"),
        ):
            a = statistics.median(x[key] for x in first) if first else None
            b = statistics.median(x[key] for x in last) if last else None
            pct = (b - a) / a * 100 if a and b is not None else None
            growth[name] = {"first": a, "last": b, "percent": pct}
        kinds = {}
        for kind in set().union(*(x["keys"] for x in first + last)):
            a = statistics.median(x["keys"].get(kind, 0) for x in first) if first else 0
            b = statistics.median(x["keys"].get(kind, 0) for x in last) if last else 0
            if a != b:
                kinds[kind] = {"first": a, "last": b}
        kinds = dict(sorted(kinds.items(), key=lambda kv: kv[1]["first"] - kv[1]["last"]))
        answers = {op: {str(k): v for k, v in sorted(c.items())} for op, c in self.answers.items()}
        api_5xx = sum(n for c in self.answers.values() for s, n in c.items() if s >= 500)
        hooks_5xx = sum(n for s, n in self.callbacks.items() if s >= 500)
        unanswered = sum(c.get(0, 0) for c in self.answers.values()) + self.callbacks.get(0, 0)
        stats = self.subs.stats()
        counts = {
            "sessions": len(self.calls),
            "sessions_verified": self.counts["sessions verified"],
            "invites_answered_200": sum(len(c.invited) for c in self.calls),
            "sessions_connected_in_time": sum(c.connected is not None for c in self.calls),
            "slow_connects": self.counts["slow"],
            "member_operations_skipped": self.counts["member operations skipped"],
            "removed": sum(c.removed for c in self.calls),
            "ended": sum(c.ended for c in self.calls),
            "5xx": api_5xx + hooks_5xx,
            "5xx_api": api_5xx,
            "5xx_callbacks": hooks_5xx,
            "unanswered": unanswered,
            "unexpected_answers": self.counts["unexpected answer"],
            "lost": self.counts["lost"],
            "double_dials": self.counts["double dials"],
            "event_problems": self.counts["events"] + stats["disorder"] + stats["closed"],
            "events_out_of_order": stats["disorder"],
            "streams_closed": stats["closed"],
            "driver_errors": self.counts["driver error"],
            "connect_seconds": _spread([c.connected for c in self.calls if c.connected]),
            "rechecks": self.counts["rechecks"],
            "sessions_unfinished": self.counts["sessions unfinished"],
            "creates": self.counts["creates"],
            "create_attempts": self.counts["create attempts"],
            "callback_attempts": sum(self.callbacks.values()),
            "callbacks_failed": self.failed_callbacks,
        }
        verdicts = {
            f"{name}_growth": g["percent"] is not None and g["percent"] < GROWTH_LIMIT
            for name, g in growth.items()
            if name in ("web_rss", "worker_rss", "redis_used_memory")
        }
        verdicts.update(
            no_5xx=counts["5xx"] == 0 and unanswered == 0,
            no_lost=counts["lost"] == 0 and counts["ended"] == counts["sessions"],
            no_double_dials=counts["double_dials"] == 0,
            subscribers=counts["event_problems"] == 0,
        )
        samples = [{k: v for k, v in x.items() if not k.startswith("_")} for x in self.samples]
        return {
            "parameters": {
                "minutes": o.minutes,
                "rate_calls_per_second": o.rate,
                "subscribers": o.subscribers,
                "warmup_seconds": o.warmup,
                "window_seconds": o.window,
                "sample_seconds": o.sample,
                "session_retention_seconds": o.retention,
                "event_retention_seconds": o.retention,
                "life_seconds": LIFE_SECONDS,
                "busy_every": BUSY_EVERY,
                "callers": CALLERS,
                "verify_after_seconds": VERIFY_AFTER,
                "script": [list(step) for step in SCRIPT],
                "growth_limit_percent": GROWTH_LIMIT,
            },
            "retention_seen": self.retention_seen,
            "samples": samples,
            "growth": growth,
            "key_kinds_growth": kinds,
            "counts": counts,
            "answers": answers,
            "callback_statuses": {str(k): v for k, v in sorted(self.callbacks.items())},
            "subscribers": {k: v for k, v in stats.items()},
            "verdicts": verdicts,
            "problems": self.problems,
            "logs": {
                name: _log_lines(self.stack.workdir / f"{name}.log")
                for name in ("web", "worker", "emulator")
            },
        }


def _spread(values: list[float]) -> dict[str, float | None]:
    """Median, 99th percentile (nearest rank) and maximum."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    p99 = ordered[max(0, -(-99 * len(ordered) // 100) - 1)]
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(p99, 2),
        "max": round(ordered[-1], 2),
    }


def _log_lines(path: Path) -> dict[str, Any]:
    """How many lines of a process's log are warnings, errors or tracebacks, with the first
    few of them."""
    counts: Counter[str] = Counter()
    first: list[str] = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            for word in ("Traceback", "CRITICAL", "ERROR", "WARNING"):
                if word in line:
                    counts[word] += 1
                    if len(first) < 10:
                        first.append(line[:300])
                    break
    return {"counts": dict(counts), "first": first}


# --- the command --------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of load (10)")
    p.add_argument("--output", type=Path, default=Path("bench/soak.json"), help="the JSON")
    p.add_argument("--rate", type=float, default=RATE, help=f"new calls per second ({RATE:g})")
    p.add_argument("--subscribers", type=int, default=SUBSCRIBERS, help=f"({SUBSCRIBERS})")
    p.add_argument(
        "--warmup-seconds",
        type=float,
        default=WARMUP_SECONDS,
        help=f"before the first window of the growth figures ({WARMUP_SECONDS:g})",
    )
    p.add_argument(
        "--retention-seconds",
        type=int,
        default=RETENTION_SECONDS,
        help=f"SESSION_ and EVENT_RETENTION_SECONDS of web and worker ({RETENTION_SECONDS})",
    )
    a = p.parse_args(argv)
    if a.minutes <= 0 or a.rate <= 0 or a.subscribers < 1 or a.warmup_seconds < 0:
        p.error("--minutes, --rate > 0, --subscribers >= 1, --warmup-seconds >= 0")
    return Options(
        minutes=a.minutes,
        rate=a.rate,
        subscribers=a.subscribers,
        warmup=a.warmup_seconds,
        retention=a.retention_seconds,
        output=a.output,
    )


def main(argv: list[str] | None = None) -> int:
    from bench.report import soak_section

    options = parse(argv)
    workdir, log = stack.command("soak")
    data = Soak(options, workdir, log).run()
    data["command"] = "python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    data["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    data["workdir"] = str(workdir)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(data, indent=1) + "\n")
    print(soak_section(data))
    log(f"wrote {options.output}; logs in {workdir}")
    return 0 if all(data["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
