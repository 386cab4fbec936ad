"""What the bench sends: a tenant, seeded sessions, and pre-serialised HTTP requests.

Sessions and members are written with the service's own Lua scripts (`create_session.lua`,
`invite.lua`), pipelined, so the state under load is exactly what the service would have
written, thousands of sessions take seconds instead of minutes of HTTP, and the seed cannot
drift from the key layout. While seeding, invite.lua's dial job goes to throw-away `bench:`
keys (no worker dials seeded members).

Webhooks are Twilio's call-progress callbacks (its parameter set, signed with the auth token
over PUBLIC_BASE_URL + path + query, an idempotency token each, as Twilio sends them). Each
seeded member gets its call's life in order (initiated, ringing, in-progress, completed, with
increasing SequenceNumber), members interleaved in blocks wider than the 32 connections, so
no member is hit twice at once and every step of call_event.lua is exercised.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import redis
from twilio.request_validator import RequestValidator

from orchestrator import callback_urls, jobs, provision
from orchestrator.keys import PREFIX
from orchestrator.scripts import source
from orchestrator.store import new_id, now

CALL_LIFE = ("initiated", "ringing", "in-progress", "completed")
BLOCK = 128  # members per interleaving block; more than the connections in flight
SEED_JOB = ["bench:seed:queue", "bench:seed:queues", "bench:seed:job", "bench:seed:jobid"]
SEED_CHUNK = 2000


@dataclass(frozen=True)
class Member:
    sid: str
    mid: str
    number: str


@dataclass(frozen=True)
class Session:
    sid: str
    members: list[Member]
    caller: str = ""  # the incoming caller's member id


def call_sid(member: Member) -> str:
    """The CallSid a seeded member's callbacks carry (and `Seeder.connect` records)."""
    return "CA" + member.mid[-24:].rjust(32, "0")


@dataclass(frozen=True)
class Tenant:
    account: str
    number: str
    key: str


def numbers() -> Iterator[str]:
    """Distinct valid US numbers (+1 415 2xx..9xx), none with the emulator's outcome endings
    and none in 555-0100..0199, the fictional range fixed callers are taken from (a member
    invited with its caller's number is not added twice)."""
    for n in itertools.count(2_000_000):
        if n >= 10_000_000:
            raise RuntimeError("ran out of bench phone numbers")
        if n % 10_000 not in (1, 2, 3, 4) and not 5_550_100 <= n <= 5_550_199:
            yield f"+1415{n:07d}"


class Seeder:
    """Writes tenants, sessions and members through the service's scripts."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.numbers = numbers()
        self._create = r.register_script(source("create_session"))
        self._invite = r.register_script(source("invite"))
        self._call_event = r.register_script(source("call_event"))
        self._conference_event = r.register_script(source("conference_event"))
        self._render = r.register_script(source("render"))

    def tenant(self) -> Tenant:
        account = provision.create_account(self.r, "Bench Co")
        number = provision.add_number(self.r, next(self.numbers), account)
        return Tenant(account, number, provision.create_key(self.r, account, ["User"]))

    def sessions(
        self, tenant: Tenant, count: int, members: int, caller: str | None = None
    ) -> list[Session]:
        """`count` incoming-call sessions, each with `members` invited phone members; the
        callers are distinct numbers, or all `caller`."""
        out: list[Session] = []
        for start in range(0, count, SEED_CHUNK):
            chunk = []
            pipe = self.r.pipeline(transaction=False)
            for _ in range(min(SEED_CHUNK, count - start)):
                sid, caller_mid = new_id("ses"), new_id("mem")
                number = caller or next(self.numbers)
                args = [PREFIX, "CA" + secrets.token_hex(16), number, tenant.number]
                self._create(args=[*args, now(), sid, caller_mid], client=pipe)
                chunk.append(Session(sid, [], caller_mid))
            _check(pipe.execute(), "sessions")
            for base in range(0, len(chunk) * members, SEED_CHUNK):
                pipe = self.r.pipeline(transaction=False)
                for slot in range(base, min(base + SEED_CHUNK, len(chunk) * members)):
                    session = chunk[slot // members]
                    member = Member(session.sid, new_id("mem"), next(self.numbers))
                    args = [PREFIX, session.sid, tenant.account, "phone", member.number]
                    args += [member.mid, now(), "", "", ""]  # caller id, actor id, actor name
                    self._invite(args=[*args, *SEED_JOB, "x", "1"], client=pipe)
                    session.members.append(member)
                _check(pipe.execute(), "members")
            out += chunk
        self.r.delete(*SEED_JOB)
        return out

    def connect(self, sessions: list[Session]) -> None:
        """Put every seeded session's conference up and its members and caller in the call,
        as their callbacks would: conference-start (conference_event.lua), then ringing and
        in-progress for each leg (call_event.lua; a member's CallSid is `call_sid`)."""
        jobs.install_control_template(self.r)  # the scripts refuse to run without it
        steps = [(m.sid, m.mid, call_sid(m)) for s in sessions for m in s.members]
        steps += [(s.sid, s.caller, "") for s in sessions if s.caller]
        for start in range(0, len(sessions), SEED_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for session in sessions[start : start + SEED_CHUNK]:
                conference = "CF" + secrets.token_hex(16)
                args = [PREFIX, session.sid, "conference-start", conference, "", "", "0", now()]
                self._conference_event(args=[*args, ""], client=pipe)
            if any(reply != b"applied" for reply in pipe.execute()):
                raise RuntimeError("starting the seeded sessions' conferences failed")
        for start in range(0, len(steps), SEED_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for sid, mid, csid in steps[start : start + SEED_CHUNK]:
                for seq, status in enumerate(("ringing", "in-progress"), start=1):
                    args = [PREFIX, sid, mid, status, csid, str(seq), now(), ""]
                    self._call_event(args=args, client=pipe)
            replies = pipe.execute()
            if any(reply not in (b"applied", b"unchanged") for reply in replies):
                raise RuntimeError(f"connecting seeded members failed: {replies[:4]}")

    def render(self, tenant: Tenant, sessions: list[Session]) -> None:
        """Cache each session's members JSON, as the first read of it would."""
        for start in range(0, len(sessions), SEED_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for session in sessions[start : start + SEED_CHUNK]:
                self._render(args=[PREFIX, session.sid, tenant.account], client=pipe)
            pipe.execute()


def _check(replies: list, what: str) -> None:
    failed = [reply for reply in replies if reply[0] != b"created"]
    if failed:
        raise RuntimeError(f"seeding {what} failed (has the Lua layout changed?): {failed[:3]}")


def flatten(sessions: list[Session]) -> list[Member]:
    return [m for s in sessions for m in s.members]


# --- requests -----------------------------------------------------------------------------------


def _http(method: str, target: str, port: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def api(
    port: int, tenant: Tenant, method: str, target: str, body: dict[str, Any] | None = None
) -> bytes:
    """One API request as an agent console sends it: the tenant's key, JSON in and out."""
    headers = {"Authorization": f"Bearer {tenant.key}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    data = b"" if body is None else json.dumps(body).encode()
    return _http(method, target, port, headers, data)


def invite(port: int, tenant: Tenant, sid: str, number: str) -> bytes:
    """POST /sessions/{sid}/members as an agent console would send it."""
    return api(port, tenant, "POST", f"/sessions/{sid}/members", {"memberToAdd": number})


def callback_params(account_sid: str, tenant: Tenant, member: Member, step: int) -> dict[str, str]:
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": "CA" + member.mid[-24:].rjust(32, "0"),
        "CallStatus": CALL_LIFE[step],
        "Called": member.number,
        "Caller": tenant.number,
        "From": tenant.number,
        "To": member.number,
        "Direction": "outbound-api",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": str(step),
        "Timestamp": "Mon, 01 Jan 2024 00:00:00 +0000",
    }


def webhooks(
    port: int,
    public_base_url: str,
    token: str,
    account_sid: str,
    tenant: Tenant,
    members: list[Member],
    path: str | None = None,
) -> list[bytes]:
    """Signed call-status callbacks for `members`, each member's in order, blocks interleaved.

    With `path`, the same bodies and headers go to that path instead (B0's route).
    """
    validator = RequestValidator(token)
    out: list[bytes] = []
    for start in range(0, len(members), BLOCK):
        block = members[start : start + BLOCK]
        for step in range(len(CALL_LIFE)):
            for member in block:
                # Twilio signs the URL without its fragment (the connection overrides).
                url = callback_urls.without_fragment(
                    callback_urls.call_status(public_base_url, member.sid, member.mid)
                )
                params = callback_params(account_sid, tenant, member, step)
                parts = urlsplit(url)
                target = f"{parts.path}?{parts.query}"
                if path is not None:
                    target = f"{path}?{parts.query}"
                out.append(_signed(validator, url, target, port, params))
    return out


def _signed(
    validator: RequestValidator, url: str, target: str, port: int, params: dict[str, str]
) -> bytes:
    """A callback as Twilio sends it: signed over `url`, with an idempotency token of its own."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": validator.compute_signature(url, params),
        "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        "User-Agent": "TwilioProxy/1.1",
        "Accept": "*/*",
    }
    return _http("POST", target, port, headers, urlencode(params).encode())


def mute_toggles(
    port: int,
    public_base_url: str,
    token: str,
    account_sid: str,
    members: list[Member],
    start: int,
    count: int,
) -> list[bytes]:
    """Signed conference callbacks `start` to `start + count` of a sequence in which each is
    one change: round the (connected) `members`, participant-mute, then participant-unmute on
    the next round, and so on, with increasing SequenceNumber, as Twilio reports agents
    muting and unmuting."""
    validator = RequestValidator(token)
    url = callback_urls.without_fragment(callback_urls.conference_status(public_base_url))
    target = urlsplit(url).path
    out: list[bytes] = []
    for k in range(start, start + count):
        member = members[k % len(members)]
        turn = k // len(members)
        event = "participant-unmute" if turn % 2 else "participant-mute"
        params = {
            "AccountSid": account_sid,
            "ConferenceSid": "CF" + member.sid[-32:].rjust(32, "0"),
            "FriendlyName": member.sid,
            "StatusCallbackEvent": event,
            "CallSid": call_sid(member),
            "ParticipantLabel": member.mid,
            "Muted": "true" if event == "participant-mute" else "false",
            "Hold": "false",
            "Coaching": "false",
            "EndConferenceOnExit": "false",
            "StartConferenceOnEnter": "true",
            "SequenceNumber": str(turn + 10),  # after the seeded connect's callbacks
            "Timestamp": "Mon, 01 Jan 2024 00:00:00 +0000",
        }
        out.append(_signed(validator, url, target, port, params))
    return out
