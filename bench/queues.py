"""Ring queues (docs/queues.md): how soon a queued call rings an agent, how soon the
other phones stop when one agent takes it, how many workers ring-all needs, and a soak
that checks what a queue promises while many agents take many calls.

Every measurement stages a queue the way an operator and agents do: the queue and its
number (`orchestrator.provision`), users with keys as agents of it, each agent's
softphone registered at the emulator with a token from `GET /app/config`, and the agent
`Ready` (`PATCH /app/agent-state`). Callers are driven as Twilio drives them: the signed
voice webhook (`POST /twilio/voice`, `To` the queue's number) straight to the web, so the
interval starts exactly at the web's answer; their sessions end by EndSession
(`DELETE /sessions/{id}`), which frees the agent (wrap-up 0 s). The emulator is never
reset here: a reset would forget the API key the softphones' tokens are signed with.

- **Offer** (longest-idle, 50 agents, 10 calls/s for OFFER_SECONDS, worker running):
  from each voice webhook's 200 (the generator's clock) to the emulator accepting the
  first offer's participant create (label: the offer's member id).
- **Withdraw** (ring-all to 10 agents: one answers after the emulator's ring time, nine
  never answer; one call at a time): from the web's receipt of the winner's join (the
  session log's "took the call" line, stamped by the web in ms) to the emulator receiving
  the last of the other legs' cancels (its record of each call's `Status=canceled`).
- **The emulator's floor** for withdrawing (no worker, the web idle but taking the
  callbacks): nine ringing legs of a conference cancelled by a bare client with its
  requests written out and its connections open, all sent at once, and by the helper
  library from threads as the control job sends them: from the first byte sent to the
  emulator's receipt of the last cancel. What the machine allows before any of ours.
- **Spread** (ring-all to 10 agents, none answering, the emulator answering each create
  after 150 ms): the last offer's create minus the first's, with 1 to 5 workers.
- **Soak** (once per command, after the runs): longest-idle, SOAK_AGENTS agents,
  SOAK_CALLS calls over SOAK_SECONDS, each held for a random time, with an atomic
  snapshot of the queue and every agent four times a second.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import random
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rq import Worker
from twilio.request_validator import RequestValidator

from bench import loadgen, stack, workload
from orchestrator import callback_urls, jobs, keys, provision, twilio_rest
from orchestrator.launch import wait_until
from workers.control import LEG_CONCURRENCY

if TYPE_CHECKING:
    from bench.suite import Sample, Suite

KEY = "1p:queues:"  # results keys: web x1
OFFER = KEY + "offer"  # p50/p99: voice webhook 200 -> first offer's create
VOICE = KEY + "voice@10/s"  # the voice webhooks themselves
WITHDRAW = KEY + "withdraw"  # p50/p99: winner's join -> the last other leg's cancel
WEBHOOK, INVITE = "1p:webhook@1", "1p:invite@1"  # the suite's own, against this run's B0
BEFORE = ":before"  # the same loads against the web of `--before REV`: WEBHOOK + BEFORE
RATE = 10.0
OFFER_AGENTS = 50
OFFER_SECONDS = 20.0
HOLD_SECONDS = 2.0  # a call of the offer load lasts this long after its voice webhook
RING_ALL = 10
WITHDRAW_CALLS = 20
SPREAD_DELAY = 0.15
RINGS_UNTIL_CANCELLED = "+14155550002"  # the emulator lets a number ending 0002 ring on
# The worker counts tried (BENCH_SPREAD="4,5,6" for others) and the calls at each.
SPREAD_WORKERS = tuple(int(n) for n in os.environ.get("BENCH_SPREAD", "1,2,3,4,5").split(","))
SPREAD_CALLS = int(os.environ.get("BENCH_SPREAD_CALLS", "5"))
SPREAD_LIMIT_MS = 400.0
# The soak's scale; BENCH_SOAK="agents,calls,seconds[,hold min,hold max]" overrides it.
_SOAK = [float(x) for x in os.environ.get("BENCH_SOAK", "500,1000,300").split(",")]
SOAK_AGENTS, SOAK_CALLS, SOAK_SECONDS = int(_SOAK[0]), int(_SOAK[1]), _SOAK[2]
# seconds a soak call lasts after its agent connects, uniform
SOAK_HOLD = (_SOAK[3], _SOAK[4]) if len(_SOAK) == 5 else (60.0, 240.0)
SNAPSHOT_SECONDS = 0.25
TIE_MS = 5.0  # longest-idle check: closer than this to the offer counts as undecidable

# One atomic look at a queue and its agents (read only): KEYS[1] the waiting zset, then
# per agent its user hash and its sessions set; ARGV[1] the session key prefix. Returns
# {waiting, queued (waiting with no offer ringing), free (Ready, no leg), most legs of one
# agent, agents with two or more sessions, oldest queued wait ms, Ready agents}.
SNAPSHOT_LUA = """
local waiting = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local queued, oldest = 0, 0
for i = 1, #waiting, 2 do
  if redis.call('HGET', ARGV[1] .. waiting[i], 'queueState') == 'Queued' then
    queued = queued + 1
    local w = now - tonumber(waiting[i + 1])
    if w > oldest then oldest = w end
  end
end
local free, most, doubles, ready = 0, 0, 0, 0
for i = 2, #KEYS, 2 do
  local n = redis.call('SCARD', KEYS[i + 1])
  local st = redis.call('HGET', KEYS[i], 'agentState')
  if st == 'Ready' then ready = ready + 1 end
  if st == 'Ready' and n == 0 then free = free + 1 end
  if n > most then most = n end
  if n > 1 then doubles = doubles + 1 end
end
return {#waiting / 2, queued, free, most, doubles, oldest, ready}
"""


@dataclasses.dataclass
class Staff:
    """A queue of the suite's tenant, its number, and its agents (user ids and keys)."""

    qid: str
    number: str
    agents: list[tuple[str, str]]


class Queues:
    """The measurements of this module, taken with a Suite's stack, seeder and results."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.http = httpx.Client(timeout=30, trust_env=False)

    @property
    def port(self) -> int:
        return self.suite.stack.web_port

    @property
    def facts(self) -> dict[str, Any]:
        return self.suite.results.facts.setdefault("queues", {"runs": []})

    # --- staging ------------------------------------------------------------------------

    def staff(self, agents: int, strategy: str, answers: list[str] | None = None) -> Staff:
        """A fresh Redis and tenant with a queue of `agents` Ready agents whose softphones
        take calls as `answers[i]` says (default: all answer)."""
        suite = self.suite
        suite._fresh()
        jobs.install_control_template(suite.r)
        r, account = suite.r, suite.tenant.account
        settings = provision.QueueSettings(strategy=strategy, wrap_up=0, ring_timeout=60)
        qid = provision.create_queue(r, account, "Bench", settings)
        number = provision.add_number(r, next(suite.seeder.numbers), account, queue_id=qid)
        staff = Staff(qid, number, [])
        base = suite.stack.public_base_url
        for i in range(agents):
            uid = provision.add_user(r, f"q{secrets.token_hex(4)}{i}@bench.example", account)
            key = provision.create_key(r, account, ["User"], user=uid)
            provision.add_agent(r, qid, uid)
            staff.agents.append((uid, key))
            auth = {"Authorization": f"Bearer {key}"}
            token = self.http.get(f"{base}/app/config", headers=auth).json()["accessToken"]
            answer = answers[i] if answers else "answer"
            self._emulator("softphones", {"AccessToken": token, "Answer": answer})
            state = self.http.patch(
                f"{base}/app/agent-state", headers=auth, json={"agentState": "Ready"}
            )
            state.raise_for_status()
        return staff

    def _emulator(self, path: str, form: dict[str, str] | None = None) -> Any:
        return self.suite._emulator(path, form)

    def voice(self, staff: Staff, call_sid: str) -> bytes:
        """The signed voice webhook of a customer's call to the queue's number."""
        s = self.suite.stack
        url = callback_urls.without_fragment(callback_urls.voice(s.public_base_url))
        caller = next(self.suite.seeder.numbers)
        params = {
            "AccountSid": stack.ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": caller,
            "Caller": caller,
            "To": staff.number,
            "Called": staff.number,
        }
        validator = RequestValidator(s.token)
        return workload._signed(validator, url, "/twilio/voice", self.port, params)

    def _post_voice(self, staff: Staff) -> str:
        """One incoming call (untimed, through httpx): its session id."""
        csid = "CA" + secrets.token_hex(16)
        raw = self.voice(staff, csid)
        head, body = raw.split(b"\r\n\r\n", 1)
        headers = dict(
            line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
        )
        headers.pop("Host", None)
        headers.pop("Content-Length", None)
        answer = self.http.post(
            f"{self.suite.stack.public_base_url}/twilio/voice", content=body, headers=headers
        )
        answer.raise_for_status()
        return self._session_of(csid)

    def _session_of(self, call_sid: str) -> str:
        value = self.suite.r.get(keys.call(call_sid))
        if value is None:
            raise RuntimeError(f"no session for the incoming call {call_sid}")
        return value.decode().split()[0]

    def end(self, sid: str) -> None:
        """EndSession, with the account's key (no user's)."""
        answer = self.http.delete(
            f"{self.suite.stack.public_base_url}/sessions/{sid}",
            headers={"Authorization": f"Bearer {self.suite.tenant.key}"},
        )
        if answer.status_code not in (200, 204, 404):
            raise RuntimeError(f"EndSession {sid}: {answer.status_code} {answer.text}")

    def offers(self, sid: str) -> list[dict[str, str]]:
        """The session's offers (members with `_offer`), in the order they were made."""
        r = self.suite.r
        out = []
        for mid in r.lrange(keys.session_members(sid), 0, -1):
            m = {
                k.decode(): v.decode() for k, v in r.hgetall(keys.member(sid, mid.decode())).items()
            }
            if m.get("_offer"):
                out.append({"id": mid.decode(), **m})
        return out

    def all_free(self, staff: Staff) -> bool:
        pipe = self.suite.r.pipeline(transaction=False)
        for uid, _ in staff.agents:
            pipe.scard(keys.user_sessions(uid))
            pipe.hget(keys.user(uid), "agentState")
        replies = pipe.execute()
        return all(
            n == 0 and st == b"Ready" for n, st in zip(replies[::2], replies[1::2], strict=False)
        )

    def creates(self) -> dict[str, float]:
        """Label -> when the emulator accepted the participant create of that label."""
        times = self._emulator("creates")["times"]
        outbound = [c for c in self._emulator("calls")["calls"] if c["direction"] == "outbound-api"]
        out: dict[str, float] = {}
        for call, at in zip(outbound, times, strict=False):
            if call["label"]:
                out.setdefault(call["label"], at)
        return out

    def workers(self, count: int) -> list[str]:
        """`count` worker processes, registered with RQ; their names in the stack."""
        s = self.suite.stack
        s.start_worker()
        names = ["worker"]
        for n in range(1, count):
            names.append(f"worker{n}")
            s.svc.start_worker(names[-1])
        wait_until(lambda: Worker.count(connection=self.suite.r) >= count, 30, f"{count} workers")
        return names

    def stop_workers(self, names: list[str]) -> None:
        for name in names:
            self.suite.stack.stop(name)
        wait_until(lambda: Worker.count(connection=self.suite.r) == 0, 30, "the workers to stop")

    # --- the runs -------------------------------------------------------------------------

    def warmup(self) -> None:
        """A few untimed queue calls (the web's and the worker's first script loads)."""
        staff = self.staff(5, "longest-idle")
        names = self.workers(1)
        try:
            for _ in range(5):
                sid = self._post_voice(staff)
                wait_until(lambda: self.offers(sid), 10, "an offer")  # noqa: B023
                self.end(sid)
            wait_until(lambda: self.all_free(staff), 30, "the agents free")
        finally:
            self.stop_workers(names)

    def run(self, baseline: bool) -> None:
        """One run: with `baseline` (`--only queues`), the suite's webhook and invite loads
        against this run's B0 (measured just before), which a full run measures anyway;
        then offer, withdraw and spread."""
        suite = self.suite
        if baseline:
            self._web_loads()
        record: dict[str, Any] = {"spread": self._spreads(), "withdraw": {}}
        fewest = next(
            (int(n) for n, v in record["spread"].items() if v["max"] <= SPREAD_LIMIT_MS),
            max(SPREAD_WORKERS),
        )
        names = self.workers(1)
        try:
            sent, timed = suite.retried(OFFER, self._offer, quiet=False)
            suite.results.add(VOICE, sent)
            suite.results.add(OFFER, timed)
            record["withdraw"]["1"] = self._withdraw(1)
        finally:
            self.stop_workers(names)
        if fewest > 1:
            names = self.workers(fewest)
            try:
                record["withdraw"][str(fewest)] = self._withdraw(fewest)
            finally:
                self.stop_workers(names)
        record["withdraw_floor"] = self._withdraw_floor()
        self.facts["runs"].append(record)

    def _web_loads(self) -> None:
        """The suite's webhook and invite loads against this run's B0; with `--before`, the
        same loads against that revision's web too, the two webs taking turns at going
        first from one run to the next (the machine's drift then falls on both)."""
        suite = self.suite
        b0 = suite.hint.get("1p:b0", 8000)
        suite.hint.setdefault("1p:webhook", b0)
        suite.hint.setdefault("1p:invite", b0)
        webs = [("", None)]
        if suite.o.before:
            webs.append((BEFORE, suite.stack.checkout(suite.o.before)))
            if len(self.facts["runs"]) % 2:
                webs.reverse()
        for n, (suffix, code) in enumerate(webs):
            if n or code is not None:
                self._restart_web(code)
            suite._fresh()
            port = suite.stack.web_port
            hooks = functools.partial(suite._webhook_load, "1p", 1)
            suite._measure(WEBHOOK + suffix, port, hooks, "web", kind="1p:webhook")
            invites = functools.partial(suite._invite_load, "1p", 1)
            suite._measure(INVITE + suffix, port, invites, "web", kind="1p:invite")
        if webs[-1][1] is not None:
            self._restart_web(None)

    def _restart_web(self, code: Path | None) -> None:
        """The web again, from `code` (another checkout) or this one, warmed up by a second
        of webhooks as the suite's own web is before its first run."""
        suite = self.suite
        suite.stack.stop("web")
        suite.stack.start_web(1, code=code)
        suite._fresh()
        port = suite.stack.web_port
        members = workload.flatten(suite.seeder.sessions(suite.tenant, 250, 1))
        loadgen.run(loadgen.Load(port, suite._webhooks(members, port), duration=1.0))

    # --- 1. offer latency -------------------------------------------------------------------

    def _offer(self) -> tuple[Sample, Sample]:
        """Voice webhooks at RATE to a longest-idle queue of OFFER_AGENTS; each call ended
        HOLD_SECONDS after it came in. (the voice Sample, voice 200 → first create)."""
        from bench.suite import phases_text, timed

        suite = self.suite
        staff = self.staff(OFFER_AGENTS, "longest-idle")
        count = int(RATE * OFFER_SECONDS)
        csids = ["CA" + secrets.token_hex(16) for _ in range(count)]
        reqs = [self.voice(staff, c) for c in csids]
        stop = threading.Event()
        started = time.monotonic()

        def release() -> None:  # each call ends HOLD_SECONDS after it was due
            for i, csid in enumerate(csids):
                due = started + i / RATE + HOLD_SECONDS
                if stop.wait(max(0.0, due - time.monotonic())):
                    return
                with contextlib.suppress(RuntimeError):
                    self.end(self._session_of(csid))

        thread = threading.Thread(target=release, daemon=True)
        thread.start()
        try:
            sample, out = suite._apply(VOICE, self.port, reqs, "web", rate=RATE)
            thread.join(HOLD_SECONDS + 10)
        finally:
            stop.set()
        sids = [self._session_of(c) if out.status[i] == 200 else "" for i, c in enumerate(csids)]
        # The first offer of a session: its member id ends in the offer sequence 1.
        labels = [self._first_offer(sid) for sid in sids]
        wanted = {label for label in labels if label}
        accepted: dict[str, float] = {}

        def all_created() -> bool:
            accepted.update(self.creates())
            return wanted <= accepted.keys()

        with contextlib.suppress(TimeoutError):
            wait_until(all_created, 10, "the creates", 0.2)
        time.sleep(0.3)
        delays = [
            (accepted[label] - out.done_at[i]) * 1000 if label in accepted else math.inf
            for i, label in enumerate(labels)
            if out.status[i] == 200
        ]
        missing = sum(1 for d in delays if d == math.inf) + sum(1 for x in labels if not x)
        phases = suite._phases(
            {sid: out.done_at[i] for i, sid in enumerate(sids) if sid},
            {sid: accepted[lab] for sid, lab in zip(sids, labels, strict=True) if lab in accepted},
            {sid: lab for sid, lab in zip(sids, labels, strict=True) if lab in accepted},
        )
        result = timed(sample, delays, missing + sample.errors, phases)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: self.all_free(staff), 30, "the agents free", 0.2)
        suite.log(
            f"  {OFFER:<14} p50 {result.p50:7.2f} ms  p99 {result.p99:7.2f} ms  ({len(delays)} "
            f"calls, {missing} offers missing; {phases_text(phases)})"
        )
        return sample, result

    def _first_offer(self, sid: str) -> str:
        if not sid:
            return ""
        mid = "mem_" + sid[4:20] + f"{1:08x}"
        return mid if self.suite.r.hget(keys.member(sid, mid), "_offer") else ""

    # --- 2. withdrawing the other offers ---------------------------------------------------

    def _withdraw(self, workers: int) -> dict[str, Any]:
        """Ring-all to RING_ALL agents, the first answering and the rest not, one call at a
        time: per call, the winner's join at the web → the emulator's last cancel."""
        from bench.suite import percentile

        suite = self.suite
        answers = ["answer"] + ["ignore"] * (RING_ALL - 1)
        staff = self.staff(RING_ALL, "ring-all", answers)
        winner = staff.agents[0][0]
        delays: list[float] = []
        first: list[float] = []
        missing = 0
        for n in range(WITHDRAW_CALLS + 2):
            wait_until(lambda: self.all_free(staff), 30, "the agents free", 0.05)
            sid = self._post_voice(staff)

            def taken() -> list[dict[str, str]] | None:
                entries = [json.loads(e) for e in suite.r.lrange(keys.session_log(sid), 0, -1)]  # noqa: B023
                return [e for e in entries if e["message"].endswith(" took the call")] or None

            took = wait_until(taken, 20, "an agent to take the call", 0.02)
            joined = _epoch(took[0]["date"])
            losers = [o for o in self.offers(sid) if o.get("endpointId") != winner]
            calls = [o["callSid"] for o in losers if o.get("callSid")]
            cancels: dict[str, float] = {}

            def cancelled() -> bool:
                for csid in calls:  # noqa: B023
                    if csid in cancels:  # noqa: B023
                        continue
                    record = self._emulator(f"calls/{csid}")
                    for req in record["requests"]:
                        if (
                            req["operation"] == "UpdateCall"
                            and req["params"].get("Status") == "canceled"
                        ):
                            cancels[csid] = req["time"]  # noqa: B023
                return len(cancels) == len(calls)  # noqa: B023

            def settled() -> bool:
                # Watched in Redis, not at the emulator: polling the emulator would load it
                # while it is taking the very cancels being timed.
                ids = [o["id"] for o in losers]  # noqa: B023
                ranks = [suite.r.hget(keys.member(sid, mid), "_rank") for mid in ids]  # noqa: B023
                return all(int(rank or 0) >= 3 for rank in ranks)

            with contextlib.suppress(TimeoutError):
                wait_until(settled, 10, "the withdrawn offers to end", 0.02)
                wait_until(cancelled, 10, "the cancels", 0.05)
            self.end(sid)
            if n < 2:
                continue  # untimed: the first calls of this staff
            missing += len(calls) - len(cancels) + (RING_ALL - 1 - len(calls))
            if cancels:
                delays.append((max(cancels.values()) - joined) * 1000)
                first.append((min(cancels.values()) - joined) * 1000)
        wait_until(lambda: self.all_free(staff), 30, "the agents free", 0.05)
        out = {
            "calls": len(delays),
            "p50": percentile(delays, 0.5),
            "p99": percentile(delays, 0.99),
            "max": max(delays, default=math.nan),
            "first_p50": percentile(first, 0.5),
            "missing": missing,
            "delays": delays,
        }
        suite.log(
            f"  {WITHDRAW} x{workers} p50 {out['p50']:7.2f} ms  p99 {out['p99']:7.2f} ms  (last of "
            f"{RING_ALL - 1} cancels; first cancel p50 {out['first_p50']:.2f} ms; "
            f"{len(delays)} calls, {missing} cancels missing)"
        )
        return out

    def _withdraw_floor(self) -> dict[str, Any]:
        """What the emulator alone allows: RING_ALL - 1 ringing legs of one conference (their
        callbacks going to the web, as an offer's do), cancelled by a bare client that has
        its requests written out and its connections open, all sent at once, and by the
        helper library from a pool of threads as the control job sends them. Per call, from
        the first byte sent to the emulator's receipt of the first and the last cancel."""
        from bench.suite import percentile

        s = self.suite.stack
        rest = twilio_rest.client(stack.ACCOUNT_SID, s.token, s.emulator_url)
        auth = base64.b64encode(f"{stack.ACCOUNT_SID}:{s.token}".encode()).decode()
        host, port = s.emulator_url.removeprefix("http://").split(":")
        out: dict[str, Any] = {}
        pool = ThreadPoolExecutor(max_workers=LEG_CONCURRENCY)
        try:
            for how in ("bare", "library"):
                firsts, lasts = [], []
                for n in range(WITHDRAW_CALLS + 2):
                    room = f"floor-{how}-{n}-{secrets.token_hex(4)}"
                    legs = [self._ring(rest, room, i) for i in range(RING_ALL - 1)]
                    time.sleep(0.2)  # every leg ringing, its callbacks delivered
                    if how == "bare":
                        started = _cancel_at_once(host, int(port), auth, legs)
                    else:
                        started = time.time()
                        cancel = functools.partial(_cancel, rest)
                        wait([pool.submit(cancel, leg) for leg in legs])
                    times = [self._cancel_time(leg) for leg in legs]
                    if n >= 2:
                        firsts.append((min(times) - started) * 1000)
                        lasts.append((max(times) - started) * 1000)
                out[how] = {
                    "p50": percentile(lasts, 0.5),
                    "p99": percentile(lasts, 0.99),
                    "first_p50": percentile(firsts, 0.5),
                    "delays": lasts,
                }
                self.suite.log(
                    f"  {WITHDRAW} floor ({how}) p50 {out[how]['p50']:7.2f} ms  p99 "
                    f"{out[how]['p99']:7.2f} ms  (first cancel p50 {out[how]['first_p50']:.2f} ms)"
                )
        finally:
            pool.shutdown()
        return out

    def _ring(self, rest: Any, room: str, i: int) -> str:
        """A participant of `room` that rings until cancelled; its call sid."""
        base = self.suite.stack.public_base_url
        participant = rest.conferences(room).participants.create(
            from_=self.suite.tenant.number,
            to=RINGS_UNTIL_CANCELLED,
            label=f"floor{i}",
            status_callback=callback_urls.call_status(base, "ses_floor", f"mem_floor{i}"),
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            conference_status_callback=callback_urls.conference_status(base),
            conference_status_callback_event=["start", "end", "join", "leave"],
        )
        return participant.call_sid

    def _cancel_time(self, call_sid: str) -> float:
        record = wait_until(
            lambda: [
                r["time"]
                for r in self._emulator(f"calls/{call_sid}")["requests"]
                if r["operation"] == "UpdateCall"
            ],
            10,
            "the emulator to record a cancel",
        )
        return record[0]

    # --- 3. ring-all's creates with slow creates, by worker count ---------------------------

    def _spreads(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        staff = self.staff(RING_ALL, "ring-all", ["ignore"] * RING_ALL)
        for count in SPREAD_WORKERS:
            names = self.workers(count)
            try:
                out[str(count)] = self._spread(staff, count)
            finally:
                self.stop_workers(names)
        return out

    def _spread(self, staff: Staff, workers: int) -> dict[str, Any]:
        from bench.suite import percentile

        spreads: list[float] = []
        window = SPREAD_CALLS * (RING_ALL * SPREAD_DELAY + 10) + 30
        self._emulator(
            "faults",
            {"mode": "delay", "seconds": str(SPREAD_DELAY), "for_seconds": str(window)},
        )
        try:
            for _ in range(SPREAD_CALLS):
                wait_until(lambda: self.all_free(staff), 30, "the agents free", 0.05)
                sid = self._post_voice(staff)
                offers: list[str] = []

                def created() -> bool:
                    offers[:] = [o["id"] for o in self.offers(sid)]  # noqa: B023
                    got = self._emulator("creates")["byLabel"]
                    return len(offers) == RING_ALL and all(got.get(m) for m in offers)  # noqa: B023

                with contextlib.suppress(TimeoutError):
                    wait_until(created, 20, "the creates", 0.05)
                times = self.creates()
                at = [times[m] for m in offers if m in times]
                if len(at) == RING_ALL:
                    spreads.append((max(at) - min(at)) * 1000)
                self.end(sid)
        finally:
            self._emulator("faults", {"count": "0"})
        wait_until(lambda: self.all_free(staff), 30, "the agents free", 0.05)
        result = {
            "calls": len(spreads),
            "p50": percentile(spreads, 0.5),
            "max": max(spreads, default=math.nan),
            "spreads": spreads,
        }
        self.suite.log(
            f"  spread x{workers} workers: p50 {result['p50']:.0f} ms, max "
            f"{result['max']:.0f} ms ({len(spreads)} calls of {SPREAD_CALLS})"
        )
        return result

    # --- 4. the soak ----------------------------------------------------------------------

    def soak(self) -> None:
        """SOAK_CALLS calls at an even rate over SOAK_SECONDS to a longest-idle queue of
        SOAK_AGENTS; each call ends a random SOAK_HOLD after its agent connected."""
        suite = self.suite
        log = suite.log
        t0 = time.monotonic()
        staff = self.staff(SOAK_AGENTS, "longest-idle")
        log(f"soak: {SOAK_AGENTS} agents staffed in {time.monotonic() - t0:.0f} s")
        r = suite.r
        names = self.workers(1)
        snapshot = r.register_script(SNAPSHOT_LUA)
        snap_keys = [keys.queue_waiting(staff.qid)]
        for uid, _ in staff.agents:
            snap_keys += [keys.user(uid), keys.user_sessions(uid)]
        prefix = keys.session("")
        stop = threading.Event()
        snaps: list[tuple[float, list[int]]] = []

        def sample() -> None:
            while not stop.wait(SNAPSHOT_SECONDS):
                snaps.append((time.time(), [int(x) for x in snapshot(snap_keys, [prefix])]))

        rate = SOAK_CALLS / SOAK_SECONDS
        csids = ["CA" + secrets.token_hex(16) for _ in range(SOAK_CALLS)]
        reqs = [self.voice(staff, c) for c in csids]
        rng = random.Random(7)
        holds = [rng.uniform(*SOAK_HOLD) for _ in csids]
        ended: set[str] = set()

        ours = [0]  # Redis commands the bench itself sends meanwhile (left out below)

        def release() -> None:  # ends each call its hold time after its agent connected
            connected: dict[str, float] = {}
            found: dict[int, str] = {}
            while not stop.wait(0.5):
                now = time.time()
                todo = [i for i in range(len(csids)) if i not in found]
                pipe = r.pipeline(transaction=False)
                for i in todo:
                    pipe.get(keys.call(csids[i]))
                for i, v in zip(todo, pipe.execute(), strict=True):
                    if v:
                        found[i] = v.decode().split()[0]
                live = [(i, sid) for i, sid in found.items() if sid not in ended]
                pipe = r.pipeline(transaction=False)
                for _, sid in live:
                    pipe.hmget(keys.session(sid), "queueState", "ended")
                ours[0] += len(todo) + len(live) + 2
                for (i, sid), (qs, done) in zip(live, pipe.execute(), strict=True):
                    if done == b"true":
                        ended.add(sid)
                    elif qs == b"Connected":
                        since = connected.setdefault(sid, now)
                        if now - since >= holds[i]:
                            ended.add(sid)
                            with contextlib.suppress(httpx.HTTPError, RuntimeError):
                                self.end(sid)

        info0, stats0 = r.info("memory"), suite._commands()
        threads = [threading.Thread(target=f, daemon=True) for f in (sample, release)]
        for t in threads:
            t.start()
        started = time.time()
        try:
            out = loadgen.run(
                loadgen.Load(self.port, reqs, duration=SOAK_SECONDS + 0.01, rate=rate)
            )
            log(f"soak: {out.completed} calls in, {out.errors} errors; draining")
            # Calls keep being answered and released until each has had its hold time.
            wait_until(
                lambda: len(ended) >= out.completed,
                SOAK_HOLD[1] + 60,
                "every soak call to end",
                1.0,
            )
        except TimeoutError:
            log(f"soak: {out.completed - len(ended)} calls still not ended")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        finished = time.time()
        time.sleep(1.0)  # the last legs' callbacks
        info1, stats1 = r.info("memory"), suite._commands()
        # The snapshots' own: EVALSHA, ZRANGE, TIME, an HGET per waiting call, 2 per agent.
        ours[0] += sum(3 + v[0] + 2 * SOAK_AGENTS for _, v in snaps) + 2
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: self.all_free(staff), 30, "the agents free", 0.5)
        self.stop_workers(names)
        result = self._soak_checks(staff, csids, snaps)
        queued = result["offers"] or 1
        commands = {k: v - stats0.get(k, 0) for k, v in stats1.items() if v > stats0.get(k, 0)}
        result.update(
            agents=SOAK_AGENTS,
            calls=out.completed,
            errors=out.errors,
            rate=rate,
            seconds=finished - started,
            hold=list(SOAK_HOLD),
            commands_per_call=(sum(commands.values()) - ours[0]) / queued,
            scripts_per_call=(sum(commands.get(c, 0) for c in ("evalsha", "eval")) - len(snaps))
            / queued,
            top_commands=sorted(
                ((k, v / queued) for k, v in commands.items()), key=lambda kv: -kv[1]
            )[:12],
            memory_before=int(info0["used_memory"]),
            memory_after=int(info1["used_memory"]),
            memory_per_call=(int(info1["used_memory"]) - int(info0["used_memory"]))
            / max(1, out.completed),
        )
        self.facts["soak"] = result
        log(f"soak: {json.dumps({k: v for k, v in result.items() if k != 'top_commands'})}")

    def _soak_checks(
        self,
        staff: Staff,
        csids: list[str],
        snaps: list[tuple[float, list[int]]],
    ) -> dict[str, Any]:
        """What the soak promises: no agent with two offers at once, no call left queued
        while an agent is free, longest-idle's choice right for each offer."""
        r = self.suite.r
        sids = [v.decode().split()[0] for v in r.mget([keys.call(c) for c in csids]) if v]
        agent_ids = {uid for uid, _ in staff.agents}
        # Every offer as its session's log has it: (agent, offered, leg over, session
        # ended), each the web's or the worker's clock (ms). The leg is over at the last
        # line naming the agent ("... left the conference").
        offers: list[Offer] = []
        states: dict[str, int] = {}
        for sid in sids:
            entries = [json.loads(e) for e in r.lrange(keys.session_log(sid), 0, -1)]
            ended = next(
                (_epoch(e["date"]) for e in entries if e["message"] == "The call was ended"),
                math.inf,
            )
            made = [
                (i, e["message"].removeprefix("Offered to "))
                for i, e in enumerate(entries)
                if e["message"].startswith("Offered to ")
            ]
            state = (r.hget(keys.session(sid), "queueState") or b"").decode()
            states[state] = states.get(state, 0) + 1
            for o, (i, name) in zip(self.offers(sid), made, strict=False):
                mine = [_epoch(e["date"]) for e in entries[i:] if name in e["message"]]
                over = mine[-1] if len(mine) > 1 else math.inf
                at = int(o["_offeredat"]) / 1000 if o.get("_offeredat") else mine[0]
                offers.append(Offer(o.get("endpointId", ""), mine[0], over, ended, sid, at))
        # The agents' state changes, in Redis time order (stream ids, ms).
        changes: dict[str, list[tuple[float, str]]] = {uid: [] for uid in agent_ids}
        for entry_id, fields in r.xrange(keys.account_events(self.suite.tenant.account)):
            f = {k.decode(): v.decode() for k, v in fields.items()}
            if f.get("@events") == "AgentStateChanged" and f.get("userId") in changes:
                at = int(entry_id.decode().split("-")[0]) / 1000
                changes[f["userId"]].append((at, f["agentState"]))
        tie = TIE_MS / 1000
        spans: dict[str, list[Offer]] = {}
        for o in offers:
            spans.setdefault(o.agent, []).append(o)
        # Two offers of one agent overlap when the second was made before the first one's
        # leg was over; "after its end" when the first call had been ended (EndSession)
        # by then, so the service counted the agent free though their leg was still up.
        overlaps, after_end, gaps = 0, 0, []
        examples: list[tuple[Any, ...]] = []
        for mine in spans.values():
            mine.sort(key=lambda o: o.offered)
            for first, second in itertools.pairwise(mine):
                if second.offered < first.over - tie:
                    if second.offered >= first.ended:
                        after_end += 1
                        gaps.append((first.over - second.offered) * 1000)
                    else:
                        overlaps += 1
                        examples.append(("overlap", first.sid, second.sid))

        def idle_since(uid: str, at: float) -> float | None:
            """When the agent last became Ready before `at`, if Ready then; None if not."""
            since = None
            for t, st in changes.get(uid, []):
                if t > at:
                    break
                since = t if st == "Ready" else None
            return since

        def busy(uid: str, at: float, margin: float) -> bool:
            return any(o.offered - margin <= at < o.over + margin for o in spans.get(uid, []))

        wrong, undecidable = 0, 0
        for o in offers:
            # Redis' clock for both the offer and the states; the same script may have made
            # the agent Ready in the same millisecond.
            mine = idle_since(o.agent, o.at)
            if mine is None:
                mine = idle_since(o.agent, o.at + tie)
            if mine is None:
                wrong += 1  # offered to an agent not Ready
                examples.append(("not ready", o.agent, o.sid))
                continue
            verdicts = set()
            for other in agent_ids - {o.agent}:
                theirs = idle_since(other, o.at)
                if theirs is None or theirs >= mine or busy(other, o.offered, -tie):
                    continue  # not Ready, idle for less, or clearly busy
                close = (
                    mine - theirs <= tie
                    or idle_since(other, o.at - tie) is None
                    or busy(other, o.offered, tie)
                )
                verdicts.add("close" if close else "wrong")
                if not close:
                    examples.append(("idle", o.agent, o.sid, other))
                    break
            wrong += "wrong" in verdicts
            undecidable += verdicts == {"close"}
        # A call queued while an agent is free, in how many snapshots, and for how long in
        # a row (the snapshots are SNAPSHOT_SECONDS apart).
        streak, longest = 0, 0
        for _, v in snaps:
            streak = streak + 1 if v[1] > 0 and v[2] > 0 else 0
            longest = max(longest, streak)
        from bench.suite import percentile

        return {
            "offers": len(offers),
            "sessions": len(sids),
            "queue_states": states,
            "overlapping_offers": overlaps,
            "offers_before_last_leg_over": after_end,
            "leg_still_up_ms_p50": percentile(gaps, 0.5),
            "leg_still_up_ms_max": max(gaps, default=0.0),
            "snapshots": len(snaps),
            "snapshot_doubles": sum(1 for _, v in snaps if v[4] > 0),
            "queued_while_free": sum(1 for _, v in snaps if v[1] > 0 and v[2] > 0),
            "queued_while_free_longest_s": longest * SNAPSHOT_SECONDS,
            "most_waiting": max((v[0] for _, v in snaps), default=0),
            "snapshots_with_waiting": sum(1 for _, v in snaps if v[1] > 0),
            "longest_queued_ms": max((v[5] for _, v in snaps), default=0),
            "fewest_free": min((v[2] for _, v in snaps), default=0),
            "idle_wrong": wrong,
            "idle_undecidable": undecidable,
            "examples": examples[:6],
        }


@dataclasses.dataclass(frozen=True)
class Offer:
    """One offer of a soak call, as its session's log has it (Unix times)."""

    agent: str
    offered: float
    over: float  # the agent's leg over (inf: never seen)
    ended: float  # the session ended (inf: never)
    sid: str
    # When the offer was made by Redis' clock (the member's _offeredat), the clock of the
    # agents' state events, which the longest-idle check compares it with.
    at: float = math.nan


def _epoch(iso: str) -> float:
    """The service's ISO dates (UTC, ms, a Z) as Unix time."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _cancel(rest: Any, call_sid: str) -> None:
    rest.calls(call_sid).update(status="canceled")


def _cancel_at_once(host: str, port: int, auth: str, call_sids: list[str]) -> float:
    """POST Status=canceled for each call, each on a connection already open, every request
    written before any answer is read; when the first was sent (time.time())."""
    body = b"Status=canceled"
    requests = [
        (
            f"POST /2010-04-01/Accounts/{stack.ACCOUNT_SID}/Calls/{sid}.json HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for sid in call_sids
    ]
    socks = [socket.create_connection((host, port)) for _ in call_sids]
    try:
        started = time.time()
        for sock, request in zip(socks, requests, strict=True):
            sock.sendall(request)
        for sock in socks:
            sock.settimeout(10)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the emulator closed a connection without answering")
                answer += chunk
    finally:
        for sock in socks:
            sock.close()
    return started
