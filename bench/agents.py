"""Agents' calls (docs/api.md: GetAppConfig, calls agents place): what a softphone's token
costs the web process, and how soon each leg of an agent's call reaches Twilio.

**GetAppConfig** (closed loop, 32 connections, worker stopped, B0 of the same run as the
base): `GET /app/config` with the keys of 100 users of one account, round robin; each
answer mints a Twilio access token (the `twilio` library's AccessToken, HS256), as a
softphone asks for one at start and before each expiry. The stack's Twilio settings
(API key, TwiML App) come from `orchestrator twilio setup` run against the emulator
(bench/stack.py), as the launcher does for every stack.

**A softphone's call** (worker running, open loop of 20 calls/s). Twilio's side is sent
as Twilio sends it, signed with the auth token: first, untimed, the voice webhook of each
call (`POST /twilio/voice`, `From=client:<user id>`, `To` a number: the service creates
the outgoing session and answers TwiML that joins the agent's leg to its conference);
then, at 20/s, the conference-status `participant-join` of each agent's leg, which
releases the destination's dial job. Timed: from the moment each join callback is sent
to the web (the load generator's clock) to the emulator accepting the destination's
participant create (its `GET /_emulator/creates` times, paired by the participant's
label, the destination's member id; one machine, one clock). The web is driven directly
rather than through the emulator's softphones, so the start of the interval is exactly
when the web receives the callback, not when the emulator logged sending it.

**Click to call** (worker running, open loop of 20/s): `POST /sessions/outgoing`
`{"numberToDial"}` with a user's key; timed from each 200 (client clock) to the emulator
accepting the agent's participant create (label: the agent's member id, the session's
first member). Nobody's softphone is registered at the emulator, so the agent's leg rings
unanswered and the destination is never dialled: the figure is the dispatch of the
agent's leg alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import secrets
import time
from typing import TYPE_CHECKING

import httpx
from twilio.request_validator import RequestValidator

from bench import loadgen, stack, workload
from orchestrator import callback_urls, jobs, keys, provision
from orchestrator.launch import wait_until

if TYPE_CHECKING:
    from bench.suite import Sample, Suite

KEY = "1p:agents:"  # results keys: web x1
APP_CONFIG = KEY + "app-config"
SOFTPHONE = KEY + "softphone"  # p50/p99: join callback sent -> destination's create
CLICK = KEY + "click"  # p50/p99: NewOutgoingSession 200 -> agent's create
JOIN = KEY + "join@20/s"  # the join callbacks themselves (latency of their answers)
CLICK_REQUESTS = KEY + "click@20/s"  # the NewOutgoingSession requests themselves
RATE = 20.0
USERS = 100
APP_CONFIG_ROUTE = "/app/config"
CLICK_ROUTE = "/sessions/outgoing"
CREATES_SECONDS = 10.0  # after the last request, for the emulator to have every create


@dataclasses.dataclass(frozen=True)
class Agent:
    user_id: str
    tenant: workload.Tenant  # the account's, with this user's key


class Agents:
    """The measurements of this module, taken with a Suite's stack, seeder and results."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.agents: list[Agent] = []

    @property
    def port(self) -> int:
        return self.suite.stack.web_port

    def _fresh(self) -> list[Agent]:
        """The suite's empty Redis and new tenant, with USERS users, each with a key, and the
        control job template back (the web would reinstall it on its first script call;
        that is not measured)."""
        suite = self.suite
        suite._fresh()
        jobs.install_control_template(suite.r)
        tenant = suite.tenant
        self.agents = []
        for i in range(USERS):
            uid = provision.add_user(suite.r, f"agent{i}@bench.example", tenant.account)
            key = provision.create_key(suite.r, tenant.account, ["User"], user=uid)
            self.agents.append(Agent(uid, dataclasses.replace(tenant, key=key)))
        return self.agents

    # --- GetAppConfig ---------------------------------------------------------------------

    def app_config_requests(self, count: int) -> list[bytes]:
        agents = self.agents
        return [
            workload.api(self.port, agents[i % len(agents)].tenant, "GET", APP_CONFIG_ROUTE)
            for i in range(count)
        ]

    def check(self) -> None:
        """One GetAppConfig answered with a token: the stack has its Twilio settings."""
        self._fresh()
        answer = httpx.get(
            f"{self.suite.stack.public_base_url}{APP_CONFIG_ROUTE}",
            headers={"Authorization": f"Bearer {self.agents[0].tenant.key}"},
            timeout=10,
            trust_env=False,
        )
        if answer.status_code != 200 or answer.json().get("accessToken", "").count(".") != 2:
            raise RuntimeError(f"GetAppConfig gave no token: {answer.status_code} {answer.text}")

    def warmup(self) -> None:
        """Half an untimed second of GetAppConfig (the calls warm up in `calls`)."""
        suite = self.suite
        self._fresh()
        reqs = self.app_config_requests(suite._pool(APP_CONFIG, 4000))
        loadgen.run(loadgen.Load(self.port, reqs, duration=0.5))

    def run(self) -> None:
        """One run: GetAppConfig (B0 of this run is measured already), then both calls."""
        suite = self.suite
        self._fresh()
        suite._measure(APP_CONFIG, self.port, self._app_config_load, "web", kind=APP_CONFIG)
        self.calls()

    def _app_config_load(self) -> list[bytes]:
        hint = self.suite.hint
        return self.app_config_requests(self.suite._pool(APP_CONFIG, hint.get("1p:b0", 8000)))

    # --- calls ----------------------------------------------------------------------------

    def calls(self) -> None:
        """Both kinds of call at RATE with the worker running, each after a few untimed."""
        suite = self.suite
        self._fresh()
        suite._emulator("reset", {})
        suite.stack.start_worker()
        try:
            count = max(20, int(RATE * max(1.0, suite.o.duration * 2)))
            self._softphone(5, "warmup:softphone")
            self._click(5, "warmup:click")
            for key, once in ((SOFTPHONE, self._softphone), (CLICK, self._click)):
                requests_key = JOIN if key == SOFTPHONE else CLICK_REQUESTS
                attempt = functools.partial(once, count, key)
                sent, timed = suite.retried(key, attempt, quiet=False)
                suite.results.add(requests_key, sent)
                suite.results.add(key, timed)
        finally:
            suite.stack.stop("worker")
            time.sleep(1.0)  # the emulator's callbacks for the last legs drain

    def _softphone(self, count: int, key: str) -> tuple[Sample, Sample]:
        """`count` softphone calls: voice webhooks (untimed), then their agents' joins at
        RATE; (the joins' Sample, the join → destination create Sample)."""
        suite = self.suite
        suite._emulator("reset", {})
        base = suite.stack.public_base_url
        validator = RequestValidator(suite.stack.token)
        agents, numbers = self.agents, suite.seeder.numbers
        calls = [
            ("CA" + secrets.token_hex(16), agents[i % len(agents)].user_id, next(numbers))
            for i in range(count)
        ]
        app = suite.stack.svc.twilio_settings.get("TWILIO_TWIML_APP_SID", "")
        voice_url = callback_urls.without_fragment(callback_urls.voice(base))
        voices = [
            workload._signed(validator, voice_url, "/twilio/voice", self.port, voice(*call, app))
            for call in calls
        ]
        out = loadgen.run(loadgen.Load(self.port, voices, connections=8, duration=30))
        if out.errors:
            raise RuntimeError(f"the softphones' voice webhooks failed: {out.statuses()}")
        sessions = self._sessions([csid for csid, _, _ in calls])
        conference_url = callback_urls.without_fragment(callback_urls.conference_status(base))
        target = "/twilio/conference-status"
        joins = [
            workload._signed(validator, conference_url, target, self.port, join(sid, csid))
            for (csid, _, _), (sid, _, _) in zip(calls, sessions, strict=True)
        ]
        sample, out = suite._apply(key + "@join", self.port, joins, "web", rate=RATE)
        # The interval starts when the web receives the callback: the generator's send
        # (its due time in the open loop, on the wall clock), not its answer.
        sent_at = [
            out.done_at[i] - out.latency_ns[i] / 1e9 if out.status[i] // 100 == 2 else math.nan
            for i in range(count)
        ]
        dests = [dest for _, _, dest in sessions]
        timed = self._timed(key, sample, sessions, dests, sent_at, list(out.done_at))
        return sample, timed

    def _sessions(self, call_sids: list[str]) -> list[tuple[str, str, str]]:
        """(session id, agent's member id, destination's member id) of each call's session."""
        r = self.suite.r
        pipe = r.pipeline(transaction=False)
        for csid in call_sids:
            pipe.get(keys.call(csid))
        found = []
        for csid, value in zip(call_sids, pipe.execute(), strict=True):
            if value is None:
                raise RuntimeError(f"no outgoing session for the softphone's call {csid}")
            sid, agent = value.decode().split()
            found.append((sid, agent))
        pipe = r.pipeline(transaction=False)
        for sid, _ in found:
            pipe.lrange(keys.session_members(sid), 0, -1)
        out = []
        for (sid, agent), members in zip(found, pipe.execute(), strict=True):
            others = [m.decode() for m in members if m.decode() != agent]
            out.append((sid, agent, others[0] if others else ""))
        return out

    def _click(self, count: int, key: str) -> tuple[Sample, Sample]:
        """`count` NewOutgoingSession at RATE; (their Sample, 200 → agent's create Sample)."""
        suite = self.suite
        suite._emulator("reset", {})
        agents = self.agents
        reqs = [
            workload.api(
                self.port,
                agents[i % len(agents)].tenant,
                "POST",
                CLICK_ROUTE,
                {"numberToDial": next(suite.seeder.numbers)},
            )
            for i in range(count)
        ]
        sample, out = suite._apply(key + "@20/s", self.port, reqs, "web", rate=RATE, bodies=True)
        sids = [
            json.loads(out.bodies[i])["id"] if out.status[i] == 200 else "" for i in range(count)
        ]
        r = suite.r
        pipe = r.pipeline(transaction=False)
        for sid in sids:
            pipe.lindex(keys.session_members(sid), 0)
        agents_mids = [m.decode() if m else "" for m in pipe.execute()]
        sessions = [(sid, mid, "") for sid, mid in zip(sids, agents_mids, strict=True)]
        done = list(out.done_at)
        sent = [done[i] if out.status[i] == 200 else math.nan for i in range(count)]
        return sample, self._timed(key, sample, sessions, agents_mids, sent, done)

    def _timed(
        self,
        key: str,
        sample: Sample,
        sessions: list[tuple[str, str, str]],
        labels: list[str],
        start: list[float],
        replied: list[float],
    ) -> Sample:
        """The Sample of the delays from `start[i]` to the emulator's create of the
        participant labelled `labels[i]`; a create that never came counts as infinitely
        late. to_start / to_accept / to_end: 200 → job started → create → job ended."""
        from bench.suite import phases_text, timed

        suite = self.suite
        wanted = {label for label, t in zip(labels, start, strict=True) if label and t == t}
        accepted: dict[str, float] = {}

        def all_created() -> bool:
            accepted.update(self._creates())
            return wanted <= accepted.keys()

        with contextlib.suppress(TimeoutError):
            wait_until(all_created, CREATES_SECONDS, "the creates", 0.1)
        time.sleep(0.3)  # the last jobs end
        delays = [
            (accepted[label] - t) * 1000 if label in accepted else math.inf
            for label, t in zip(labels, start, strict=True)
            if label and t == t
        ]
        missing = sum(1 for d in delays if d == math.inf)
        by_sid = {sid: label for (sid, _, _), label in zip(sessions, labels, strict=True)}
        phases = suite._phases(
            {sid: done for (sid, _, _), done in zip(sessions, replied, strict=True) if sid},
            {sid: accepted[label] for sid, label in by_sid.items() if label in accepted},
            {sid: label for sid, label in by_sid.items() if label in accepted},
        )
        result = timed(sample, delays, missing + sample.errors, phases)
        suite.log(
            f"  {key:<14} p50 {result.p50:7.2f} ms  p99 {result.p99:7.2f} ms  ({len(delays)} "
            f"calls, {missing} creates missing; 200 → job started → create → job ended: "
            f"{phases_text(phases)})"
        )
        return result

    def _creates(self) -> dict[str, float]:
        """Label -> when the emulator accepted the participant create of that label."""
        suite = self.suite
        times = suite._emulator("creates")["times"]
        outbound = [
            c for c in suite._emulator("calls")["calls"] if c["direction"] == "outbound-api"
        ]
        out: dict[str, float] = {}
        for call, at in zip(outbound, times, strict=False):
            if call["label"]:
                out.setdefault(call["label"], at)
        return out


def voice(call_sid: str, user_id: str, number: str, app_sid: str) -> dict[str, str]:
    """The voice webhook Twilio sends for a softphone's call through the TwiML App."""
    client = f"client:{user_id}"
    return {
        "AccountSid": stack.ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "ApplicationSid": app_sid,
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": client,
        "Caller": client,
        "To": number,
        "Called": number,
    }


def join(sid: str, call_sid: str) -> dict[str, str]:
    """The conference-status callback of the agent's leg joining the session's conference
    (joined by TwiML: no participant label)."""
    return {
        "AccountSid": stack.ACCOUNT_SID,
        "ConferenceSid": "CF" + secrets.token_hex(16),
        "FriendlyName": sid,
        "StatusCallbackEvent": "participant-join",
        "CallSid": call_sid,
        "Muted": "false",
        "Hold": "false",
        "Coaching": "false",
        "EndConferenceOnExit": "true",
        "StartConferenceOnEnter": "true",
        "SequenceNumber": "1",
        "Timestamp": "Mon, 01 Jan 2024 00:00:00 +0000",
    }
