"""Callback storms: many sessions at once, every member's callbacks sent
concurrently, duplicated (Twilio's retries carry the same idempotency token),
late and shuffled. Each storm member has a twin fed the same callbacks in
order, one at a time; both must end in the same state."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid

import httpx
from twilio.request_validator import RequestValidator

from orchestrator import keys
from tests.support import net
from tests.support.accounts import Account
from tests.support.sse import EventStream
from tests.support.stack import Stack
from tests.support.webhooks import member_state, seed

SESSIONS = 12
PAIRS_PER_SESSION = 4


def scenario(rng: random.Random, sid: str, mid: str, call_sid: str) -> list[tuple[str, dict]]:
    """One member's callbacks in the order Twilio produced them (SequenceNumbers rising)."""
    call = f"/twilio/call-status?session={sid}&member={mid}"
    conf = "/twilio/conference-status"
    kind = rng.choice(["left", "in-call", "busy", "no-answer"])
    events: list[tuple[str, dict]] = []
    call_seq = iter(range(100))
    conf_seq = iter(range(100, 200))

    def progress(status: str) -> None:
        events.append((call, {"CallSid": call_sid, "CallStatus": status,
                              "SequenceNumber": str(next(call_seq))}))  # fmt: skip

    def participant(event: str) -> None:
        events.append((conf, {"FriendlyName": sid, "CallSid": call_sid, "ParticipantLabel": mid,
                              "ConferenceSid": "CF" + "a" * 32, "StatusCallbackEvent": event,
                              "SequenceNumber": str(next(conf_seq))}))  # fmt: skip

    progress("initiated")
    progress("ringing")
    if kind in ("busy", "no-answer"):
        progress(kind)
        return events
    progress("in-progress")
    participant("participant-join")
    for _ in range(rng.randint(0, 4)):
        participant(rng.choice(["participant-hold", "participant-unhold",
                                "participant-mute", "participant-unmute"]))  # fmt: skip
    if kind == "left":
        participant("participant-leave")
        progress("completed")
    return events


def signed(stack: Stack, path: str, params: dict, token: str) -> dict:
    url = stack.base_url + path
    signature = RequestValidator(stack.auth_token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature, "I-Twilio-Idempotency-Token": token}
    return {"url": url, "data": params, "headers": headers}


async def deliver(client: httpx.AsyncClient, requests: list[dict], concurrency: int) -> list[int]:
    semaphore = asyncio.Semaphore(concurrency)

    async def send(request: dict) -> int:
        async with semaphore:
            return (await client.post(**request)).status_code

    return await asyncio.gather(*(send(r) for r in requests))


def test_storm_of_shuffled_duplicated_callbacks_ends_as_in_order(
    stack: Stack, account: Account
) -> None:
    rng = random.Random(2024)
    ordered: list[list[dict]] = []
    storm: list[dict] = []
    twins: list[tuple[str, str, str]] = []
    for _ in range(SESSIONS):
        sid, members = seed(stack, account, members=2 * PAIRS_PER_SESSION)
        for calm, wild in zip(members[::2], members[1::2], strict=True):
            state = rng.getstate()
            calm_events = scenario(rng, sid, calm, "CA" + uuid.uuid4().hex)
            rng.setstate(state)  # the twin lives through the same call
            wild_events = scenario(rng, sid, wild, "CA" + uuid.uuid4().hex)
            ordered.append([signed(stack, p, e, uuid.uuid4().hex) for p, e in calm_events])
            wild_requests = [signed(stack, p, e, uuid.uuid4().hex) for p, e in wild_events]
            # Twilio's retries: the same request, same token, again.
            storm += wild_requests + rng.sample(wild_requests, k=len(wild_requests) // 2)
            # A late 'ringing' after everything else, with a token of its own.
            late = dict(wild_events[1][1])
            storm.append(signed(stack, wild_events[1][0], late, uuid.uuid4().hex))
            twins.append((sid, calm, wild))
    rng.shuffle(storm)
    stream = EventStream(f"{stack.base_url}/sessions/events", account.key).connected()

    async def run() -> None:
        # Every in-order twin walks its own callbacks one by one, all twins at once,
        # while the storm hits the server with 64 concurrent requests.
        async with net.async_client(limits=httpx.Limits(max_connections=128), timeout=30) as c:

            async def walk(requests: list[dict]) -> None:
                for request in requests:
                    assert (await c.post(**request)).status_code == 204

            results = await asyncio.gather(deliver(c, storm, 64), *(walk(r) for r in ordered))
        assert set(results[0]) == {204}

    asyncio.run(run())

    for sid, calm, wild in twins:
        a, b = member_state(stack, sid, calm), member_state(stack, sid, wild)
        assert {**a, "callSid": None} == {**b, "callSid": None}, (sid, calm, wild)
    for sid in {t[0] for t in twins}:
        messages = [e["message"] for e in stack.session_log(sid)]
        assert len(messages) == len(set(messages)) or _only_repeated_toggles(messages)

    # The live events replay every member's state changes: in order, none backwards,
    # none for a callback that changed nothing, ending where GET ends.
    try:
        for sid in {t[0] for t in twins}:
            final = stack.client(account.key).get(f"/sessions/{sid}").json()
            stream.wait(
                lambda s, sid=sid, final=final: s.changes(sid)[-1].session == final,
                what=f"{sid}'s last event",
            )
    finally:
        stream.close()
    ids = [tuple(map(int, m.id.split("-"))) for m in stream.changes()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    by_session: dict[str, list[dict]] = {}
    for message in stream.changes():
        by_session.setdefault(message.data["sessionId"], []).append(message.session)
    for (sid, calm, wild), requests in zip(twins, ordered, strict=True):
        snapshots = by_session[sid]
        for before, after in itertools.pairwise(snapshots):
            assert before != after  # every event is a change
            assert after["log"][: len(before["log"])] == before["log"]
        identity = {
            mid: stack.redis.hget(keys.member(sid, mid), "identity") for mid in (calm, wild)
        }
        calm_states = _member_states(snapshots, identity[calm])
        assert calm_states == _in_order([r["data"] for r in requests]), (sid, calm)
        wild_states = _member_states(snapshots, identity[wild])
        ranks = [_rank(state) for state in wild_states]
        assert ranks == sorted(ranks), (sid, wild, wild_states)
        assert wild_states[-1] == calm_states[-1]


FINAL = ("left the call", "was busy", "did not answer", "left the conference", "failed")


def _member_states(snapshots: list[dict], identity: str) -> list[tuple[str, bool, bool]]:
    """The member's (callState, muted, final) in each event, repeats collapsed."""
    states = [("None", False, False)]  # invited, before the storm
    for session in snapshots:
        member = next(m for m in session["members"] if m["identity"] == identity)
        # A leg placed but not yet ringing is None too: its log line says when it ended.
        final = any(e["message"].startswith(identity) and e["message"].endswith(FINAL)
                    for e in session["log"])  # fmt: skip
        state = (member["callState"], member["muted"], final)
        if state != states[-1]:
            states.append(state)
    return states


def _rank(state: tuple[str, bool, bool]) -> int:
    call_state, _, final = state
    return 3 if final else {"None": 0, "Ringing": 1}.get(call_state, 2)


def _in_order(callbacks: list[dict]) -> list[tuple[str, bool, bool]]:
    """What one member's callbacks do, applied in Twilio's order."""
    rank, hold, muted = 0, False, False
    states = [("None", False, False)]
    for params in callbacks:
        event = params.get("CallStatus") or params["StatusCallbackEvent"]
        if event in ("initiated", "ringing"):
            rank = max(rank, 1)
        elif event in ("in-progress", "participant-join"):
            rank = max(rank, 2)
        elif event in ("participant-hold", "participant-unhold"):
            hold = event == "participant-hold"
        elif event in ("participant-mute", "participant-unmute"):
            muted = event == "participant-mute"
        else:
            rank, hold, muted = 3, False, False
        call_state = {0: "None", 1: "Ringing", 2: "Hold" if hold else "Connected", 3: "None"}
        state = (call_state[rank], muted, rank == 3)
        if state != states[-1]:
            states.append(state)
    return states


def _only_repeated_toggles(messages: list[str]) -> bool:
    """Hold/mute toggled twice in one call legitimately logs the same line twice."""
    seen: set[str] = set()
    for message in messages:
        if message in seen and not message.endswith(
            ("is on hold", "is off hold", "was muted", "was unmuted")
        ):
            return False
        seen.add(message)
    return True
