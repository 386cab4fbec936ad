"""Transfers end to end, through real processes: a warm transfer (docs/api.md: hold,
invite the colleague, remove the first agent, resume) and a blind one
(RedirectSession), answered and not. Callees ring for a second here, so the
hold music a caller hears while a transfer rings can be seen at the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orchestrator import keys
from orchestrator.launch import wait_until
from tests.support import net
from tests.support.accounts import Team, new_team, random_number
from tests.support.stack import ACCOUNT_SID, Stack, ringing_stack

RING_SECONDS = 1.0


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own Redis, emulator, web and worker, with callees that ring for a second."""
    with ringing_stack(tmp_path_factory, "transfer", RING_SECONDS, RING_SECONDS * 1.5) as stack:
        yield stack


@pytest.fixture(scope="module")
def desk(slow_stack: Stack) -> Team:
    return slow_stack.online(new_team(slow_stack.redis_url, "Transfer Co"))


def _api(stack: Stack, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with stack.client(key) as c:
        response = c.request(method, path, **kwargs)
    assert response.status_code < 500 and "Traceback" not in response.text, response.text
    return response


def _session(stack: Stack, desk: Team, sid: str) -> dict[str, Any]:
    response = _api(stack, desk.key, "GET", f"/sessions/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def _member(session: dict[str, Any], identity: str) -> dict[str, Any]:
    return [m for m in session["members"] if m["identity"] == identity][-1]


def _wait_state(stack: Stack, desk: Team, sid: str, identity: str, state: str) -> dict[str, Any]:
    def reached():
        found = _member(_session(stack, desk, sid), identity)
        return found if found["callState"] == state else None

    return wait_until(reached, 10, f"{identity} {state}")


def _wait_gone(stack: Stack, desk: Team, sid: str, identity: str) -> dict[str, Any]:
    wait_until(
        lambda: not stack.redis.hget(keys.session_active(sid), identity),
        10,
        f"{identity} to leave",
    )
    return _wait_state(stack, desk, sid, identity, "None")


def _participant(stack: Stack, conference_sid: str, call_sid: str) -> dict[str, Any] | None:
    """The participant as Twilio's REST API shows it (None once its call has ended)."""
    url = (
        f"{stack.emulator_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/"
        f"{conference_sid}/Participants/{call_sid}.json"
    )
    response = net.get(url, auth=(ACCOUNT_SID, stack.auth_token), timeout=10)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def _held_at_twilio(stack: Stack, conference_sid: str, call_sid: str) -> bool:
    participant = _participant(stack, conference_sid, call_sid)
    assert participant is not None, f"{call_sid} is not in the conference"
    return participant["hold"]


def _call_status(stack: Stack, call_sid: str) -> str:
    return stack.emulator(f"calls/{call_sid}").json()["status"]


def _assert_logged_in_order(session: dict[str, Any], *wanted: str) -> list[str]:
    """Each wanted line is in the session's log (the first line starting with it), in
    this order; the log's messages."""
    log = [entry["message"] for entry in session["log"]]
    found = []
    for text in wanted:
        index = next((i for i, line in enumerate(log) if line.startswith(text)), None)
        assert index is not None, (text, log)
        found.append(index)
    assert found == sorted(found), log
    return log


def _call_with_agent(stack: Stack, desk: Team) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A customer calls in and Ada (invited with her own key) answers."""
    caller = random_number()
    call = stack.incoming_call(caller, desk.number)
    sid = call["conferenceName"]
    _wait_state(stack, desk, sid, caller, "Connected")
    response = _api(stack, desk.ada_key, "POST", f"/sessions/{sid}/members",
                    json={"memberToAdd": desk.ada})  # fmt: skip
    assert response.status_code == 200, response.text
    ada = _wait_state(stack, desk, sid, desk.ada, "Connected")
    return call, caller, ada


def test_warm_transfer(slow_stack: Stack, desk: Team) -> None:
    stack = slow_stack
    call, caller, ada = _call_with_agent(stack, desk)
    sid, conference = call["conferenceName"], call["conferenceSid"]

    # 1. Ada holds the call to transfer it: the customer hears hold music, Ada does not.
    held = _api(stack, desk.ada_key, "POST", f"/sessions/{sid}/hold",
                json={"reason": "Transferring", "callSid": ada["callSid"]})  # fmt: skip
    assert held.status_code == 200, held.text
    body = held.json()
    assert body["callState"] == "Hold" and body["holdReason"] == "Transferring"
    assert body["heldByUserId"] == desk.ada
    _wait_state(stack, desk, sid, caller, "Hold")
    assert _held_at_twilio(stack, conference, call["callSid"]) is True
    assert _held_at_twilio(stack, conference, ada["callSid"]) is False
    assert _member(_session(stack, desk, sid), desk.ada)["callState"] == "Connected"

    # 2. Ada invites Bob, who joins while the call is held and is not held himself.
    invited = _api(stack, desk.ada_key, "POST", f"/sessions/{sid}/members",
                   json={"memberToAdd": desk.bob})  # fmt: skip
    assert invited.status_code == 200, invited.text
    bob = _wait_state(stack, desk, sid, desk.bob, "Connected")
    assert _held_at_twilio(stack, conference, bob["callSid"]) is False
    assert _held_at_twilio(stack, conference, call["callSid"]) is True  # still on hold

    # 3. Ada leaves.
    removed = _api(stack, desk.ada_key, "DELETE", f"/sessions/{sid}/members/{desk.ada}")
    assert removed.status_code == 200, removed.text
    _wait_gone(stack, desk, sid, desk.ada)
    wait_until(lambda: _call_status(stack, ada["callSid"]) == "completed", what="Ada's leg ended")
    assert _participant(stack, conference, ada["callSid"]) is None

    # 4. Ada's console takes the call off hold: the customer and Bob talk.
    resumed = _api(stack, desk.ada_key, "PATCH", f"/sessions/{sid}",
                   json={"callState": "Connected"})  # fmt: skip
    assert resumed.status_code == 200, resumed.text
    body = resumed.json()
    assert body["callState"] == "Connected"
    assert body["holdReason"] == "None" and body["heldByUserId"] is None
    _wait_state(stack, desk, sid, caller, "Connected")
    assert _held_at_twilio(stack, conference, call["callSid"]) is False
    assert _held_at_twilio(stack, conference, bob["callSid"]) is False
    assert _call_status(stack, call["callSid"]) == "in-progress"
    assert _call_status(stack, bob["callSid"]) == "in-progress"

    session = _session(stack, desk, sid)
    assert session["ended"] is False and session["callState"] == "Connected"
    assert _member(session, caller)["callState"] == "Connected"
    assert _member(session, desk.bob)["callState"] == "Connected"
    assert _member(session, desk.ada)["callState"] == "None"
    assert session["answeredById"] == desk.ada  # the first agent who answered
    assert session["lastModifiedBy"] == desk.ada
    log = _assert_logged_in_order(
        session,
        "Ada Agent answered",
        "Ada Agent put the call on hold to transfer it",
        f"{caller} is on hold",
        "Ada Agent invited Bob Builder",
        "Bob Builder answered",
        "Ada Agent left the call through the API",
        "Ada Agent left the",
        "Ada Agent took the call off hold",
        f"{caller} is off hold",
    )
    assert not any(line.startswith("Bob Builder is on hold") for line in log)


def test_blind_transfer_connects_the_destination(slow_stack: Stack, desk: Team) -> None:
    stack = slow_stack
    call, caller, ada = _call_with_agent(stack, desk)
    sid, conference = call["conferenceName"], call["conferenceSid"]
    third = random_number()  # someone else in the call, who must leave too
    _api(stack, desk.key, "POST", f"/sessions/{sid}/members", json={"memberToAdd": third})
    third_leg = _wait_state(stack, desk, sid, third, "Connected")["callSid"]

    destination = random_number()
    redirected = _api(stack, desk.ada_key, "POST", f"/sessions/{sid}/redirect",
                      json={"destination": destination})  # fmt: skip
    assert redirected.status_code == 204 and redirected.content == b""

    # While the destination rings, everyone else has left and the caller is on hold.
    for identity, leg in ((desk.ada, ada["callSid"]), (third, third_leg)):
        _wait_gone(stack, desk, sid, identity)
        wait_until(lambda leg=leg: _call_status(stack, leg) == "completed", what=f"{leg} ended")
    wait_until(lambda: _held_at_twilio(stack, conference, call["callSid"]), what="caller on hold")
    assert _member(_session(stack, desk, sid), destination)["callState"] == "Ringing"

    # The destination answers: the caller comes off hold.
    leg = _wait_state(stack, desk, sid, destination, "Connected")["callSid"]
    _wait_state(stack, desk, sid, caller, "Connected")
    assert _held_at_twilio(stack, conference, call["callSid"]) is False
    assert _held_at_twilio(stack, conference, leg) is False
    session = _session(stack, desk, sid)
    assert session["destination"] == destination
    assert session["ended"] is False and session["callState"] == "Connected"
    live = {m["identity"] for m in session["members"] if m["callState"] != "None"}
    assert live == {caller, destination}
    _assert_logged_in_order(
        session,
        f"Ada Agent transferred the call to {destination}",
        f"{caller} is on hold",
        f"Transferred to {destination}",
        f"{caller} is off hold",
    )


@pytest.mark.parametrize(
    ("destination", "why"),
    [("+14155550002", "did not answer"), ("+14155550001", "was busy")],
    ids=["no-answer", "busy"],
)
def test_blind_transfer_that_does_not_connect_keeps_the_caller(
    slow_stack: Stack, desk: Team, destination: str, why: str
) -> None:
    stack = slow_stack
    call, caller, ada = _call_with_agent(stack, desk)
    sid, conference = call["conferenceName"], call["conferenceSid"]
    redirected = _api(stack, desk.ada_key, "POST", f"/sessions/{sid}/redirect",
                      json={"destination": destination})  # fmt: skip
    assert redirected.status_code == 204
    _wait_gone(stack, desk, sid, desk.ada)
    wait_until(lambda: _call_status(stack, ada["callSid"]) == "completed", what="Ada's leg ended")
    wait_until(lambda: _held_at_twilio(stack, conference, call["callSid"]), what="caller on hold")

    _wait_gone(stack, desk, sid, destination)
    _wait_state(stack, desk, sid, caller, "Connected")
    wait_until(
        lambda: not _held_at_twilio(stack, conference, call["callSid"]), what="caller off hold"
    )
    session = _session(stack, desk, sid)
    assert session["ended"] is False and session["callState"] == "Connected"
    assert session["destination"] == destination
    assert _call_status(stack, call["callSid"]) == "in-progress"
    log = _assert_logged_in_order(
        session,
        f"Ada Agent transferred the call to {destination}",
        f"{caller} is on hold",
        f"{destination} {why}",
        f"{destination} did not connect; the caller stays in the session",
        f"{caller} is off hold",
    )
    assert not any(line.startswith("Transferred to") for line in log)
    # The caller is still there to be helped: a new invite works.
    again = _api(stack, desk.key, "POST", f"/sessions/{sid}/members",
                 json={"memberToAdd": desk.bob})  # fmt: skip
    assert again.status_code == 200
    _wait_state(stack, desk, sid, desk.bob, "Connected")
