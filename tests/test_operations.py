"""Every session operation of docs/api.md against the running processes.

Each of the eleven operations on its own route and on ServiceStack's predefined
routes, in JSON and JSV, with JSON, JSV and form bodies; auth; bad input; ended
sessions; repeated requests; the user behind a key; SessionInfo's own fields
through a call's life; and listing more than a thousand sessions a page at a time.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import redis
import schemathesis
from twilio.request_validator import RequestValidator

from orchestrator import apikeys, jobs, jsv, keys, provision
from orchestrator.launch import wait_until
from tests.support import net, queues
from tests.support.accounts import Account, new_account, random_number
from tests.support.cli import cli
from tests.support.stack import Stack

# --- the operations, as the seed's metadata pages document them --------------------------


@dataclass(frozen=True)
class Op:
    name: str
    verb: str
    path: str
    void: bool = False  # IReturnVoid: 204, no body
    names_session: bool = True


OPS = {
    op.name: op
    for op in (
        Op("InviteChatMember", "POST", "/sessions/{sessionId}/members"),
        Op("GetSession", "GET", "/sessions/{sessionId}"),
        Op("AddConferenceMember", "POST", "/sessions/{sessionId}/conference/members"),
        Op("DeleteChatMember", "DELETE", "/sessions/{sessionId}/members/{memberId}"),
        Op(
            "UpdateConferenceMember",
            "PATCH",
            "/sessions/{sessionId}/conference/members/{callSid}",
        ),
        Op("HoldSession", "POST", "/sessions/{sessionId}/hold"),
        Op("PatchSession", "PATCH", "/sessions/{sessionId}"),
        Op("RedirectSession", "POST", "/sessions/{sessionId}/redirect", void=True),
        Op("EndSession", "DELETE", "/sessions/{sessionId}", void=True),
        Op("GetActiveSessions", "GET", "/sessions/active", names_session=False),
        Op("ListSessions", "GET", "/sessions", names_session=False),
    )
}
SESSION_OPS = [name for name, op in OPS.items() if op.names_session]
# The route's {memberId} is DeleteChatMember's memberToRemove (its DTO has no memberId).
PATH_FIELDS = {"memberId": "memberToRemove"}

# id: (route: own or a predefined prefix, body encoding, how JSV is asked for, answer format)
TRANSPORTS = {
    "route-json": ("own", "json", None, "json"),
    "route-jsv-body-accept-jsv": ("own", "jsv", "accept", "jsv"),
    "route-form-body-format-jsv": ("own", "form", "format", "jsv"),
    "route-jsv-suffix": ("own", "json", "suffix", "jsv"),
    "api-json": ("/api", "json", None, "json"),
    "json-reply-jsv-body": ("/json/reply", "jsv", None, "json"),
    "jsv-reply-form-body": ("/jsv/reply", "form", None, "jsv"),
}


def _wire(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def send(
    stack: Stack,
    key: str | None,
    op: Op,
    fields: dict[str, Any],
    transport: str = "route-json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """`op` with `fields`, put where `transport` says: path, query string or body."""
    route, encoding, ask, _ = TRANSPORTS[transport]
    rest = {k: v for k, v in fields.items() if v is not None}
    if route == "own":

        def fill(match: re.Match) -> str:
            name = match.group(1)
            return quote(_wire(rest.pop(PATH_FIELDS.get(name, name))), safe="")

        path = re.sub(r"{(\w+)}", fill, op.path)
    else:
        path = f"{route}/{op.name}"
    if ask == "suffix":
        path += ".jsv"
    params: dict[str, str] = {"format": "jsv"} if ask == "format" else {}
    headers = {**(headers or {})}
    if ask == "accept":
        headers["Accept"] = "text/jsv"
    content: str | None = None
    if op.verb in ("GET", "DELETE"):
        params |= {k: _wire(v) for k, v in rest.items()}
    elif encoding == "json":
        content, headers["Content-Type"] = json.dumps(rest), "application/json"
    elif encoding == "jsv":
        content, headers["Content-Type"] = jsv.dumps(rest), "text/jsv"
    else:
        content = urlencode({k: _wire(v) for k, v in rest.items()})
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    with stack.client(key) as c:
        return c.request(op.verb, path, params=params, content=content, headers=headers)


def decoded(response: httpx.Response, fmt: str = "json") -> Any:
    assert_clean(response)
    if fmt == "jsv":
        assert response.headers["content-type"].startswith("text/jsv"), response.headers
        return jsv.loads(response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


def assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:400])
    assert "Traceback" not in response.text and 'File "' not in response.text


def status_of(response: httpx.Response, fmt: str = "json") -> dict[str, Any]:
    body = decoded(response, fmt)
    assert set(body) == {"responseStatus"}, body
    return body["responseStatus"]


def field_errors(response: httpx.Response, fmt: str = "json") -> set[tuple[str, str]]:
    status = status_of(response, fmt)
    errors = {(e["fieldName"], e["errorCode"]) for e in status["errors"]}
    assert len(errors) == len(status["errors"]), status  # one entry per field
    assert (status["errors"][0]["errorCode"]) == status["errorCode"]
    return errors


def same(value: Any, expected: Any) -> bool:
    """JSON and JSV agree: JSV carries numbers and booleans as text."""
    return str(value).lower() == str(expected).lower()


# --- sessions and their state ---------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    sid: str
    call_sid: str  # the caller's leg
    caller: str
    conference_sid: str | None = None


def incoming(stack: Stack, account: Account) -> Session:
    """A customer calls in through the emulator; returns once the caller is in the call."""
    caller = random_number()
    call = stack.incoming_call(caller, account.number)
    session = Session(call["conferenceName"], call["callSid"], caller, call["conferenceSid"])
    wait_member(stack, account.key, session.sid, caller, "Connected")
    return session


def signed_post(stack: Stack, path: str, params: dict[str, str], client=None) -> httpx.Response:
    url = stack.base_url + path
    signature = RequestValidator(stack.auth_token).compute_signature(url, params)
    response = (client or httpx).post(
        url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10
    )
    assert response.status_code in (200, 204), response.text
    return response


def voice_session(stack: Stack, number: str, client=None) -> Session:
    """A session as Twilio's voice webhook creates it, with no leg at the emulator: nothing
    moves it but the requests a test makes."""
    call_sid, caller = "CA" + secrets.token_hex(16), random_number()
    params = {"CallSid": call_sid, "From": caller, "To": number, "CallStatus": "ringing"}
    twiml = signed_post(stack, "/twilio/voice", params, client).text
    found = re.search(r">(ses_\w+)</Conference>", twiml)
    assert found, twiml
    return Session(found.group(1), call_sid, caller)


def get(stack: Stack, key: str, sid: str) -> dict[str, Any]:
    with stack.client(key) as c:
        response = c.get(f"/sessions/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def member(session: dict[str, Any], identity: str) -> dict[str, Any] | None:
    found = [m for m in session["members"] if m["identity"] == identity]
    return found[-1] if found else None


def identities(session: dict[str, Any]) -> list[str]:
    return [m["identity"] for m in session["members"]]


def messages(session: dict[str, Any]) -> list[str]:
    return [entry["message"] for entry in session["log"]]


def wait_member(
    stack: Stack, key: str, sid: str, identity: str, state: str, timeout: float = 10
) -> dict[str, Any]:
    def ready():
        found = member(get(stack, key, sid), identity)
        return found if found and found["callState"] == state else None

    return wait_until(ready, timeout, f"{identity} to be {state} in {sid}")


def wait_final(stack: Stack, key: str, sid: str, identity: str) -> dict[str, Any]:
    """The member has ended for good (not merely not yet dialled)."""

    def final():
        if stack.redis.hget(keys.session_active(sid), identity):
            return None
        return member(get(stack, key, sid), identity)

    found = wait_until(final, 10, f"{identity} to end in {sid}")
    assert found["callState"] == "None"
    return found


def snapshot(stack: Stack, sid: str) -> tuple:
    """A session's stored state: its hash, log and every member's hash."""
    r = stack.redis
    key = keys.session(sid)
    mids = r.lrange(f"{key}:members", 0, -1)
    members = [r.hgetall(f"{key}:member:{mid}") for mid in mids]
    return r.hgetall(key), r.lrange(f"{key}:log", 0, -1), members


def invite(stack: Stack, key: str, sid: str, target: str, **extra: str) -> dict[str, Any]:
    with stack.client(key) as c:
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": target, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def emulator_call(stack: Stack, call_sid: str) -> dict[str, Any]:
    response = stack.emulator(f"calls/{call_sid}")
    assert response.status_code == 200, response.text
    return response.json()


def valid_fields(name: str, session: Session, account: Account) -> dict[str, Any]:
    """A request that succeeds for the session's owner."""
    sid = session.sid
    return {
        "InviteChatMember": {"sessionId": sid, "memberToAdd": random_number()},
        "GetSession": {"sessionId": sid},
        "AddConferenceMember": {"sessionId": sid, "destination": random_number()},
        "DeleteChatMember": {"sessionId": sid, "memberToRemove": session.caller},
        "UpdateConferenceMember": {"sessionId": sid, "callSid": session.call_sid, "muted": True},
        "HoldSession": {"sessionId": sid, "reason": "Transferring"},
        "PatchSession": {"sessionId": sid, "consoleData": "notes", "queueState": "Queued"},
        "RedirectSession": {"sessionId": sid, "destination": random_number()},
        "EndSession": {"sessionId": sid},
        "GetActiveSessions": {},
        "ListSessions": {"countPerPage": 10},
    }[name]


# --- fixtures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Team:
    """An account with two users, each with a key made by `keys create --user`, and a key
    with no user."""

    account: Account
    key_id: str  # the id of account.key, the key with no user
    ada_id: str
    ada_key: str
    bob_id: str
    bob_key: str


@pytest.fixture(scope="module")
def team(stack: Stack) -> Team:
    r = redis.Redis.from_url(stack.redis_url)
    aid = provision.create_account(r, "Team Co")
    number = provision.add_number(r, random_number(), aid)
    ada_email = f"ada-{secrets.token_hex(3)}@example.com"
    ada = provision.add_user(r, ada_email, aid, name="Ada Agent")
    bob_email = f"bob-{secrets.token_hex(3)}@example.com"
    bob = provision.add_user(r, bob_email, aid, name="Bob Builder")
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    user_keys = []
    for user in (ada, bob_email.upper()):  # by id, and by email in any case
        made = cli("keys", "create", "--account", aid, "--role", "User", "--user", user, env=env)
        assert made.returncode == 0, made.stderr
        user_keys.append(made.stdout.strip())
    plain = provision.create_key(r, aid, ["User"])
    key_id = r.hget(keys.api_key(apikeys.digest(plain)), "id").decode()
    account = Account(aid, number, plain, ada, ada_email)
    for user_key in user_keys:  # an invite of a user rings a registered softphone
        stack.softphone(user_key)
    return Team(account, key_id, ada, user_keys[0], bob, user_keys[1])


@pytest.fixture(scope="module")
def stranger(stack: Stack) -> str:
    """A User key of another account."""
    return new_account(stack.redis_url, "Stranger Co").key


# --- the metadata agrees with the table above ------------------------------------------------


def test_every_operation_is_served_where_the_seed_documents_it(stack: Stack) -> None:
    paths = net.get(f"{stack.base_url}/openapi.json").json()["paths"]
    for op in OPS.values():
        assert paths[op.path][op.verb.lower()]["operationId"] == op.name
        responses = paths[op.path][op.verb.lower()]["responses"]
        assert ("204" in responses) is op.void and ("200" in responses) is not op.void
        for prefix in ("/api", "/json/reply", "/jsv/reply"):
            assert set(paths[f"{prefix}/{op.name}"]) == {op.verb.lower()}


def test_real_answers_of_every_operation_match_the_openapi_document(
    stack: Stack, account: Account
) -> None:
    """Each operation, called as the document describes it on a real call, answers as the
    document says (status, content type, body schema)."""
    document = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    s = incoming(stack, account)
    target, other, destination = random_number(), random_number(), random_number()
    headers = {"Authorization": f"Bearer {account.key}"}

    def call(name: str, path: dict | None = None, **kwargs: Any) -> Any:
        op = OPS[name]
        case = document[op.path][op.verb].Case(path_parameters=path or {}, **kwargs)
        response = case.call_and_validate(headers=headers)
        assert response.status_code == (204 if op.void else 200), response.text
        return None if op.void else response.json()

    in_path = {"sessionId": s.sid}
    body = {"media_type": "application/json"}
    call("InviteChatMember", in_path, body={"memberToAdd": target}, **body)
    call("GetSession", in_path)
    call("AddConferenceMember", in_path, body={"destination": other}, **body)
    call("UpdateConferenceMember", {**in_path, "callSid": s.call_sid}, body={"muted": True}, **body)
    call("DeleteChatMember", {**in_path, "memberId": other})
    call("HoldSession", in_path, body={"reason": "Transferring"}, **body)
    call("PatchSession", in_path, body={"callState": "Connected", "consoleData": "ok"}, **body)
    assert [x["id"] for x in call("GetActiveSessions")["sessions"]] == [s.sid]
    assert call("ListSessions", query={"countPerPage": 1})["totalCount"] == 1
    call("RedirectSession", in_path, body={"destination": destination}, **body)
    call("EndSession", in_path, query={"callSid": s.call_sid})
    assert get(stack, account.key, s.sid)["ended"] is True


# --- every operation, every route, every format ---------------------------------------------

NOTES = 'Wants a refund: order #12, "urgent" {vip} [tier 2]\r\nCall back after 5 '


def _case(
    stack: Stack, account: Account, name: str
) -> tuple[dict[str, Any], Callable[[Any], None]]:
    """Fields for `name` on a fresh call, and a check of its answer and of its effect."""
    s = incoming(stack, account)
    sid, key = s.sid, account.key

    def check_get(body):
        assert body["id"] == sid and body["fromAddress"] == s.caller

    if name == "GetSession":
        return {"sessionId": sid}, check_get
    if name in ("InviteChatMember", "AddConferenceMember"):
        target = random_number()

        def check_added(body):
            assert body["id"] == sid and target in identities(body)
            assert member(body, target)["role"] == "Transfer"
            wait_member(stack, key, sid, target, "Connected")

        if name == "InviteChatMember":
            fields = {"sessionId": sid, "memberToAdd": target, "callerId": account.number}
        else:
            fields = {
                "sessionId": sid,
                "callSid": s.call_sid,
                "destination": target,
                "fromNumber": account.number,
            }
        return fields, check_added
    if name == "DeleteChatMember":
        target = random_number()
        invite(stack, key, sid, target)

        def check_removed(body):
            assert f"{target} was removed" in messages(body)
            wait_final(stack, key, sid, target)

        return {"sessionId": sid, "memberToRemove": target}, check_removed
    if name == "UpdateConferenceMember":

        def check_muted(body):
            assert f"Mute requested for {s.caller}" in messages(body)
            wait_until(
                lambda: member(get(stack, key, sid), s.caller)["muted"] is True,
                what="the caller muted at Twilio",
            )

        return {"sessionId": sid, "callSid": s.call_sid, "muted": True}, check_muted
    if name == "HoldSession":

        def check_held(body):
            assert body["callState"] == "Hold" and body["holdReason"] == "Transferring"
            wait_member(stack, key, sid, s.caller, "Hold")

        return {"sessionId": sid, "reason": "Transferring"}, check_held
    if name == "PatchSession":

        def check_patched(body):
            for session in (body, get(stack, key, sid)):
                assert session["consoleData"] == NOTES
                assert session["queueState"] == "Queued"

        return {"sessionId": sid, "consoleData": NOTES, "queueState": "Queued"}, check_patched
    if name == "RedirectSession":
        target = random_number()

        def check_redirected(body):
            assert body is None
            assert get(stack, key, sid)["destination"] == target
            wait_member(stack, key, sid, target, "Connected")

        return {"sessionId": sid, "destination": target, "callerId": account.number}, (
            check_redirected
        )
    if name == "EndSession":

        def check_ended(body):
            assert body is None
            session = get(stack, key, sid)
            assert session["ended"] is True and session["callState"] == "Disconnected"
            wait_until(
                lambda: emulator_call(stack, s.call_sid)["status"] == "completed",
                what="the caller's leg hung up",
            )

        return {"sessionId": sid, "callSid": s.call_sid}, check_ended
    if name == "GetActiveSessions":

        def check_active(body):
            assert [x["id"] for x in body["sessions"]] == [sid]

        return {}, check_active
    assert name == "ListSessions"

    def check_listed(body):
        assert [x["id"] for x in body["items"]] == [sid]
        assert same(body["totalCount"], 1) and same(body["totalPages"], 1)
        assert same(body["hasMorePages"], False)

    return {"countPerPage": 5, "sortOrder": "Descend"}, check_listed


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("name", list(OPS))
def test_every_operation_on_every_route_and_format(
    stack: Stack, account: Account, name: str, transport: str
) -> None:
    op = OPS[name]
    fields, check = _case(stack, account, name)
    response = send(stack, account.key, op, fields, transport)
    assert_clean(response)
    if op.void:
        assert response.status_code == 204, response.text
        assert response.content == b""
        check(None)
    else:
        assert response.status_code == 200, response.text
        check(decoded(response, TRANSPORTS[transport][3]))


def test_delete_takes_the_member_from_the_query_string_or_the_path(
    stack: Stack, account: Account
) -> None:
    s = voice_session(stack, account.number)
    first, second = random_number(), random_number()
    for target in (first, second):
        invite(stack, account.key, s.sid, target)
    with stack.client(account.key) as c:
        # memberToRemove (the DTO's field) names the member; the path's memberId serves too.
        by_query = c.delete(f"/sessions/{s.sid}/members/ignored", params={"memberToRemove": first})
        by_path = c.delete(f"/sessions/{s.sid}/members/{quote(second, safe='')}")
    assert by_query.status_code == 200 and by_path.status_code == 200
    log = messages(by_path.json())
    assert f"{first} was removed" in log and f"{second} was removed" in log


def test_member_is_found_by_member_id_and_by_call_sid(stack: Stack, account: Account) -> None:
    s = incoming(stack, account)
    by_sid, by_id = random_number(), random_number()
    for target in (by_sid, by_id):
        invite(stack, account.key, s.sid, target)
    leg = wait_member(stack, account.key, s.sid, by_sid, "Connected")["callSid"]
    mid = stack.redis.hget(keys.session_active(s.sid), by_id)
    with stack.client(account.key) as c:
        assert c.delete(f"/sessions/{s.sid}/members/{leg}").status_code == 200
        assert c.delete(f"/sessions/{s.sid}/members/{mid}").status_code == 200
    for target in (by_sid, by_id):
        wait_final(stack, account.key, s.sid, target)
    assert emulator_call(stack, leg)["status"] == "completed"


# --- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OPS))
def test_no_key_or_a_bad_key_is_401_with_a_challenge(
    stack: Stack, account: Account, name: str
) -> None:
    s = voice_session(stack, account.number)
    before = snapshot(stack, s.sid)
    fields = valid_fields(name, s, account)
    attempts = [
        (None, {}),
        ("ok_not-a-real-key", {}),
        (None, {"Authorization": "Bearer"}),
        (None, {"Authorization": "Basic !!not-base64"}),
        (None, {"Authorization": "Token " + account.key}),
    ]
    for key, headers in attempts:
        response = send(stack, key, OPS[name], fields, headers=headers)
        assert response.status_code == 401, (key, headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert status_of(response)["errorCode"] == "Unauthorized"
    jsv_denied = send(stack, None, OPS[name], fields, "jsv-reply-form-body")
    assert jsv_denied.status_code == 401
    assert status_of(jsv_denied, "jsv")["errorCode"] == "Unauthorized"
    assert snapshot(stack, s.sid) == before


@pytest.mark.parametrize("name", list(OPS))
def test_a_key_without_role_user_is_403(stack: Stack, account: Account, name: str) -> None:
    s = voice_session(stack, account.number)
    before = snapshot(stack, s.sid)
    reporting = provision.create_key(
        redis.Redis.from_url(stack.redis_url), account.id, ["Reporting"]
    )
    response = send(stack, reporting, OPS[name], valid_fields(name, s, account))
    assert response.status_code == 403, response.text
    status = status_of(response)
    assert status["errorCode"] == "Forbidden" and status["message"] == "Invalid Role"
    assert snapshot(stack, s.sid) == before


@pytest.mark.parametrize("name", SESSION_OPS)
def test_another_accounts_session_is_404_and_untouched(
    stack: Stack, account: Account, stranger: str, name: str
) -> None:
    s = voice_session(stack, account.number)
    before = snapshot(stack, s.sid)
    fields = valid_fields(name, s, account)
    for transport in ("route-json", "api-json"):
        response = send(stack, stranger, OPS[name], fields, transport)
        assert response.status_code == 404, response.text
        status = status_of(response)
        assert status["errorCode"] == "NotFound" and s.sid in status["message"]
    assert snapshot(stack, s.sid) == before
    # The very same request is fine for the session's own account.
    assert send(stack, account.key, OPS[name], fields).status_code in (200, 204)


def test_unknown_members_are_404(stack: Stack, account: Account) -> None:
    s = voice_session(stack, account.number)
    elsewhere = voice_session(stack, account.number)  # a leg, but of another session
    before = snapshot(stack, s.sid)
    unknown_leg = "CA" + secrets.token_hex(16)
    cases = [
        ("DeleteChatMember", {"sessionId": s.sid, "memberToRemove": "+14155550199"}),
        ("DeleteChatMember", {"sessionId": s.sid, "memberToRemove": elsewhere.call_sid}),
        ("DeleteChatMember", {"sessionId": s.sid, "memberToRemove": "nobody@example.com"}),
        ("UpdateConferenceMember", {"sessionId": s.sid, "callSid": unknown_leg, "hold": True}),
        ("UpdateConferenceMember", {"sessionId": s.sid, "callSid": elsewhere.call_sid}),
        ("HoldSession", {"sessionId": s.sid, "callSid": unknown_leg}),
        ("HoldSession", {"sessionId": s.sid, "callSid": elsewhere.call_sid}),
    ]
    for name, fields in cases:
        for transport in ("route-json", "jsv-reply-form-body"):
            response = send(stack, account.key, OPS[name], fields, transport)
            assert response.status_code == 404, (name, fields, response.text)
            fmt = TRANSPORTS[transport][3]
            assert status_of(response, fmt)["errorCode"] == "NotFound"
    assert snapshot(stack, s.sid) == before
    assert get(stack, account.key, s.sid)["callState"] == "Ringing"  # nobody was held


# --- bad input --------------------------------------------------------------------------------

TOO_LONG = "x" * (16 * 1024 + 1)
BAD_INPUT = [
    ("InviteChatMember", {"memberToAdd": "hello"}, {("MemberToAdd", "InvalidPhoneNumber")}),
    ("InviteChatMember", {"memberToAdd": ""}, {("MemberToAdd", "NotEmpty")}),
    (
        "InviteChatMember",
        {"memberToAdd": "hello", "callerId": "nope"},
        {("MemberToAdd", "InvalidPhoneNumber"), ("CallerId", "InvalidPhoneNumber")},
    ),
    (
        "AddConferenceMember",
        {"destination": "12", "fromNumber": "abc"},
        {("Destination", "InvalidPhoneNumber"), ("FromNumber", "InvalidPhoneNumber")},
    ),
    (
        "RedirectSession",
        {"destination": "call me", "callerId": "+1 555"},
        {("Destination", "InvalidPhoneNumber"), ("CallerId", "InvalidPhoneNumber")},
    ),
    ("RedirectSession", {"destination": ""}, {("Destination", "NotEmpty")}),
    ("HoldSession", {"reason": "Nope"}, {("Reason", "InvalidValue")}),
    ("PatchSession", {"callState": "Ringing"}, {("CallState", "InvalidValue")}),
    ("PatchSession", {"callState": "Nope"}, {("CallState", "InvalidValue")}),
    (
        "PatchSession",
        {"holdReason": "Nope", "queueState": "Nope"},
        {("HoldReason", "InvalidValue"), ("QueueState", "InvalidValue")},
    ),
    ("PatchSession", {"consoleData": TOO_LONG}, {("ConsoleData", "MaxLength")}),
    ("PatchSession", {"consoleData": "é" * 8193}, {("ConsoleData", "MaxLength")}),  # bytes
    (
        "PatchSession",
        {"callState": "Disconnected", "consoleData": TOO_LONG},
        {("CallState", "InvalidValue"), ("ConsoleData", "MaxLength")},
    ),
    ("UpdateConferenceMember", {"hold": "maybe"}, {("Hold", "InvalidValue")}),
    (
        "UpdateConferenceMember",
        {"hold": "maybe", "muted": "perhaps"},
        {("Hold", "InvalidValue"), ("Muted", "InvalidValue")},
    ),
    ("ListSessions", {"countPerPage": 0}, {("CountPerPage", "InvalidValue")}),
    ("ListSessions", {"countPerPage": 201}, {("CountPerPage", "InvalidValue")}),
    ("ListSessions", {"page": -1}, {("Page", "InvalidValue")}),
    ("ListSessions", {"page": "99999999999999999999"}, {("Page", "InvalidValue")}),
    ("ListSessions", {"page": "two"}, {("Page", "InvalidValue")}),
    ("ListSessions", {"startDate": "yesterday"}, {("StartDate", "InvalidDate")}),
    ("ListSessions", {"endDate": "2024-13-45T10:00:00Z"}, {("EndDate", "InvalidDate")}),
    ("ListSessions", {"sortOrder": "Sideways"}, {("SortOrder", "InvalidValue")}),
    (
        "ListSessions",
        {"countPerPage": 0, "page": -1, "startDate": "soon", "endDate": "later"},
        {
            ("CountPerPage", "InvalidValue"),
            ("Page", "InvalidValue"),
            ("StartDate", "InvalidDate"),
            ("EndDate", "InvalidDate"),
        },
    ),
]


@pytest.mark.parametrize("transport", ["route-json", "jsv-reply-form-body"])
@pytest.mark.parametrize(
    ("name", "bad", "expected"),
    BAD_INPUT,
    ids=[f"{name}-{'-'.join(bad)}" for name, bad, _ in BAD_INPUT],
)
def test_bad_input_is_400_naming_each_bad_field(
    stack: Stack,
    account: Account,
    name: str,
    bad: dict[str, Any],
    expected: set,
    transport: str,
) -> None:
    s = voice_session(stack, account.number)
    before = snapshot(stack, s.sid)
    fields = {**valid_fields(name, s, account), **bad}
    response = send(stack, account.key, OPS[name], fields, transport)
    assert response.status_code == 400, response.text
    assert field_errors(response, TRANSPORTS[transport][3]) == expected
    assert snapshot(stack, s.sid) == before


@pytest.mark.parametrize("name", SESSION_OPS)
def test_an_empty_session_id_is_400(stack: Stack, account: Account, name: str) -> None:
    s = voice_session(stack, account.number)
    before = snapshot(stack, s.sid)
    for blank in ("", "   "):
        fields = {**valid_fields(name, s, account), "sessionId": blank}
        response = send(stack, account.key, OPS[name], fields, "api-json")
        assert response.status_code == 400, response.text
        assert field_errors(response) == {("SessionId", "NotEmpty")}
    missing = {k: v for k, v in valid_fields(name, s, account).items() if k != "sessionId"}
    response = send(stack, account.key, OPS[name], missing, "jsv-reply-form-body")
    assert response.status_code == 400
    assert field_errors(response, "jsv") == {("SessionId", "NotEmpty")}
    assert snapshot(stack, s.sid) == before


def test_every_missing_field_is_reported_at_once(stack: Stack, account: Account) -> None:
    s = voice_session(stack, account.number)
    before = snapshot(stack, s.sid)
    cases = [
        ("DeleteChatMember", {}, {("SessionId", "NotEmpty"), ("MemberToRemove", "NotEmpty")}),
        (
            "UpdateConferenceMember",
            {"muted": "perhaps"},
            {("Muted", "InvalidValue")},  # a value of the wrong type is refused first
        ),
        ("UpdateConferenceMember", {}, {("SessionId", "NotEmpty"), ("CallSid", "NotEmpty")}),
        ("InviteChatMember", {}, {("SessionId", "NotEmpty"), ("MemberToAdd", "NotEmpty")}),
        (
            "RedirectSession",
            {"callerId": "nope"},
            {
                ("SessionId", "NotEmpty"),
                ("Destination", "NotEmpty"),
                ("CallerId", "InvalidPhoneNumber"),
            },
        ),
    ]
    for name, fields, expected in cases:
        for transport in ("api-json", "jsv-reply-form-body"):
            response = send(stack, account.key, OPS[name], fields, transport)
            assert response.status_code == 400, response.text
            assert field_errors(response, TRANSPORTS[transport][3]) == expected, name
    assert snapshot(stack, s.sid) == before


def test_console_data_of_exactly_16_kib_is_kept(stack: Stack, account: Account) -> None:
    s = voice_session(stack, account.number)
    notes = "n" * (16 * 1024 - 2) + "é"  # 16384 bytes
    response = send(
        stack, account.key, OPS["PatchSession"], {"sessionId": s.sid, "consoleData": notes}
    )
    assert response.status_code == 200, response.text
    assert get(stack, account.key, s.sid)["consoleData"] == notes


# --- ended sessions -------------------------------------------------------------------------


@pytest.fixture
def ended(stack: Stack, account: Account) -> Session:
    """A session the API has ended."""
    s = voice_session(stack, account.number)
    response = send(stack, account.key, OPS["EndSession"], {"sessionId": s.sid})
    assert response.status_code == 204
    assert get(stack, account.key, s.sid)["ended"] is True
    return s


LIVE_CALL_CHANGES = [
    ("InviteChatMember", {}),
    ("AddConferenceMember", {}),
    ("DeleteChatMember", {}),
    ("UpdateConferenceMember", {}),
    ("HoldSession", {}),
    ("PatchSession", {"callState": "Connected", "consoleData": None, "queueState": None}),
    ("PatchSession", {"callState": "Hold", "consoleData": None, "queueState": None}),
    ("PatchSession", {"holdReason": "Transferring", "consoleData": None, "queueState": None}),
    ("RedirectSession", {}),
]


@pytest.mark.parametrize(
    ("name", "extra"),
    LIVE_CALL_CHANGES,
    ids=[n + "".join(f"-{k}={v}" for k, v in e.items() if v) for n, e in LIVE_CALL_CHANGES],
)
def test_changing_the_call_of_an_ended_session_is_409(
    stack: Stack, account: Account, ended: Session, name: str, extra: dict
) -> None:
    before = snapshot(stack, ended.sid)
    fields = {**valid_fields(name, ended, account), **extra}
    for transport in ("route-json", "jsv-reply-form-body"):
        response = send(stack, account.key, OPS[name], fields, transport)
        assert response.status_code == 409, (transport, response.text)
        status = status_of(response, TRANSPORTS[transport][3])
        assert status["errorCode"] == "Conflict" and ended.sid in status["message"]
    assert snapshot(stack, ended.sid) == before


def test_ending_an_ended_session_is_204_and_changes_nothing(
    stack: Stack, account: Account, ended: Session
) -> None:
    before = snapshot(stack, ended.sid)
    for transport in ("route-json", "api-json", "jsv-reply-form-body"):
        response = send(stack, account.key, OPS["EndSession"], {"sessionId": ended.sid}, transport)
        assert response.status_code == 204 and response.content == b""
    assert snapshot(stack, ended.sid) == before
    assert messages(get(stack, account.key, ended.sid)).count("The call was ended") == 1


def test_wrap_up_notes_may_be_written_on_an_ended_session(
    stack: Stack, account: Account, ended: Session
) -> None:
    """Documented decision: consoleData and queueState are notes, not the call, so an agent
    can still write them after the call (wrap-up); they answer 200, the session stays ended."""
    patch = OPS["PatchSession"]
    notes = send(stack, account.key, patch, {"sessionId": ended.sid, "consoleData": "wrap-up"})
    queue = send(stack, account.key, patch, {"sessionId": ended.sid, "queueState": "Disconnected"})
    assert notes.status_code == 200 and queue.status_code == 200, (notes.text, queue.text)
    session = get(stack, account.key, ended.sid)
    assert session["consoleData"] == "wrap-up" and session["queueState"] == "Disconnected"
    assert session["ended"] is True and session["callState"] == "Disconnected"
    assert get(stack, account.key, ended.sid)["outcome"] == f"Ended by {_key_id(stack, account)}"


def _key_id(stack: Stack, account: Account) -> str:
    return stack.redis.hget(keys.api_key(apikeys.digest(account.key)), "id")


# --- repeats ----------------------------------------------------------------------------------


def test_inviting_the_same_number_twice_dials_once(stack: Stack, account: Account) -> None:
    s = incoming(stack, account)
    target = random_number()
    first = invite(stack, account.key, s.sid, target)
    again = invite(stack, account.key, s.sid, target)
    also = send(
        stack, account.key, OPS["AddConferenceMember"], {"sessionId": s.sid, "destination": target}
    )
    assert also.status_code == 200
    for session in (first, again, also.json()):
        assert identities(session).count(target) == 1
    wait_member(stack, account.key, s.sid, target, "Connected")
    again_connected = invite(stack, account.key, s.sid, target)
    assert identities(again_connected).count(target) == 1
    mid = stack.redis.hget(keys.session_active(s.sid), target)
    # Its one dial job has run to its end and no other waits: no second dial can come.
    r = redis.Redis.from_url(stack.redis_url)
    wait_until(lambda: queues.job_over(r, jobs.job_id(mid)), 10, f"the dial job of {mid} to end")
    assert stack.creates(mid) == 1
    session = get(stack, account.key, s.sid)
    assert messages(session).count(f"Invited {target}") == 1
    assert sum(1 for m in messages(session) if m.startswith(f"Dialled {target}")) == 1


def test_removing_a_removed_or_final_member_changes_nothing(stack: Stack, account: Account) -> None:
    s = incoming(stack, account)
    connected, busy = random_number(), "+14155550001"
    invite(stack, account.key, s.sid, connected)
    invite(stack, account.key, s.sid, busy)
    wait_member(stack, account.key, s.sid, connected, "Connected")
    remove = OPS["DeleteChatMember"]
    fields = {"sessionId": s.sid, "memberToRemove": connected}
    assert send(stack, account.key, remove, fields).status_code == 200
    again = send(stack, account.key, remove, fields)  # removed, maybe not yet gone at Twilio
    assert again.status_code == 200
    assert messages(again.json()).count(f"{connected} was removed") == 1
    wait_final(stack, account.key, s.sid, connected)
    wait_final(stack, account.key, s.sid, busy)
    before = snapshot(stack, s.sid)
    for target in (connected, busy):
        response = send(stack, account.key, remove, {"sessionId": s.sid, "memberToRemove": target})
        assert response.status_code == 200, response.text
        assert member(response.json(), target)["callState"] == "None"
    assert snapshot(stack, s.sid) == before
    log = messages(get(stack, account.key, s.sid))
    assert log.count(f"{connected} was removed") == 1 and f"{busy} was removed" not in log


def test_holding_a_held_session_changes_nothing(stack: Stack, team: Team) -> None:
    account = team.account
    s = incoming(stack, account)
    hold = OPS["HoldSession"]
    first = send(stack, team.ada_key, hold, {"sessionId": s.sid})
    assert first.status_code == 200 and first.json()["heldByUserId"] == team.ada_id
    wait_member(stack, account.key, s.sid, s.caller, "Hold")
    before = snapshot(stack, s.sid)
    for key, reason in ((team.bob_key, "Transferring"), (team.ada_key, None)):
        again = send(stack, key, hold, {"sessionId": s.sid, "reason": reason})
        assert again.status_code == 200
        assert again.json()["heldByUserId"] == team.ada_id
        assert again.json()["holdReason"] == "None"
    assert snapshot(stack, s.sid) == before
    session = get(stack, account.key, s.sid)
    assert messages(session).count("Ada Agent put the call on hold") == 1
    assert session["lastModifiedBy"] == team.ada_id


def test_ending_twice_ends_once(stack: Stack, team: Team) -> None:
    s = incoming(stack, team.account)
    end = OPS["EndSession"]
    assert send(stack, team.ada_key, end, {"sessionId": s.sid}).status_code == 204
    assert send(stack, team.bob_key, end, {"sessionId": s.sid}).status_code == 204
    session = get(stack, team.account.key, s.sid)
    assert session["outcome"] == "Ended by Ada Agent"
    assert session["lastModifiedBy"] == team.ada_id
    log = messages(session)
    assert log.count("Ada Agent ended the call") == 1 and "Bob Builder ended the call" not in log


# --- the user behind a key -------------------------------------------------------------------


def test_what_a_users_key_does_that_user_does(stack: Stack, team: Team) -> None:
    account = team.account
    s = incoming(stack, account)
    assert get(stack, account.key, s.sid)["createdBy"] is None  # Twilio made it, not the API
    target = random_number()
    invited = invite(stack, team.ada_key, s.sid, target)
    assert f"Ada Agent invited {target}" in messages(invited)
    assert invited["createdBy"] == invited["lastModifiedBy"] == team.ada_id
    wait_member(stack, account.key, s.sid, target, "Connected")

    held = send(stack, team.ada_key, OPS["HoldSession"], {"sessionId": s.sid})
    assert held.status_code == 200
    assert held.json()["heldByUserId"] == team.ada_id
    assert "Ada Agent put the call on hold" in messages(held.json())

    resumed = send(
        stack, team.bob_key, OPS["PatchSession"], {"sessionId": s.sid, "callState": "Connected"}
    )
    assert resumed.status_code == 200
    assert "Bob Builder took the call off hold" in messages(resumed.json())
    assert resumed.json()["createdBy"] == team.ada_id
    assert resumed.json()["lastModifiedBy"] == team.bob_id

    noted = send(stack, account.key, OPS["PatchSession"], {"sessionId": s.sid, "consoleData": "x"})
    assert noted.json()["createdBy"] == team.ada_id
    assert noted.json()["lastModifiedBy"] == team.key_id

    removed = send(
        stack, team.bob_key, OPS["DeleteChatMember"], {"sessionId": s.sid, "memberToRemove": target}
    )
    assert f"Bob Builder removed {target}" in messages(removed.json())
    assert send(stack, team.ada_key, OPS["EndSession"], {"sessionId": s.sid}).status_code == 204
    session = get(stack, account.key, s.sid)
    assert session["outcome"] == "Ended by Ada Agent"
    assert session["createdBy"] == team.ada_id and session["lastModifiedBy"] == team.ada_id
    assert "Ada Agent ended the call" in messages(session)


def test_a_key_with_no_user_is_named_by_its_id(stack: Stack, team: Team) -> None:
    account = team.account
    s = incoming(stack, account)
    held = send(stack, account.key, OPS["HoldSession"], {"sessionId": s.sid, "reason": "None"})
    assert held.json()["heldByUserId"] == team.key_id
    assert "The call was put on hold" in messages(held.json())
    assert held.json()["createdBy"] == team.key_id
    assert send(stack, account.key, OPS["EndSession"], {"sessionId": s.sid}).status_code == 204
    session = get(stack, account.key, s.sid)
    assert session["outcome"] == f"Ended by {team.key_id}"
    assert "The call was ended" in messages(session)


# --- SessionInfo's own fields ---------------------------------------------------------------


def test_call_state_is_ringing_until_the_conference_starts(stack: Stack, account: Account) -> None:
    s = voice_session(stack, account.number)
    session = get(stack, account.key, s.sid)
    assert session["callState"] == "Ringing" and session["dialState"] == "Active"
    assert session["ended"] is False and session["dateCompleted"] is None
    assert session["outcome"] is None and session["wasMissed"] is False
    conference = "CF" + secrets.token_hex(16)
    event = {
        "ConferenceSid": conference,
        "FriendlyName": s.sid,
        "StatusCallbackEvent": "conference-start",
        "SequenceNumber": "0",
    }
    signed_post(stack, "/twilio/conference-status", event)
    session = get(stack, account.key, s.sid)
    assert session["callState"] == "Connected" and session["conferenceSid"] == conference
    assert messages(session)[-1] == "Conference started"


def test_session_fields_through_a_calls_life(stack: Stack, team: Team) -> None:
    account = team.account
    s = incoming(stack, account)
    key = account.key
    # The conference's start is its own callback, which may come just after the join's.
    wait_until(lambda: get(stack, key, s.sid)["callState"] == "Connected", what="started")

    phone = random_number()  # a Transfer member: not an answering agent
    invite(stack, key, s.sid, phone)
    wait_member(stack, key, s.sid, phone, "Connected")
    session = get(stack, key, s.sid)
    assert session["answeredById"] is None and session["answeredByName"] is None

    invite(stack, key, s.sid, account.user_email.upper())  # Ada, found by her email
    ada = wait_member(stack, key, s.sid, team.ada_id, "Connected")
    assert ada["role"] == "Agent"
    invite(stack, key, s.sid, team.bob_id)
    wait_member(stack, key, s.sid, team.bob_id, "Connected")
    session = get(stack, key, s.sid)
    assert session["answeredById"] == team.ada_id and session["answeredByName"] == "Ada Agent"

    # Ada holds with her own key and no callSid: everyone but her is held.
    held = send(stack, team.ada_key, OPS["HoldSession"], {"sessionId": s.sid})
    assert held.json()["callState"] == "Hold"
    assert held.json()["holdReason"] == "None" and held.json()["heldByUserId"] == team.ada_id
    for identity in (s.caller, phone, team.bob_id):
        wait_member(stack, key, s.sid, identity, "Hold")
    assert member(get(stack, key, s.sid), team.ada_id)["callState"] == "Connected"

    transferring = send(
        stack, team.ada_key, OPS["PatchSession"], {"sessionId": s.sid, "holdReason": "Transferring"}
    )
    assert transferring.json()["holdReason"] == "Transferring"

    resumed = send(
        stack,
        team.ada_key,
        OPS["PatchSession"],
        {"sessionId": s.sid, "callState": "Connected", "queueState": "Connected"},
    )
    body = resumed.json()
    assert body["callState"] == "Connected" and body["queueState"] == "Connected"
    assert body["holdReason"] == "None" and body["heldByUserId"] is None
    for identity in (s.caller, phone, team.bob_id, team.ada_id):
        wait_member(stack, key, s.sid, identity, "Connected")

    send(stack, team.ada_key, OPS["PatchSession"], {"sessionId": s.sid, "consoleData": "first"})
    send(stack, team.ada_key, OPS["PatchSession"], {"sessionId": s.sid, "consoleData": "second"})
    assert get(stack, key, s.sid)["consoleData"] == "second"

    assert send(stack, team.ada_key, OPS["EndSession"], {"sessionId": s.sid}).status_code == 204
    session = get(stack, key, s.sid)
    assert session["callState"] == "Disconnected" and session["ended"] is True
    assert session["dialState"] == "None"
    assert session["dateCompleted"] >= session["dateCreated"]
    assert session["outcome"] == "Ended by Ada Agent" and session["wasMissed"] is False
    assert session["consoleData"] == "second" and session["queueState"] == "Connected"
    assert session["answeredById"] == team.ada_id
    for identity in (s.caller, phone, team.bob_id, team.ada_id):
        leg = wait_final(stack, key, s.sid, identity)["callSid"]
        wait_until(lambda leg=leg: emulator_call(stack, leg)["status"] == "completed", what=leg)


def test_outcome_is_completed_when_the_caller_hangs_up_after_an_agent_answered(
    stack: Stack, team: Team
) -> None:
    account = team.account
    s = incoming(stack, account)
    invite(stack, account.key, s.sid, team.ada_id)
    ada = wait_member(stack, account.key, s.sid, team.ada_id, "Connected")
    assert stack.emulator(f"calls/{s.call_sid}/hangup", "POST").status_code < 300
    session = wait_until(lambda: (x := get(stack, account.key, s.sid))["ended"] and x, what="end")
    assert session["outcome"] == "Completed" and session["wasMissed"] is False
    assert session["callState"] == "Disconnected" and session["dateCompleted"]
    wait_final(stack, account.key, s.sid, team.ada_id)
    wait_until(lambda: emulator_call(stack, ada["callSid"])["status"] == "completed", what="Ada")


def test_an_incoming_call_no_invited_member_answered_is_missed(
    stack: Stack, account: Account
) -> None:
    s = incoming(stack, account)
    invite(stack, account.key, s.sid, "+14155550001")  # busy
    wait_final(stack, account.key, s.sid, "+14155550001")
    assert stack.emulator(f"calls/{s.call_sid}/hangup", "POST").status_code < 300
    session = wait_until(lambda: (x := get(stack, account.key, s.sid))["ended"] and x, what="end")
    assert session["outcome"] == "Missed" and session["wasMissed"] is True
    assert session["answeredById"] is None


def test_destination_is_the_last_redirect_target(stack: Stack, account: Account) -> None:
    s = incoming(stack, account)
    redirect = OPS["RedirectSession"]
    assert get(stack, account.key, s.sid)["destination"] is None
    first, second = random_number(), random_number()
    for target in (first, second):
        response = send(stack, account.key, redirect, {"sessionId": s.sid, "destination": target})
        assert response.status_code == 204
        assert get(stack, account.key, s.sid)["destination"] == target
    wait_member(stack, account.key, s.sid, second, "Connected")
    wait_final(stack, account.key, s.sid, first)  # left for the second transfer
    session = get(stack, account.key, s.sid)
    assert session["destination"] == second and session["ended"] is False


# --- listing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crowd:
    key: str
    batch_a: list[str]  # created before `middle`
    batch_b: list[str]  # created after it
    middle: str  # ISO 8601, between the two batches
    other_key: str
    other: list[str]  # another account's sessions, created among them


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


@pytest.fixture(scope="module")
def crowd(stack: Stack) -> Crowd:
    """More than a thousand sessions in one account (signed voice webhooks, as Twilio
    sends them, many at once), another account's sessions among them; made once for the
    module."""
    r = redis.Redis.from_url(stack.redis_url)
    aid, other_aid = (provision.create_account(r, n) for n in ("Busy Co", "Quiet Co"))
    number = provision.add_number(r, random_number(), aid)
    other_number = provision.add_number(r, random_number(), other_aid)
    batches: list[list[str]] = [[], []]
    other: list[str] = []
    with net.client() as client, ThreadPoolExecutor(8) as pool:
        for batch, size in enumerate((600, 450)):
            if batch == 1:
                time.sleep(0.02)
                middle = _iso(time.time())
                time.sleep(0.02)
            for start in range(0, size, 50):
                count = min(50, size - start)
                made = pool.map(lambda _: voice_session(stack, number, client).sid, range(count))
                batches[batch] += list(made)
                other.append(voice_session(stack, other_number, client).sid)
    return Crowd(
        provision.create_key(r, aid, ["User"]),
        batches[0],
        batches[1],
        middle,
        provision.create_key(r, other_aid, ["User"]),
        other,
    )


def _list(stack: Stack, key: str, **params: Any) -> dict[str, Any]:
    response = send(stack, key, OPS["ListSessions"], params)
    assert response.status_code == 200, response.text
    return response.json()


def _pages(stack: Stack, key: str, **params: Any) -> tuple[list[dict], list[dict]]:
    """Every page of 200, in order, and their items joined."""
    pages, items, page = [], [], 0
    while True:
        body = _list(stack, key, countPerPage=200, page=page, **params)
        pages.append(body)
        items += body["items"]
        if not body["hasMorePages"]:
            return pages, items
        page += 1
        assert page < 20


def test_list_sessions_pages_through_more_than_a_thousand_newest_first(
    stack: Stack, crowd: Crowd
) -> None:
    everyone = crowd.batch_a + crowd.batch_b
    pages, items = _pages(stack, crowd.key)
    assert len(pages) == 6
    for n, body in enumerate(pages):
        assert body["totalCount"] == 1050 and body["totalPages"] == 6
        assert body["hasMorePages"] is (n < 5)
        assert len(body["items"]) == (200 if n < 5 else 50)
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids) == 1050
    assert set(ids) == set(everyone)  # and so none of another account's
    dates = [item["dateCreated"] for item in items]
    assert dates == sorted(dates, reverse=True)
    assert all(item["accountId"] == items[0]["accountId"] for item in items)

    beyond = _list(stack, crowd.key, countPerPage=200, page=6)
    assert beyond["items"] == [] and beyond["hasMorePages"] is False
    assert beyond["totalCount"] == 1050 and beyond["totalPages"] == 6

    default = _list(stack, crowd.key)  # countPerPage 20 by default
    assert [item["id"] for item in default["items"]] == ids[:20]
    assert default["totalPages"] == math.ceil(1050 / 20) and default["hasMorePages"] is True

    _, ascending = _pages(stack, crowd.key, sortOrder="Ascend")
    assert [item["id"] for item in ascending] == ids[::-1]


def test_list_sessions_filters_by_creation_date(stack: Stack, crowd: Crowd) -> None:
    later = _list(stack, crowd.key, startDate=crowd.middle, countPerPage=200, page=2)
    assert later["totalCount"] == len(crowd.batch_b) == 450
    assert later["totalPages"] == 3 and later["hasMorePages"] is False
    _, after = _pages(stack, crowd.key, startDate=crowd.middle)
    assert {item["id"] for item in after} == set(crowd.batch_b)
    _, before = _pages(stack, crowd.key, endDate=crowd.middle, sortOrder="Ascend")
    assert {item["id"] for item in before} == set(crowd.batch_a)
    dates = [item["dateCreated"] for item in before]
    assert dates == sorted(dates) and max(dates) < crowd.middle.replace("+00:00", "Z")
    # Any ISO 8601 form of the same instant, an offset included, and a window.
    offset = datetime.fromisoformat(crowd.middle).astimezone(timezone(timedelta(hours=-5)))
    offset = offset.isoformat()
    assert _list(stack, crowd.key, startDate=offset)["totalCount"] == 450
    zulu = crowd.middle.replace("+00:00", "Z")
    assert _list(stack, crowd.key, endDate=zulu)["totalCount"] == 600
    window = _list(stack, crowd.key, startDate=crowd.middle, endDate=crowd.middle)
    assert window["totalCount"] == 0 and window["items"] == [] and window["totalPages"] == 0
    assert _list(stack, crowd.key, startDate="2000-01-01")["totalCount"] == 1050
    assert _list(stack, crowd.key, endDate="2000-01-01")["totalCount"] == 0


def test_another_account_lists_only_its_own_and_active_excludes_the_ended(
    stack: Stack, crowd: Crowd
) -> None:
    listed = _list(stack, crowd.other_key, countPerPage=200)
    assert listed["totalCount"] == len(crowd.other) == 21
    assert [item["id"] for item in listed["items"]] == crowd.other[::-1]

    ended = crowd.other[3:8]
    for sid in ended:
        assert send(stack, crowd.other_key, OPS["EndSession"], {"sessionId": sid}).status_code
    # The busy account cannot end them: they are not its sessions.
    response = send(stack, crowd.key, OPS["EndSession"], {"sessionId": crowd.other[0]})
    assert response.status_code == 404
    active = send(stack, crowd.other_key, OPS["GetActiveSessions"], {})
    sessions = decoded(active)["sessions"]
    expected = [sid for sid in crowd.other[::-1] if sid not in ended]
    assert [x["id"] for x in sessions] == expected
    assert all(x["ended"] is False for x in sessions)
    dates = [x["dateCreated"] for x in sessions]
    assert dates == sorted(dates, reverse=True)
    # Ended sessions are still listed (kept for a week), as ended.
    listed = _list(stack, crowd.other_key, countPerPage=200)
    assert listed["totalCount"] == 21
    assert {x["id"] for x in listed["items"] if x["ended"]} == set(ended)
