"""Twilio's callbacks as Twilio sends them (signed with the account's auth token),
and sessions whose members' dial jobs are parked, so that only the callbacks a
test posts move them."""

from __future__ import annotations

import random
from typing import Any

import httpx
import redis.asyncio
from rq import Queue
from twilio.request_validator import RequestValidator

from orchestrator import keys, store
from orchestrator.scripts import AsyncScripts
from tests.support import net
from tests.support.accounts import Account, random_number
from tests.support.scripts import run
from tests.support.stack import Stack

# Where parked dial jobs go: a queue no worker listens on, in keys of the tests' own.
PARKED_QUEUE = "parked"


def post(
    stack: Stack, path: str, params: dict[str, str], signature: str | None = None
) -> httpx.Response:
    """POST a callback to the web process, signed as Twilio signs it unless `signature`
    is given ("" sends none)."""
    url = stack.base_url + path
    if signature is None:
        signature = RequestValidator(stack.auth_token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature} if signature else {}
    return net.post(url, data=params, headers=headers, timeout=10)


def seed(stack: Stack, account: Account, members: int = 1) -> tuple[str, list[str]]:
    """A session from an incoming call (signed voice webhook) and invited members."""
    call_sid = "CA" + random.randbytes(16).hex()
    response = post(
        stack,
        "/twilio/voice",
        {
            "CallSid": call_sid,
            "From": random_number(),
            "To": account.number,
            "CallStatus": "ringing",
        },
    )
    assert response.status_code == 200
    sid = stack.redis.get(keys.call(call_sid)).split()[0]
    return sid, invite_parked(stack, account, sid, members)


def invite_parked(stack: Stack, account: Account, sid: str, members: int) -> list[str]:
    """Members added as the API adds them, but with their dial job parked: no worker dials."""
    parked_queue = Queue(PARKED_QUEUE, connection=stack.redis).key

    async def invite() -> list[str]:
        client = redis.asyncio.Redis.from_url(stack.redis_url)
        scripts = AsyncScripts(client)
        ids = []
        for _ in range(members):
            mid = store.new_id("mem")
            parked = (
                parked_queue,
                f"{keys.PREFIX}test:queues",
                f"{keys.PREFIX}test:{mid}",
                mid,
                ["a", "b"],
            )
            result = await store.invite(
                scripts, sid=sid, account_id=account.id, kind="phone",
                ref=random_number(), member_id=mid, caller_id=None,
                actor=store.Actor("key_test"), job=parked,
            )  # fmt: skip
            assert result.outcome == "created"
            ids.append(mid)
        await scripts.aclose()
        await client.aclose()
        return ids

    return run(invite())


def member_state(stack: Stack, sid: str, mid: str) -> dict[str, Any]:
    """What the callbacks change of a member, as Redis holds it."""
    raw = stack.redis.hgetall(keys.member(sid, mid))
    return {k: raw.get(k) for k in ("callState", "callSid", "muted", "_rank", "_hold")}


def call_events(sid: str, mid: str, call_sid: str) -> list[tuple[str, dict[str, str]]]:
    """A member's call-status callbacks, in order: initiated to completed."""
    path = f"/twilio/call-status?session={sid}&member={mid}"
    statuses = ["initiated", "ringing", "in-progress", "completed"]
    return [
        (path, {"CallSid": call_sid, "CallStatus": s, "SequenceNumber": str(i)})
        for i, s in enumerate(statuses)
    ]


def conference_events(sid: str, mid: str, call_sid: str) -> list[tuple[str, dict[str, str]]]:
    """A member's conference callbacks, in order: join, hold, mute, unhold, leave."""
    names = ["participant-join", "participant-hold", "participant-mute", "participant-unhold",
             "participant-leave"]  # fmt: skip
    return [
        (
            "/twilio/conference-status",
            {
                "FriendlyName": sid,
                "ConferenceSid": "CF" + "1" * 32,
                "CallSid": call_sid,
                "ParticipantLabel": mid,
                "StatusCallbackEvent": name,
                "SequenceNumber": str(i + 10),
            },
        )
        for i, name in enumerate(names)
    ]
