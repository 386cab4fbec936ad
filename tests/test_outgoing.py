"""Calls agents place (docs/api.md#calls-agents-place): a softphone's call through the
TwiML App's voice webhook and click to call (NewOutgoingSession) start an outgoing
session whose destination is dialled once, only once the agent's leg is in the
conference; refusals dial nothing; GetMySessions lists the agent's own sessions.

The webhook tests post Twilio's signed requests themselves, so that each step (the
softphone's call, the agent's join) happens when the test says; the others run
through the emulator's softphones."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from rq.job import Job
from servicestack import JsonServiceClient, WebServiceException

from orchestrator import jsv, keys, provision, redis_client
from orchestrator.jobs import job_id
from orchestrator.launch import wait_until
from tests.support import queues
from tests.support.accounts import Team, new_team, random_number
from tests.support.servicestack import official_dtos
from tests.support.stack import Stack
from tests.support.webhooks import post


@pytest.fixture
def team(stack: Stack) -> Team:
    return new_team(stack.redis_url)


def rq_redis(stack: Stack) -> redis.Redis:
    """A connection as RQ needs it: its job hashes hold bytes."""
    return redis_client.connect_sync(stack.redis_url)


def call_sid() -> str:
    return "CA" + random.randbytes(16).hex()


def softphone_call(stack: Stack, identity: str, to: str, **params: str) -> tuple[str, str]:
    """The voice webhook as Twilio calls it for a softphone's call; (CallSid, TwiML)."""
    sid = call_sid()
    form = {
        "CallSid": sid,
        "AccountSid": stack.service.account_sid,
        "From": f"client:{identity}",
        "Caller": f"client:{identity}",
        "To": to,
        "Called": to,
        "Direction": "inbound",
        "CallStatus": "ringing",
        "ApplicationSid": "AP" + "0" * 32,
        **params,
    }
    response = post(stack, "/twilio/voice", form)
    assert response.status_code == 200, response.text
    return sid, response.text


def session_of(stack: Stack, call: str) -> str:
    return stack.redis.get(keys.call(call)).split()[0]


def members(stack: Stack, sid: str) -> dict[str, dict[str, str]]:
    r = stack.redis
    return {
        mid: r.hgetall(keys.member(sid, mid)) for mid in r.lrange(keys.session_members(sid), 0, -1)
    }


def join(stack: Stack, sid: str, call: str, seq: int = 1) -> None:
    """Twilio's participant-join for the leg `call` of the session's conference."""
    response = post(
        stack,
        "/twilio/conference-status",
        {
            "FriendlyName": sid,
            "StatusCallbackEvent": "participant-join",
            "ConferenceSid": "CF" + sid[-24:].rjust(32, "0"),
            "CallSid": call,
            "SequenceNumber": str(seq),
        },
    )
    assert response.status_code == 204


def wait_dialled(stack: Stack, label: str) -> None:
    wait_until(lambda: stack.creates(label) >= 1, 15, f"{label} dialled")


def get(stack: Stack, key: str, path: str) -> Any:
    with stack.client(key) as c:
        response = c.get(path)
    assert response.status_code == 200, response.text
    return response.json()


# --- a softphone's call -------------------------------------------------------------------


def test_a_softphone_call_dials_its_destination_once_the_agent_is_in_the_conference(
    stack: Stack, team: Team
) -> None:
    number = random_number()
    call, twiml = softphone_call(stack, team.ada, number)
    sid = session_of(stack, call)
    assert f">{sid}</Conference>" in twiml and 'endConferenceOnExit="false"' in twiml
    session = stack.redis.hgetall(keys.session(sid))
    assert session["direction"] == "Outgoing" and session["destination"] == number
    assert session["dialState"] == "Active" and session["callbackNumber"] == team.number
    (_, agent_m), (dest, dest_m) = members(stack, sid).items()
    assert agent_m["isOriginalMember"] == "true" and agent_m["role"] == "Agent"
    assert agent_m["identity"] == team.ada and agent_m["callSid"] == call
    assert dest_m["identity"] == number and dest_m["isOriginalMember"] == "false"
    # Not yet: its job waits for the agent's leg, and exists nowhere RQ could run it.
    assert not Job.exists(job_id(dest), connection=rq_redis(stack))
    assert stack.redis.llen(keys.pending_dial(sid)) > 0

    join(stack, sid, call)
    wait_dialled(stack, dest)
    # Twilio's retries (the voice webhook, the join) dial nobody again.
    assert softphone_call_again(stack, team.ada, number, call) == sid
    join(stack, sid, call, seq=2)
    wait_until(lambda: queues.job_over(rq_redis(stack), job_id(dest)), 15, "the dial job over")
    wait_until(lambda: queues.all_idle(rq_redis(stack)), 15, "queues idle")
    assert stack.creates(dest) == 1
    placed = [c for c in stack.emulator("calls").json()["calls"] if c["label"] == dest]
    assert placed[0]["from"] == team.number and placed[0]["conferenceName"] == sid


def softphone_call_again(stack: Stack, identity: str, to: str, call: str) -> str:
    form = {"CallSid": call, "From": f"client:{identity}", "To": to, "Direction": "inbound"}
    response = post(stack, "/twilio/voice", form)
    assert response.status_code == 200
    sid = session_of(stack, call)
    assert f">{sid}</Conference>" in response.text
    return sid


def test_the_caller_id_is_the_accounts_number_asked_for_else_its_first(
    stack: Stack, team: Team
) -> None:
    r = redis_client.connect_sync(stack.redis_url)
    second = provision.add_number(r, random_number(), team.id)
    call, _ = softphone_call(stack, team.ada, random_number(), callerId=second)
    assert stack.redis.hget(keys.session(session_of(stack, call)), "callbackNumber") == second
    # Not one of the account's numbers: the account's first number, never the one asked.
    other = random_number()
    call, _ = softphone_call(stack, team.ada, random_number(), callerId=other)
    assert stack.redis.hget(keys.session(session_of(stack, call)), "callbackNumber") == team.number


def test_a_user_is_called_by_their_email(stack: Stack, team: Team) -> None:
    call, _ = softphone_call(stack, team.ada, team.bob_email.upper())
    sid = session_of(stack, call)
    dest = list(members(stack, sid).values())[1]
    assert dest["_to"] == f"client:{team.bob}" and dest["displayName"] == "Bob Builder"


@pytest.mark.parametrize(
    ("identity", "to", "heard"),
    [
        ("usr_nobody", "+14155550123", "not signed in as a user"),
        (None, "+19005550100", "premium-rate"),
        (None, "+442079460000", "may dial US"),
        (None, "12345", "is not a phone number"),
        (None, "nobody@example.com", "no user nobody@example.com"),
        (None, "", "no number was dialled"),
    ],
    ids=["unknown-identity", "premium", "country", "invalid", "no-such-user", "empty"],
)
def test_a_refused_call_is_spoken_to_the_agent_and_dials_nothing(
    stack: Stack, team: Team, identity: str | None, to: str, heard: str
) -> None:
    before = stack.emulator("creates").json()["total"]
    call, twiml = softphone_call(stack, identity or team.ada, to)
    assert "<Say>Your call was not placed: " in twiml and heard in twiml
    assert "<Hangup />" in twiml and "<Conference" not in twiml
    assert stack.redis.get(keys.call(call)) is None
    assert stack.redis.zcard(keys.account_active(team.id)) == 0
    assert stack.emulator("creates").json()["total"] == before


def test_an_agent_who_hangs_up_before_joining_dials_nobody(stack: Stack, team: Team) -> None:
    call, _ = softphone_call(stack, team.ada, random_number())
    sid = session_of(stack, call)
    dest = list(members(stack, sid))[1]
    response = post(
        stack,
        "/twilio/conference-status",
        {"FriendlyName": sid, "StatusCallbackEvent": "conference-end", "ConferenceSid": "CF1"},
    )
    assert response.status_code == 204
    assert stack.redis.hget(keys.session(sid), "ended") == "true"
    wait_until(lambda: queues.job_over(rq_redis(stack), job_id(dest)), 15, "the released job over")
    assert stack.creates(dest) == 0
    assert stack.redis.hget(keys.member(sid, dest), "_rank") == "3"
    assert any("Not dialled" in e["message"] for e in stack.session_log(sid))


# --- click to call ------------------------------------------------------------------------


def test_click_to_call_rings_the_agent_then_the_destination(stack: Stack, team: Team) -> None:
    stack.softphone(team.ada_key, "answer")
    number = random_number()
    with stack.client(team.ada_key) as c:
        response = c.post("/sessions/outgoing", json={"numberToDial": number})
    assert response.status_code == 200, response.text
    session = response.json()
    sid = session["id"]
    assert session["direction"] == "Outgoing" and session["destination"] == number
    agent_m, dest_m = session["members"]
    assert agent_m["identity"] == team.ada and agent_m["isOriginalMember"] is True
    assert dest_m["identity"] == number
    agent, dest = members(stack, sid)
    wait_dialled(stack, agent)
    wait_dialled(stack, dest)
    wait_until(
        lambda: all(
            m["callState"] == "Connected"
            for m in get(stack, team.ada_key, f"/sessions/{sid}")["members"]
        ),
        15,
        "both connected",
    )
    assert stack.creates(agent) == 1 and stack.creates(dest) == 1
    mine = get(stack, team.ada_key, "/sessions/my")["sessions"]
    assert [s["id"] for s in mine] == [sid]
    assert get(stack, team.bob_key, "/sessions/my")["sessions"] == []

    # The customer hangs up: nobody else is on the agent's call, so it ends.
    dest_call = get(stack, team.ada_key, f"/sessions/{sid}")["members"][1]["callSid"]
    stack.emulator(f"calls/{dest_call}/hangup", "POST")
    wait_until(lambda: get(stack, team.ada_key, f"/sessions/{sid}")["ended"], 15, "ended")
    assert get(stack, team.ada_key, "/sessions/my")["sessions"] == []


def test_click_to_call_an_agent_who_does_not_answer_dials_nobody(stack: Stack, team: Team) -> None:
    # No softphone registered: Twilio rings the identity and gives up (no-answer).
    with stack.client(team.bob_key) as c:
        response = c.post("/sessions/outgoing", json={"numberToDial": random_number()})
    assert response.status_code == 200, response.text
    sid = response.json()["id"]
    agent, dest = members(stack, sid)
    wait_until(lambda: get(stack, team.bob_key, f"/sessions/{sid}")["ended"], 20, "ended")
    wait_until(lambda: queues.job_over(rq_redis(stack), job_id(dest)), 15, "released job over")
    assert stack.creates(agent) == 1 and stack.creates(dest) == 0


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "NumberToDial", "NotEmpty"),
        ({"numberToDial": "+442079460000"}, "NumberToDial", "DialNotAllowed"),
        ({"numberToDial": "+19005550100"}, "NumberToDial", "DialNotAllowed"),
        ({"numberToDial": "nope"}, "NumberToDial", "InvalidPhoneNumber"),
        ({"numberToDial": "ghost@example.com"}, "NumberToDial", "NotFound"),
        ({"numberToDial": "+14155550123", "callerId": "x"}, "CallerId", "InvalidPhoneNumber"),
        ({"numberToDial": "+14155550123", "flowId": "que_nope"}, "FlowId", "NotFound"),
    ],
)
def test_click_to_call_refuses_what_it_cannot_dial(
    stack: Stack, team: Team, body: dict[str, str], field: str, code: str
) -> None:
    before = stack.emulator("creates").json()["total"]
    with stack.client(team.ada_key) as c:
        response = c.post("/sessions/outgoing", json=body)
    assert response.status_code == 400, response.text
    errors = response.json()["responseStatus"]["errors"]
    assert [(e["fieldName"], e["errorCode"]) for e in errors] == [(field, code)]
    assert stack.redis.zcard(keys.account_active(team.id)) == 0
    assert stack.emulator("creates").json()["total"] == before


def test_the_agents_own_operations_need_a_key_of_a_user(stack: Stack, team: Team) -> None:
    with stack.client(team.key) as c:
        mine = c.get("/sessions/my")
        placed = c.post("/sessions/outgoing", json={"numberToDial": "+14155550123"})
    for response in (mine, placed):
        assert response.status_code == 403
        assert "acts as no user" in response.json()["responseStatus"]["message"]


def test_my_sessions_are_those_where_my_leg_is_not_over(stack: Stack, team: Team) -> None:
    stack.softphone(team.bob_key, "answer")
    first = stack.incoming_call(random_number(), team.number)["conferenceName"]
    second = stack.incoming_call(random_number(), team.number)["conferenceName"]
    with stack.client(team.key) as c:
        invited = c.post(f"/sessions/{first}/members", json={"memberToAdd": team.bob_email})
    assert invited.status_code == 200, invited.text
    bob = list(members(stack, first))[-1]
    wait_until(
        lambda: [s["id"] for s in get(stack, team.bob_key, "/sessions/my")["sessions"]] == [first],
        15,
        "the first session listed",
    )
    assert second not in [s["id"] for s in get(stack, team.bob_key, "/sessions/my")["sessions"]]
    with stack.client(team.key) as c:
        assert c.delete(f"/sessions/{first}/members/{bob}").status_code == 200
    wait_until(lambda: get(stack, team.bob_key, "/sessions/my")["sessions"] == [], 15, "none")


# --- through the emulator's softphones ----------------------------------------------------


def test_a_softphone_places_a_call_through_the_twiml_app(stack: Stack, team: Team) -> None:
    """The whole path as Twilio plays it: the token from GetAppConfig registers the
    softphone, its call reaches the TwiML App's Voice URL signed, and the destination
    is dialled once the agent's leg is in the conference."""
    identity = stack.softphone(team.ada_key, "answer")["identity"]
    assert identity == team.ada
    number = random_number()
    placed = stack.place_call(identity, number)
    sid = placed["conferenceName"]
    assert sid and placed["said"] == []
    dest = list(members(stack, sid))[1]
    wait_dialled(stack, dest)
    wait_until(
        lambda: (
            [m["callState"] for m in get(stack, team.ada_key, f"/sessions/{sid}")["members"]]
            == ["Connected", "Connected"]
        ),
        15,
        "agent and destination connected",
    )
    # The agent hangs up: the session ends, and the customer's leg with it.
    stack.emulator(f"calls/{placed['callSid']}/hangup", "POST")
    wait_until(lambda: get(stack, team.ada_key, f"/sessions/{sid}")["ended"], 15, "ended")
    dest_call = stack.redis.hget(keys.member(sid, dest), "callSid")
    wait_until(
        lambda: stack.emulator(f"calls/{dest_call}").json()["status"] == "completed",
        15,
        "the customer's leg hung up",
    )
    assert stack.creates(dest) == 1


def test_an_outgoing_call_transferred_goes_on_without_the_agent(stack: Stack, team: Team) -> None:
    """A blind transfer keeps the customer (the destination), as it keeps a caller: the
    agent leaves, the colleague connects, and the call goes on until the customer hangs
    up."""
    stack.online(team)
    placed = stack.place_call(team.ada, random_number())
    sid = placed["conferenceName"]
    _, dest = members(stack, sid)
    wait_until(
        lambda: stack.redis.hget(keys.member(sid, dest), "callState") == "Connected", 15, "dest"
    )
    with stack.client(team.ada_key) as c:
        moved = c.post(f"/sessions/{sid}/redirect", json={"destination": team.bob_email})
    assert moved.status_code == 204, moved.text
    wait_until(
        lambda: (
            [m["callState"] for m in get(stack, team.ada_key, f"/sessions/{sid}")["members"]]
            == ["None", "Connected", "Connected"]
        ),
        15,
        "the agent gone, the customer and the colleague connected",
    )
    assert get(stack, team.ada_key, f"/sessions/{sid}")["ended"] is False
    assert stack.emulator(f"calls/{placed['callSid']}").json()["status"] == "completed"
    assert [s["id"] for s in get(stack, team.bob_key, "/sessions/my")["sessions"]] == [sid]
    assert get(stack, team.ada_key, "/sessions/my")["sessions"] == []
    # The customer hangs up: the call is over for the colleague too.
    stack.emulator(f"calls/{stack.redis.hget(keys.member(sid, dest), 'callSid')}/hangup", "POST")
    wait_until(lambda: get(stack, team.bob_key, f"/sessions/{sid}")["ended"], 15, "ended")


def test_a_softphone_hears_why_its_call_is_refused(stack: Stack, team: Team) -> None:
    identity = stack.softphone(team.bob_key, "answer")["identity"]
    placed = stack.place_call(identity, "+19005550100")
    assert placed["conferenceName"] is None and placed["status"] == "completed"
    assert len(placed["said"]) == 1 and "premium-rate" in placed["said"][0]


# --- every route and format, the document and the official client ----------------------------


def test_every_route_and_format_serves_the_agents_operations(stack: Stack, team: Team) -> None:
    stack.softphone(team.ada_key, "answer")
    with stack.client(team.ada_key) as c:
        for path in ("/api/NewOutgoingSession", "/json/reply/NewOutgoingSession"):
            placed = c.post(path, json={"numberToDial": random_number()})
            assert placed.status_code == 200, (path, placed.text)
            assert placed.json()["direction"] == "Outgoing"
        placed = c.post(
            "/jsv/reply/NewOutgoingSession",
            content=f"{{numberToDial:{random_number()}}}",
            headers={"Content-Type": "text/jsv"},
        )
        assert placed.status_code == 200, placed.text
        assert jsv.loads(placed.text)["direction"] == "Outgoing"
        sids = {s["id"] for s in c.get("/sessions/my").json()["sessions"]}
        assert len(sids) == 3
        for path in ("/api/GetMySessions", "/json/reply/GetMySessions", "/sessions/my.json"):
            listed = c.get(path)
            assert listed.status_code == 200, (path, listed.text)
            assert {s["id"] for s in listed.json()["sessions"]} == sids
        for path in ("/jsv/reply/GetMySessions", "/sessions/my?format=jsv"):
            listed = c.get(path)
            assert {s["id"] for s in jsv.loads(listed.text)["sessions"]} == sids


JSON = "application/json"


def test_answers_match_the_document(stack: Stack, team: Team) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {team.ada_key}"}
    place = schema["/sessions/outgoing"]["POST"]
    cases = [
        (place.Case(body={"numberToDial": random_number()}, media_type=JSON), 200),
        (place.Case(body={"numberToDial": "+19005550100"}, media_type=JSON), 400),
        (schema["/sessions/my"]["GET"].Case(), 200),
    ]
    for case, status in cases:
        answer = case.call_and_validate(headers=headers)
        assert answer.status_code == status, answer.text


def test_the_official_client_places_a_call_and_lists_mine(
    stack: Stack, team: Team, tmp_path: Path
) -> None:
    dtos = official_dtos(stack, tmp_path)
    stack.softphone(team.ada_key, "answer")
    client = JsonServiceClient(stack.base_url)
    client.set_bearer_token(team.ada_key)
    number = random_number()
    session = client.post(dtos.NewOutgoingSession(number_to_dial=number))
    assert isinstance(session, dtos.SessionInfo)
    assert session.direction == dtos.SessionDirections.OUTGOING and session.destination == number
    mine = client.get(dtos.GetMySessions())
    assert isinstance(mine, dtos.GetMySessionsResponse)
    assert [s.id for s in mine.sessions] == [session.id]
    with pytest.raises(WebServiceException) as refused:
        client.post(dtos.NewOutgoingSession(number_to_dial="+442079460000"))
    assert refused.value.status_code == 400
    assert refused.value.response_status.errors[0].error_code == "DialNotAllowed"
