"""Twilio's callbacks against the running web process, signed as Twilio signs
them: order, duplicates, forgeries and unknown calls. Members are seeded with
their dial job parked, so only these callbacks move them."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from orchestrator import keys
from tests.support import net
from tests.support.accounts import Account, random_number
from tests.support.stack import Stack
from tests.support.webhooks import (
    call_events,
    conference_events,
    invite_parked,
    member_state,
    post,
    seed,
)


def test_forged_and_missing_signatures_are_403_and_change_nothing(
    stack: Stack, account: Account
) -> None:
    sid, (mid,) = seed(stack, account)
    before = member_state(stack, sid, mid)
    log_before = stack.session_log(sid)
    path, params = call_events(sid, mid, "CA" + "2" * 32)[2]
    other_token = RequestValidator("not-the-token").compute_signature(stack.base_url + path, params)
    wrong_url = RequestValidator(stack.auth_token).compute_signature(
        "https://evil.example.com" + path, params
    )
    for signature in ("", "bm90IGEgc2lnbmF0dXJl", other_token, wrong_url):
        response = post(stack, path, params, signature=signature)
        assert response.status_code == 403
        assert "Traceback" not in response.text
    # A valid signature over different parameters is a forgery too.
    signed = RequestValidator(stack.auth_token).compute_signature(stack.base_url + path, params)
    response = post(stack, path, {**params, "CallStatus": "completed"}, signature=signed)
    assert response.status_code == 403
    # And an unsigned incoming call creates no session.
    calls_before = len(stack.redis.keys(keys.call("*")))
    voice = {"CallSid": "CA" + "9" * 32, "From": "+14155550111", "To": account.number}
    assert post(stack, "/twilio/voice", voice, signature="").status_code == 403
    assert len(stack.redis.keys(keys.call("*"))) == calls_before
    assert member_state(stack, sid, mid) == before
    assert stack.session_log(sid) == log_before


def test_in_order_callbacks_walk_the_state_table(stack: Stack, account: Account) -> None:
    sid, (mid,) = seed(stack, account)
    call_sid = "CA" + random.randbytes(16).hex()
    calls, conf = call_events(sid, mid, call_sid), conference_events(sid, mid, call_sid)
    seen = []
    for path, params in [calls[0], calls[1], calls[2], *conf[:4], conf[4], calls[3]]:
        assert post(stack, path, params).status_code == 204
        state = member_state(stack, sid, mid)
        seen.append((state["callState"], state["muted"]))
    assert seen == [
        ("Ringing", "false"),
        ("Ringing", "false"),
        ("Connected", "false"),
        ("Connected", "false"),
        ("Hold", "false"),
        ("Hold", "true"),
        ("Connected", "true"),
        ("None", "false"),
        ("None", "false"),
    ]
    assert stack.redis.hget(keys.member(sid, mid), "callSid") == call_sid


@pytest.mark.parametrize("seed_value", range(6))
def test_duplicated_shuffled_callbacks_end_as_in_order(
    stack: Stack, account: Account, seed_value: int
) -> None:
    sid, (ordered, shuffled) = seed(stack, account, members=2)
    rng = random.Random(seed_value)
    sids = {m: "CA" + rng.randbytes(16).hex() for m in (ordered, shuffled)}

    def events(mid: str):
        return call_events(sid, mid, sids[mid]) + conference_events(sid, mid, sids[mid])

    # In order: call progress, then the conference's view, as Twilio mostly sends them.
    for path, params in events(ordered):
        assert post(stack, path, params).status_code == 204
    noisy = events(shuffled) + rng.sample(events(shuffled), 4)
    rng.shuffle(noisy)
    for path, params in noisy:
        assert post(stack, path, params).status_code == 204

    a, b = member_state(stack, sid, ordered), member_state(stack, sid, shuffled)
    assert b["callSid"] == sids[shuffled]
    assert {**a, "callSid": None} == {**b, "callSid": None}
    log = [e["message"] for e in stack.session_log(sid)]
    assert len(log) == len(set(log)), "a duplicated callback wrote a second log entry"


def test_late_ringing_never_revives_a_final_member(stack: Stack, account: Account) -> None:
    sid, (mid,) = seed(stack, account)
    call_sid = "CA" + "3" * 32
    path = f"/twilio/call-status?session={sid}&member={mid}"
    post(stack, path, {"CallSid": call_sid, "CallStatus": "busy", "SequenceNumber": "2"})
    for status in ("ringing", "in-progress", "initiated"):
        post(stack, path, {"CallSid": call_sid, "CallStatus": status})
    join = {"FriendlyName": sid, "CallSid": call_sid, "ParticipantLabel": mid,
            "StatusCallbackEvent": "participant-join", "SequenceNumber": "9"}  # fmt: skip
    post(stack, "/twilio/conference-status", join)
    assert member_state(stack, sid, mid)["callState"] == "None"
    assert not stack.redis.hexists(keys.session_active(sid), mid)


def test_join_before_in_progress_and_hold_before_join(stack: Stack, account: Account) -> None:
    sid, (mid,) = seed(stack, account)
    call_sid = "CA" + "4" * 32
    conf = {"FriendlyName": sid, "CallSid": call_sid, "ParticipantLabel": mid}
    post(stack, "/twilio/conference-status",
         {**conf, "StatusCallbackEvent": "participant-hold", "SequenceNumber": "5"})  # fmt: skip
    assert member_state(stack, sid, mid)["callState"] == "None"
    post(stack, "/twilio/conference-status",
         {**conf, "StatusCallbackEvent": "participant-join", "SequenceNumber": "4"})  # fmt: skip
    assert member_state(stack, sid, mid)["callState"] == "Hold"
    post(stack, f"/twilio/call-status?session={sid}&member={mid}",
         {"CallSid": call_sid, "CallStatus": "ringing", "SequenceNumber": "1"})  # fmt: skip
    assert member_state(stack, sid, mid)["callState"] == "Hold"


def test_member_found_by_call_sid_when_label_is_missing(stack: Stack, account: Account) -> None:
    sid, (mid,) = seed(stack, account)
    call_sid = "CA" + "5" * 32
    post(stack, f"/twilio/call-status?session={sid}&member={mid}",
         {"CallSid": call_sid, "CallStatus": "ringing", "SequenceNumber": "1"})  # fmt: skip
    post(
        stack,
        "/twilio/conference-status",
        {"FriendlyName": sid, "CallSid": call_sid, "StatusCallbackEvent": "participant-join"},
    )
    assert member_state(stack, sid, mid)["callState"] == "Connected"


def test_conference_end_is_final(stack: Stack, account: Account) -> None:
    sid, _ = seed(stack, account)
    conf = {"FriendlyName": sid, "ConferenceSid": "CF" + "6" * 32}
    post(stack, "/twilio/conference-status", {**conf, "StatusCallbackEvent": "conference-end"})
    post(stack, "/twilio/conference-status", {**conf, "StatusCallbackEvent": "conference-start"})
    session = stack.redis.hgetall(keys.session(sid))
    assert session["ended"] == "true"
    assert session["callState"] == "Disconnected"
    assert session["conferenceSid"] == "CF" + "6" * 32
    assert stack.redis.ttl(keys.session(sid)) > 0
    with stack.client(account.key) as c:
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": random_number()})
    assert response.status_code == 409


def test_unknown_sessions_and_calls_are_acknowledged(stack: Stack) -> None:
    # Other tests' calls may still be settling on the shared stack: look for what these
    # callbacks could have written, not at the key count.
    def written() -> list[str]:
        return [
            k
            for pattern in ("*ses_x*", "*mem_y*", "*7777777777*")
            for k in stack.redis.keys(pattern)
        ]

    assert not written()
    ringing = {"CallSid": "CA" + "7" * 32, "CallStatus": "ringing"}
    assert post(stack, "/twilio/call-status?session=ses_x&member=mem_y", ringing).status_code == 204
    assert post(stack, "/twilio/conference-status",
                {"FriendlyName": "ses_x", "StatusCallbackEvent": "participant-join",
                 "CallSid": "CA" + "7" * 32}).status_code == 204  # fmt: skip
    assert post(stack, "/twilio/call-status", {"CallStatus": "ringing"}).status_code == 204
    assert not written()


def test_voice_for_a_number_we_do_not_own_is_rejected_in_twiml(stack: Stack) -> None:
    response = post(
        stack, "/twilio/voice", {"CallSid": "CA" + "8" * 32, "From": "+1415", "To": "+15005550006"}
    )
    assert response.status_code == 200
    assert "<Reject" in response.text
    assert not stack.redis.exists(keys.call("CA") + "8" * 32)


def test_voice_is_idempotent_on_call_sid(stack: Stack, account: Account) -> None:
    params = {"CallSid": "CA" + random.randbytes(16).hex(), "From": random_number(),
              "To": account.number}  # fmt: skip
    first, second = post(stack, "/twilio/voice", params), post(stack, "/twilio/voice", params)
    assert first.status_code == second.status_code == 200
    assert first.text == second.text
    assert "<Conference" in first.text and "/twilio/conference-status" in first.text


def test_session_answers_follow_every_change(stack: Stack, account: Account) -> None:
    """SessionInfo is answered from cached member JSON; after invites and callbacks it must
    be exactly what rendering every member afresh gives."""
    sid, (mid,) = seed(stack, account)
    headers = {"Authorization": f"Bearer {account.key}"}

    def get() -> dict[str, Any]:
        response = net.get(f"{stack.base_url}/sessions/{sid}", headers=headers, timeout=10)
        assert response.status_code == 200
        return response.json()

    def fresh() -> dict[str, Any]:
        stack.redis.delete(keys.members_json(sid))
        return get()

    assert get()["members"][1]["callState"] == "None"  # the caller, then the invited member
    call_sid = "CA" + random.randbytes(16).hex()
    for path, params in call_events(sid, mid, call_sid)[:3]:  # initiated, ringing, in-progress
        assert post(stack, path, params).status_code == 204
    cached = get()
    assert cached["members"][1]["callState"] == "Connected"
    assert cached["members"][1]["callSid"] == call_sid
    assert cached == fresh()

    (new,) = invite_parked(stack, account, sid, 1)  # joins the cached JSON
    appended = get()
    assert len(appended["members"]) == 3
    assert appended["members"][1] == cached["members"][1]
    assert appended["members"][2]["identity"] == stack.redis.hget(keys.member(sid, new), "identity")
    assert appended == fresh()
