"""End to end through real processes: an incoming call, invites, the worker
dialling through the emulator, and the emulator's signed callbacks moving each
member through its call states."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orchestrator import keys
from orchestrator.launch import wait_until
from tests.support.accounts import Account, random_number
from tests.support.stack import Stack


def _get(stack: Stack, account: Account, sid: str) -> dict[str, Any]:
    with stack.client(account.key) as c:
        response = c.get(f"/sessions/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def _member(session: dict[str, Any], identity: str) -> dict[str, Any] | None:
    return next((m for m in session["members"] if m["identity"] == identity), None)


def _wait_member(stack, account, sid, identity, check, what, timeout=10) -> dict[str, Any]:
    def ready():
        member = _member(_get(stack, account, sid), identity)
        return member if member and check(member) else None

    return wait_until(ready, timeout, what=f"{identity} {what}")


def _invite(stack: Stack, account: Account, sid: str, member: str, **extra: str) -> httpx.Response:
    with stack.client(account.key) as c:
        return c.post(f"/sessions/{sid}/members", json={"memberToAdd": member, **extra})


def _messages(session: dict[str, Any]) -> list[str]:
    return [entry["message"] for entry in session["log"]]


def _call_sid_of(stack: Stack, account: Account, sid: str, identity: str) -> str:
    member = _wait_member(stack, account, sid, identity, lambda m: m["callSid"], "has a call")
    return member["callSid"]


def test_incoming_call_creates_a_session_with_its_caller(stack: Stack, account: Account) -> None:
    caller = random_number()
    call = stack.incoming_call(caller, account.number)
    sid = call["conferenceName"]
    session = wait_until(
        lambda: (s := _get(stack, account, sid))["callState"] == "Connected" and s,
        what="conference start",
    )
    assert session["direction"] == "Incoming"
    assert session["channel"] == "Voice"
    assert session["callSid"] == call["callSid"]
    assert session["fromAddress"] == caller and session["toAddress"] == account.number
    assert session["accountId"] == account.id and session["accountName"] == "Test Co"
    assert session["conferenceSid"] == call["conferenceSid"]
    assert session["ended"] is False
    (member,) = session["members"]
    assert member["role"] == "Caller" and member["isOriginalMember"] is True
    assert member["callSid"] == call["callSid"]
    wait_until(
        lambda: _member(_get(stack, account, sid), caller)["callState"] == "Connected",
        what="caller joined",
    )


def test_every_field_of_session_info_is_present(stack: Stack, account: Account) -> None:
    from orchestrator.dto import SESSION_INFO, SESSION_MEMBER_INFO

    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    session = _get(stack, account, sid)
    assert list(session) == [f.name for f in SESSION_INFO]
    assert list(session["members"][0]) == [f.name for f in SESSION_MEMBER_INFO]
    assert session["dialState"] == "Active" and session["queueState"] == "None"
    assert session["holdReason"] == "None" and session["wasMissed"] is False


def test_phone_member_rings_connects_and_hangs_up(stack: Stack, account: Account) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    target = "+14155550170"
    response = _invite(stack, account, sid, "(415) 555-0170")
    assert response.status_code == 200, response.text
    invited = _member(response.json(), target)
    assert invited["role"] == "Transfer"
    assert invited["callState"] in ("None", "Ringing")
    member_id = stack.redis.hget(keys.session_active(sid), target)

    connected = _wait_member(
        stack, account, sid, target, lambda m: m["callState"] == "Connected", "connected"
    )
    session = _get(stack, account, sid)
    assert session["mostRecentParticipantCallSid"] == connected["callSid"]
    call = stack.emulator(f"calls/{connected['callSid']}").json()
    assert call["to"] == target and call["from"] == account.number
    assert call["label"] == member_id
    assert stack.creates(member_id) == 1

    assert stack.emulator(f"calls/{connected['callSid']}/hangup", "POST").status_code < 300
    _wait_member(stack, account, sid, target, lambda m: m["callState"] == "None", "hung up")
    log = _messages(_get(stack, account, sid))
    order = [
        next(i for i, m in enumerate(log) if m.startswith("Invited")),
        next(i for i, m in enumerate(log) if m == f"{target} is ringing"),
        next(i for i, m in enumerate(log) if m in (f"{target} answered", f"{target} joined")),
        next(i for i, m in enumerate(log) if m.startswith(f"{target} left")),
    ]
    assert order == sorted(order), log


def test_user_member_is_dialled_as_client_identity(stack: Stack, account: Account) -> None:
    stack.user_online(account)
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    response = _invite(stack, account, sid, account.user_email.upper())
    assert response.status_code == 200, response.text
    member = _member(response.json(), account.user_id)
    assert member["role"] == "Agent"
    assert member["endpointId"] == account.user_id
    assert member["displayName"] == "Ada Agent"
    assert member["avatarUrl"] == "https://example.com/ada.png"
    connected = _wait_member(
        stack, account, sid, account.user_id, lambda m: m["callState"] == "Connected", "connected"
    )
    assert stack.emulator(f"calls/{connected['callSid']}").json()["to"] == (
        f"client:{account.user_id}"
    )
    # Inviting by id finds the same user, already in the call: no second dial.
    again = _invite(stack, account, sid, account.user_id)
    assert again.status_code == 200
    assert [m["identity"] for m in again.json()["members"]].count(account.user_id) == 1


def test_inviting_a_member_twice_dials_once(stack: Stack, account: Account) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    target = random_number()
    responses = [_invite(stack, account, sid, target) for _ in range(3)]
    assert all(r.status_code == 200 for r in responses)
    _wait_member(stack, account, sid, target, lambda m: m["callState"] == "Connected", "connected")
    member_id = stack.redis.hget(keys.session_active(sid), target)
    assert stack.creates(member_id) == 1
    members = _get(stack, account, sid)["members"]
    assert [m["identity"] for m in members].count(target) == 1


def _final_log(stack, account, sid, target) -> str:
    _call_sid_of(stack, account, sid, target)
    member = _wait_member(
        stack,
        account,
        sid,
        target,
        lambda m: (
            m["callState"] == "None" and not stack.redis.hexists(keys.session_active(sid), target)
        ),
        "ended",
    )
    assert member["callState"] == "None"
    return _messages(_get(stack, account, sid))[-1]


@pytest.mark.parametrize(
    ("callee", "ending"),
    [("+14155550001", "was busy"), ("+14155550002", "did not answer"),
     ("+14155550003", "the call failed")],
    ids=["busy", "unanswered", "failed"],
)  # fmt: skip
def test_a_member_who_does_not_connect_ends_with_a_log_entry(
    stack: Stack, account: Account, callee: str, ending: str
) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    assert _invite(stack, account, sid, callee).status_code == 200
    assert _final_log(stack, account, sid, callee).endswith(ending)


def test_number_twilio_rejects_ends_with_twilios_message(stack: Stack, account: Account) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    target = "+14155550004"
    assert _invite(stack, account, sid, target).status_code == 200

    def ended():
        session = _get(stack, account, sid)
        member = _member(session, target)
        return member["callState"] == "None" and any("21211" in m for m in _messages(session))

    wait_until(ended, what="the rejected member to end")
    session = _get(stack, account, sid)
    assert _member(session, target)["callSid"] is None
    (entry,) = [m for m in _messages(session) if "21211" in m]
    assert "is not a valid phone number" in entry
    # A member that ended can be invited again: a fresh member and dial.
    assert _invite(stack, account, sid, target).status_code == 200
    assert [m["identity"] for m in _get(stack, account, sid)["members"]].count(target) == 2


def test_caller_id_defaults_to_the_sessions_number_and_can_be_set(
    stack: Stack, account: Account
) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    target = random_number()
    assert _invite(stack, account, sid, target, callerId="+1 (415) 555-0188").status_code == 200
    call_sid = _call_sid_of(stack, account, sid, target)
    assert stack.emulator(f"calls/{call_sid}").json()["from"] == "+14155550188"


def test_ended_session_refuses_invites_with_409(stack: Stack, account: Account) -> None:
    call = stack.incoming_call(random_number(), account.number)
    sid = call["conferenceName"]
    wait_until(lambda: _get(stack, account, sid)["callState"] == "Connected", what="conference")
    assert stack.emulator(f"calls/{call['callSid']}/hangup", "POST").status_code < 300
    session = wait_until(
        lambda: (s := _get(stack, account, sid))["ended"] and s, what="session end"
    )
    assert session["callState"] == "Disconnected"
    assert session["dateCompleted"]
    assert session["members"][0]["callState"] == "None"
    response = _invite(stack, account, sid, random_number())
    assert response.status_code == 409
    assert response.json()["responseStatus"]["errorCode"] == "Conflict"


def test_twilio_overload_is_retried_until_dialled_once(stack: Stack, account: Account) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    served = stack.emulator("faults").json()["served"]
    assert stack.emulator("faults", "POST", data={"status": "503", "count": "2"}).json() == {
        "remaining": 2,
        "served": served,
    }
    target = random_number()
    assert _invite(stack, account, sid, target).status_code == 200
    connected = _wait_member(
        stack, account, sid, target, lambda m: m["callState"] == "Connected", "connected", 30
    )
    assert stack.emulator("faults").json() == {"remaining": 0, "served": served + 2}
    member_id = stack.redis.hget(keys.session_active(sid), target)
    assert stack.creates(member_id) == 1
    assert connected["callSid"]


def test_retries_run_out_with_a_clear_log_entry(stack: Stack, account: Account) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    stack.emulator("faults", "POST", data={"status": "429", "count": "50"})
    target = random_number()
    try:
        assert _invite(stack, account, sid, target).status_code == 200

        def gave_up():
            return any(
                "unavailable after retries" in m for m in _messages(_get(stack, account, sid))
            )

        wait_until(gave_up, 30, "the dial to give up")
        # The test stack allows 3 retries: four attempts in all, then no more.
        assert 50 - stack.emulator("faults").json()["remaining"] == 4
    finally:
        stack.emulator("faults", "POST", data={"status": "429", "count": "0"})
    member = _member(_get(stack, account, sid), target)
    assert member["callState"] == "None" and member["callSid"] is None
    (entry,) = [m for m in _messages(_get(stack, account, sid)) if "after retries" in m]
    assert "Twilio 429" in entry
