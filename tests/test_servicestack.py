"""ServiceStack wire compatibility: the official Python client with the DTOs
from /types/python, JSV through every negotiation path, predefined routes."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import httpx
import pytest
from servicestack import JsonServiceClient, WebServiceException

from orchestrator import jsv
from orchestrator.launch import wait_until
from tests.support import net
from tests.support.accounts import Account, random_number
from tests.support.servicestack import official_dtos
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def dtos(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return official_dtos(stack, Path(tmp_path_factory.mktemp("dtos")))


def _client(stack: Stack, key: str | None) -> JsonServiceClient:
    client = JsonServiceClient(stack.base_url)
    if key:
        client.set_bearer_token(key)
    return client


def test_official_client_invites_and_reads_a_session(
    stack: Stack, account: Account, dtos: ModuleType
) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    client = _client(stack, account.key)
    target = random_number()
    session = client.post(dtos.InviteChatMember(session_id=sid, member_to_add=target))
    assert isinstance(session, dtos.SessionInfo)
    assert session.id == sid and session.account_id == account.id
    assert session.direction == dtos.SessionDirections.INCOMING
    member = next(m for m in session.members if m.identity == target)
    assert member.role == dtos.SessionMemberRoles.TRANSFER
    assert member.is_original_member is False
    assert session.log and session.log[0].message.startswith("Incoming call")

    fetched = client.get(dtos.GetSession(session_id=sid))
    assert isinstance(fetched, dtos.SessionInfo)
    assert [m.identity for m in fetched.members] == [m.identity for m in session.members]
    assert fetched.members[0].role == dtos.SessionMemberRoles.CALLER


def test_official_client_sees_field_errors(
    stack: Stack, account: Account, dtos: ModuleType
) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    client = _client(stack, account.key)
    with pytest.raises(WebServiceException) as bad:
        client.post(dtos.InviteChatMember(session_id=sid, member_to_add="hello"))
    assert bad.value.status_code == 400
    status = bad.value.response_status
    assert status.error_code == "InvalidPhoneNumber"
    assert [(e.field_name, e.error_code) for e in status.errors] == [
        ("MemberToAdd", "InvalidPhoneNumber")
    ]
    with pytest.raises(WebServiceException) as missing:
        client.get(dtos.GetSession(session_id="ses_missing"))
    assert missing.value.status_code == 404
    assert missing.value.response_status.error_code == "NotFound"
    with pytest.raises(WebServiceException) as anonymous:
        _client(stack, None).get(dtos.GetSession(session_id=sid))
    assert anonymous.value.status_code == 401


def test_python_types_are_servicestack_style(stack: Stack) -> None:
    text = net.get(f"{stack.base_url}/types/python").text
    assert "@dataclass_json(letter_case=LetterCase.CAMEL, undefined=Undefined.EXCLUDE)" in text
    assert "class InviteChatMember(IReturn[SessionInfo], IPost):" in text
    assert "class GetSession(IReturn[SessionInfo], IGet):" in text
    assert "class SessionInfo(EntityInfo):" in text
    assert "    NONE = 'None'" in text
    assert f"BaseUrl: {stack.base_url}" in text


# --- JSV --------------------------------------------------------------------------


def _jsv_body(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("text/jsv"), response.headers
    return jsv.loads(response.text)


@pytest.mark.parametrize(
    ("path_suffix", "query", "headers"),
    [
        ("", "", {"Accept": "text/jsv"}),
        ("", "", {"Accept": "application/jsv"}),
        (".jsv", "", {}),
        ("", "?format=jsv", {}),
    ],
    ids=["accept-text", "accept-application", "suffix", "format"],
)
def test_jsv_request_and_response(
    stack: Stack, account: Account, path_suffix: str, query: str, headers: dict
) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    target = random_number()
    body = jsv.dumps({"memberToAdd": target})
    with stack.client(account.key) as c:
        response = c.post(
            f"/sessions/{sid}/members{path_suffix}{query}",
            content=body,
            headers={**headers, "Content-Type": "text/jsv"},
        )
        assert response.status_code == 200, response.text
        session = _jsv_body(response)
        assert session["id"] == sid
        assert session["ended"] == "False"
        assert session["direction"] == "Incoming"
        assert any(m["identity"] == target for m in session["members"])
        assert "customerId" not in session  # null values are omitted in JSV
        fetched = c.get(f"/sessions/{sid}{path_suffix}{query}", headers=headers)
        # The worker may have dialled the new member in between: compare who, not their state.
        identities = [m["identity"] for m in session["members"]]
        assert [m["identity"] for m in _jsv_body(fetched)["members"]] == identities


def test_seed_sample_request_in_pretty_jsv(stack: Stack, account: Account) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    target = random_number()
    pretty = f"{{\n  sessionId: {sid},\n  memberToAdd: {target},\n  callerId: {account.number}\n}}"
    with stack.client(account.key) as c:
        response = c.post(
            f"/sessions/{sid}/members",
            content=pretty,
            headers={"Content-Type": "text/jsv", "Accept": "text/jsv"},
        )
    assert response.status_code == 200, response.text
    member = next(m for m in _jsv_body(response)["members"] if m["identity"] == target)
    assert member["callState"] in ("None", "Ringing", "Connected")


def test_errors_come_in_the_negotiated_format(stack: Stack, account: Account) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    with stack.client(account.key) as c:
        bad = c.post(f"/sessions/{sid}/members.jsv", content="{memberToAdd:hello}",
                     headers={"Content-Type": "text/jsv"})  # fmt: skip
        assert bad.status_code == 400
        status = _jsv_body(bad)["responseStatus"]
        assert status["errorCode"] == "InvalidPhoneNumber"
        assert status["errors"][0]["fieldName"] == "MemberToAdd"
        unsupported = c.post(
            f"/sessions/{sid}/members?format=jsv",
            content=b"<x/>",
            headers={"Content-Type": "application/xml"},
        )
        assert unsupported.status_code == 415
        assert _jsv_body(unsupported)["responseStatus"]["errorCode"] == "UnsupportedMediaType"
        broken = c.post(f"/sessions/{sid}/members", content="{memberToAdd:\"oops",
                        headers={"Content-Type": "text/jsv"})  # fmt: skip
        assert broken.status_code == 400
        assert broken.headers["content-type"].startswith("application/json")
    with stack.client() as anonymous:
        denied = anonymous.get(f"/sessions/{sid}", headers={"Accept": "text/jsv"})
    assert denied.status_code == 401
    assert _jsv_body(denied)["responseStatus"]["errorCode"] == "Unauthorized"


def test_format_priority(stack: Stack, account: Account) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    jsv_accept = {"Accept": "text/jsv"}
    cases = [
        (f"/sessions/{sid}?format=json", jsv_accept, "application/json"),
        (f"/sessions/{sid}.json", jsv_accept, "application/json"),
        (f"/jsv/reply/GetSession?sessionId={sid}", {"Accept": "application/json"}, "text/jsv"),
        (f"/json/reply/GetSession?sessionId={sid}&format=jsv", {}, "text/jsv"),
        (f"/sessions/{sid}", {"Accept": "text/jsv;q=0.5, application/json"}, "application/json"),
        (f"/sessions/{sid}", {"Accept": "text/html, */*"}, "application/json"),
        (f"/sessions/{sid}", {}, "application/json"),
    ]
    with stack.client(account.key) as c:
        for path, headers, expected in cases:
            response = c.get(path, headers=headers)
            assert response.status_code == 200, (path, response.text)
            assert response.headers["content-type"].startswith(expected), path


# --- predefined routes --------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", "/json/reply", "/jsv/reply"])
def test_predefined_routes(stack: Stack, account: Account, prefix: str) -> None:
    sid = stack.incoming_call(random_number(), account.number)["conferenceName"]
    target = random_number()
    with stack.client(account.key) as c:
        invited = c.post(f"{prefix}/InviteChatMember",
                         json={"sessionId": sid, "memberToAdd": target})  # fmt: skip
        assert invited.status_code == 200, invited.text
        fetched = c.get(f"{prefix}/GetSession", params={"sessionId": sid})
        assert fetched.status_code == 200
        wrong_verb = c.get(f"{prefix}/InviteChatMember", params={"sessionId": sid})
        unknown = c.post(f"{prefix}/DeleteEverything", json={})
    for response in (invited, fetched):
        body = _jsv_body(response) if prefix == "/jsv/reply" else response.json()
        assert any(m["identity"] == target for m in body["members"])
    assert wrong_verb.status_code == 405
    assert unknown.status_code == 404


# --- every operation through the official client ----------------------------------------------

# Each operation's verb interface and whether it returns nothing (IReturnVoid), as the seed's
# metadata pages document them.
CLIENT_VERBS = {
    "InviteChatMember": ("IPost", False),
    "GetSession": ("IGet", False),
    "AddConferenceMember": ("IPost", False),
    "DeleteChatMember": ("IDelete", False),
    "UpdateConferenceMember": ("IPatch", False),
    "HoldSession": ("IPost", False),
    "PatchSession": ("IPatch", False),
    "RedirectSession": ("IPost", True),
    "EndSession": ("IDelete", True),
    "GetActiveSessions": ("IGet", False),
    "ListSessions": ("IGet", False),
}


def _send(client: JsonServiceClient, request):
    """Call the operation with the verb its DTO's interface names, and only that one."""
    import servicestack

    name = type(request).__name__
    verb, void = CLIENT_VERBS[name]
    assert isinstance(request, getattr(servicestack, verb)), name
    assert isinstance(request, servicestack.IReturnVoid) is void, name
    assert isinstance(request, servicestack.IReturn) is not void, name
    method = {"IGet": client.get, "IPost": client.post, "IPatch": client.patch}.get(verb)
    return (method or client.delete)(request)


def _wait_connected(stack: Stack, key: str, sid: str, identity: str) -> dict:
    def connected():
        with stack.client(key) as c:
            session = c.get(f"/sessions/{sid}").json()
        found = [m for m in session["members"] if m["identity"] == identity]
        return found[0] if found and found[0]["callState"] == "Connected" else None

    return wait_until(connected, 10, f"{identity} connected")


def test_official_client_calls_every_operation(
    stack: Stack, account: Account, dtos: ModuleType
) -> None:
    caller = random_number()
    call = stack.incoming_call(caller, account.number)
    sid = call["conferenceName"]
    _wait_connected(stack, account.key, sid, caller)
    client = _client(stack, account.key)
    first, second, third = random_number(), random_number(), random_number()

    session = _send(client, dtos.InviteChatMember(session_id=sid, member_to_add=first))
    assert isinstance(session, dtos.SessionInfo) and first in [m.identity for m in session.members]
    fetched = _send(client, dtos.GetSession(session_id=sid))
    assert isinstance(fetched, dtos.SessionInfo) and fetched.id == sid
    added = _send(
        client,
        dtos.AddConferenceMember(
            session_id=sid, call_sid=call["callSid"], destination=second, from_number=account.number
        ),
    )
    assert [m.role for m in added.members if m.identity == second] == [
        dtos.SessionMemberRoles.TRANSFER
    ]
    leg = _wait_connected(stack, account.key, sid, first)["callSid"]
    muted = _send(client, dtos.UpdateConferenceMember(session_id=sid, call_sid=leg, muted=True))
    assert f"Mute requested for {first}" in [entry.message for entry in muted.log]
    removed = _send(client, dtos.DeleteChatMember(session_id=sid, member_to_remove=second))
    assert f"{second} was removed" in [entry.message for entry in removed.log]
    with pytest.raises(WebServiceException) as unknown:
        _send(client, dtos.DeleteChatMember(session_id=sid, member_to_remove="+14155550199"))
    assert unknown.value.status_code == 404
    assert unknown.value.response_status.error_code == "NotFound"

    held = _send(
        client, dtos.HoldSession(session_id=sid, reason=dtos.SessionHoldReasons.TRANSFERRING)
    )
    assert held.call_state == dtos.SessionCallState.HOLD
    assert held.hold_reason == dtos.SessionHoldReasons.TRANSFERRING
    patched = _send(
        client,
        dtos.PatchSession(
            session_id=sid,
            call_state=dtos.SessionCallState.CONNECTED,
            console_data="Wants a refund, {urgent}",
            queue_state=dtos.SessionQueueStates.QUEUED,
        ),
    )
    assert patched.call_state == dtos.SessionCallState.CONNECTED
    assert patched.hold_reason == dtos.SessionHoldReasons.NONE and patched.held_by_user_id is None
    assert patched.console_data == "Wants a refund, {urgent}"
    assert patched.queue_state == dtos.SessionQueueStates.QUEUED
    with pytest.raises(WebServiceException) as bad:
        _send(client, dtos.PatchSession(session_id=sid, call_state=dtos.SessionCallState.RINGING))
    assert bad.value.status_code == 400
    assert [e.field_name for e in bad.value.response_status.errors] == ["CallState"]

    active = _send(client, dtos.GetActiveSessions())
    assert isinstance(active, dtos.GetActiveSessionsResponse)
    assert [s.id for s in active.sessions] == [sid]  # a fresh account: only this call
    page = _send(
        client, dtos.ListSessions(page=0, count_per_page=1, sort_order=dtos.SortOrders.DESCEND)
    )
    assert isinstance(page, dtos.ListSessionsResponse)
    assert [s.id for s in page.items] == [sid]
    assert page.total_count == 1 and page.total_pages == 1 and page.has_more_pages is False

    assert _send(client, dtos.RedirectSession(session_id=sid, destination=third)) is None
    assert _send(client, dtos.GetSession(session_id=sid)).destination == third
    assert _send(client, dtos.EndSession(session_id=sid, call_sid=call["callSid"])) is None
    assert _send(client, dtos.EndSession(session_id=sid)) is None  # ended already: 204 too
    ended = _send(client, dtos.GetSession(session_id=sid))
    assert ended.ended is True and ended.call_state == dtos.SessionCallState.DISCONNECTED
    assert ended.outcome.startswith("Ended by key_")
    with pytest.raises(WebServiceException) as conflict:
        _send(client, dtos.HoldSession(session_id=sid))
    assert conflict.value.status_code == 409
    assert conflict.value.response_status.error_code == "Conflict"
    assert _send(client, dtos.GetActiveSessions()).sessions == []


def test_python_types_declare_every_operation(stack: Stack, dtos: ModuleType) -> None:
    text = net.get(f"{stack.base_url}/types/python").text
    for name, (verb, void) in CLIENT_VERBS.items():
        returns = "IReturnVoid" if void else "IReturn["
        (line,) = [x for x in text.splitlines() if x.startswith(f"class {name}(")]
        assert returns in line and line.endswith(f", {verb}):"), line
        assert isinstance(getattr(dtos, name)(), dtos.IReturnVoid if void else dtos.IReturn)
