"""Agent states (docs/api.md#agent-state): an agent sets their own state with SetAgentState
on every route and format and through the official ServiceStack client, GetAppConfig
shows it, each change is an AgentStateChanged event on the account's event stream (never
on a session's), and what an agent may not set (WrapUp, Unknown, nothing) is a 400 naming
the field, a key of no user a 403."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from servicestack import JsonServiceClient, WebServiceException

from orchestrator import jsv, keys, provision, redis_client
from tests.support.accounts import Team, new_account, new_team, random_number
from tests.support.servicestack import official_dtos
from tests.support.sse import EventStream
from tests.support.stack import Stack

PATH = "/app/agent-state"


@pytest.fixture
def team(stack: Stack) -> Team:
    return new_team(stack.redis_url)


def _state(stack: Stack, key: str) -> tuple[str, str]:
    with stack.client(key) as c:
        config = c.get("/app/config")
    assert config.status_code == 200, config.text
    return config.json()["agentState"], config.json()["agentStateReason"]


def test_a_new_user_is_logged_out(stack: Stack, team: Team) -> None:
    assert _state(stack, team.ada_key) == ("LoggedOut", "Unknown")
    assert stack.redis.hget(keys.agent_states(), team.ada) == "LoggedOut"


# Each request sets the state the one before did not, so every one is a change.
ROUTES = [
    (PATH, {"json": {"agentState": "Ready"}}, "application/json", "Ready"),
    ("/api/SetAgentState", {"json": {"agentState": "NotReady"}}, "application/json", "NotReady"),
    ("/json/reply/SetAgentState", {"data": {"agentState": "Ready"}}, "application/json", "Ready"),
    (
        "/jsv/reply/SetAgentState",
        {"content": "{agentState:LoggedOut}", "headers": {"Content-Type": "text/jsv"}},
        "text/jsv",
        "LoggedOut",
    ),
    (PATH + ".jsv", {"json": {"agentState": "ready"}}, "text/jsv", "Ready"),  # any case
    (PATH + "?agentState=NotReady", {}, "application/json", "NotReady"),
    (PATH + ".json", {"json": {"AgentState": "LoggedOut"}}, "application/json", "LoggedOut"),
    (
        PATH,
        {"json": {"agentState": "Ready"}, "headers": {"Accept": "text/jsv"}},
        "text/jsv",
        "Ready",
    ),
]


def test_every_route_and_format_sets_the_state(stack: Stack, team: Team) -> None:
    with stack.client(team.ada_key) as c:
        for path, kwargs, content_type, expected in ROUTES:
            response = c.patch(path, **kwargs)
            assert response.status_code == 200, (path, response.text)
            assert response.headers["content-type"].startswith(content_type), path
            body = jsv.loads(response.text) if content_type == "text/jsv" else response.json()
            assert body == {"agentState": expected, "agentStateReason": "SetByUser"}, path
            assert _state(stack, team.ada_key) == (expected, "SetByUser"), path
            assert stack.redis.hget(keys.agent_states(), team.ada) == expected
    # Only Ada's state changed.
    assert _state(stack, team.bob_key) == ("LoggedOut", "Unknown")


def test_what_an_agent_may_not_set_is_400_naming_the_field(stack: Stack, team: Team) -> None:
    with stack.client(team.ada_key) as c:
        assert c.patch(PATH, json={"agentState": "Ready"}).status_code == 200
        for body in ({"agentState": "WrapUp"}, {"agentState": "Unknown"}, {"agentState": "Other"}):
            response = c.patch(PATH, json=body)
            assert response.status_code == 400, (body, response.text)
            status = response.json()["responseStatus"]
            assert status["errorCode"] == "InvalidValue"
            assert [e["fieldName"] for e in status["errors"]] == ["AgentState"]
            assert "Ready, NotReady or LoggedOut" in status["message"]
            assert body["agentState"] in status["message"]
        for body in ({}, {"agentState": None}, {"agentState": ""}, {"agentState": "Asleep"}):
            response = c.patch(PATH, json=body)
            assert response.status_code == 400, (body, response.text)
            errors = response.json()["responseStatus"]["errors"]
            assert [e["fieldName"] for e in errors] == ["AgentState"], body
        # None of them changed anything.
        assert _state(stack, team.ada_key) == ("Ready", "SetByUser")
        wrong_verb = c.post(PATH, json={"agentState": "Ready"})
        assert wrong_verb.status_code == 405 and "PATCH" in wrong_verb.headers["allow"]


def test_a_key_of_no_user_or_of_a_removed_user_is_403(stack: Stack, team: Team) -> None:
    with stack.client(team.key) as c:
        response = c.patch(PATH, json={"agentState": "Ready"})
    assert response.status_code == 403, response.text
    assert "acts as no user" in response.json()["responseStatus"]["message"]
    # Refused before the body is read: a key of no user learns nothing of the field's rules.
    with stack.client(team.key) as c:
        assert c.patch(PATH, json={"agentState": "WrapUp"}).status_code == 403
    stack.redis.delete(keys.user(team.bob))
    with stack.client(team.bob_key) as c:
        gone = c.patch(PATH, json={"agentState": "Ready"})
    assert gone.status_code == 403, gone.text
    assert "no longer exists" in gone.json()["responseStatus"]["message"]
    with stack.client() as anonymous:
        assert anonymous.patch(PATH, json={"agentState": "Ready"}).status_code == 401


def test_each_change_is_an_event_of_the_account_not_of_a_session(stack: Stack, team: Team) -> None:
    sid = stack.incoming_call(random_number(), team.number)["conferenceName"]
    account = EventStream(f"{stack.base_url}/sessions/events", team.key).connected()
    session = EventStream(f"{stack.base_url}/sessions/{sid}/events", team.key).connected()
    other = new_account(stack.redis_url)
    stranger = EventStream(f"{stack.base_url}/sessions/events", other.key).connected()
    try:
        with stack.client(team.ada_key) as c:
            assert c.patch(PATH, json={"agentState": "Ready"}).status_code == 200
            assert c.patch(PATH, json={"agentState": "NotReady"}).status_code == 200
        with stack.client(team.bob_key) as c:
            assert c.patch(PATH, json={"agentState": "Ready"}).status_code == 200
        changed = account.wait(
            lambda s: (
                s.named("AgentStateChanged") if len(s.named("AgentStateChanged")) >= 3 else None
            ),
            what="3 state changes",
        )
        assert [m.data for m in changed] == [
            {"userId": team.ada, "agentState": "Ready", "agentStateReason": "SetByUser"},
            {"userId": team.ada, "agentState": "NotReady", "agentStateReason": "SetByUser"},
            {"userId": team.bob, "agentState": "Ready", "agentStateReason": "SetByUser"},
        ]
        assert all(m.id for m in changed)  # each may be resumed from
        # A session's stream sees its own changes only; another account sees none.
        with stack.client(team.key) as c:
            assert c.patch(f"/sessions/{sid}", json={"consoleData": "x"}).status_code == 200
        session.wait(lambda s: any(m.session["consoleData"] == "x" for m in s.changes()))
        account.wait(lambda s: any(m.session["consoleData"] == "x" for m in s.changes(sid)))
        assert session.named("AgentStateChanged") == []
        assert stranger.named("AgentStateChanged") == []
        # Setting the state the agent is in is no change, and no event.
        with stack.client(team.bob_key) as c:
            again = c.patch(PATH, json={"agentState": "Ready"})
        assert again.json() == {"agentState": "Ready", "agentStateReason": "SetByUser"}
        with stack.client(team.key) as c:
            assert c.patch(f"/sessions/{sid}", json={"consoleData": "y"}).status_code == 200
        account.wait(lambda s: any(m.session["consoleData"] == "y" for m in s.changes(sid)))
        assert len(account.named("AgentStateChanged")) == 3
    finally:
        for stream in (account, session, stranger):
            stream.close()
    # Resuming from before them replays them, in order.
    resumed = EventStream(
        f"{stack.base_url}/sessions/events", team.key, last_event_id=changed[0].id
    ).connected()
    try:
        replayed = resumed.wait(
            lambda s: (
                s.named("AgentStateChanged") if len(s.named("AgentStateChanged")) >= 2 else None
            ),
            what="the replay",
        )
        assert [m.id for m in replayed] == [m.id for m in changed[1:]]
    finally:
        resumed.close()


def test_an_agent_entry_written_by_any_script_is_rendered(stack: Stack, team: Team) -> None:
    """The stream renders the entry as the queue engine writes it (lua/_queues.lua), e.g. a
    WrapUp the service set: whatever wrote it, the event is the same."""
    stream = EventStream(f"{stack.base_url}/sessions/events", team.key).connected()
    try:
        stack.redis.xadd(
            keys.account_events(team.id),
            {
                "@agent": team.bob,
                "@events": "AgentStateChanged",
                "userId": team.bob,
                "agentState": "WrapUp",
                "agentStateReason": "SetBySystem",
            },
        )
        (event,) = stream.wait(lambda s: s.named("AgentStateChanged") or None)
        assert event.data == {
            "userId": team.bob,
            "agentState": "WrapUp",
            "agentStateReason": "SetBySystem",
        }
    finally:
        stream.close()


def test_answers_match_the_document(stack: Stack, team: Team) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    cases = [
        (team.ada_key, {"agentState": "Ready"}, 200),
        (team.ada_key, {"agentState": "WrapUp"}, 400),
        (team.key, {"agentState": "Ready"}, 403),
    ]
    for key, body, status in cases:
        for path in (PATH, "/api/SetAgentState", "/json/reply/SetAgentState"):
            case = schema[path]["PATCH"].Case(body=body, media_type="application/json")
            answer = case.call_and_validate(headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == status, (path, answer.text)


def test_the_official_client_sets_the_state(stack: Stack, team: Team, tmp_path: Path) -> None:
    dtos = official_dtos(stack, tmp_path, "agent_state_dtos")
    client = JsonServiceClient(stack.base_url)
    client.set_bearer_token(team.ada_key)
    answer = client.patch(dtos.SetAgentState(agent_state=dtos.AgentStates.READY))
    assert isinstance(answer, dtos.SetAgentStateResponse)
    assert answer.agent_state == dtos.AgentStates.READY
    assert answer.agent_state_reason == dtos.AgentStateReasons.SET_BY_USER
    config = client.get(dtos.GetAppConfig())
    assert config.agent_state == dtos.AgentStates.READY
    with pytest.raises(WebServiceException) as refused:
        client.patch(dtos.SetAgentState(agent_state=dtos.AgentStates.WRAP_UP))
    assert refused.value.status_code == 400
    assert refused.value.response_status.errors[0].field_name == "AgentState"


def test_a_user_added_by_the_operator_starts_logged_out(stack: Stack) -> None:
    r = redis_client.connect_sync(stack.redis_url)
    account = new_account(stack.redis_url)
    uid = provision.add_user(r, "new-agent@example.com", account.id)
    key = provision.create_key(r, account.id, ["User"], user=uid)
    assert _state(stack, key) == ("LoggedOut", "Unknown")
    assert stack.redis.hget(keys.agent_states(), uid) == "LoggedOut"
