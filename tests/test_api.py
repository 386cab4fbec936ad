"""The HTTP API against the running web process: auth, validation, errors."""

from __future__ import annotations

import redis

from orchestrator import keys, provision
from tests.support.accounts import Account, random_number
from tests.support.stack import Stack


def _session(stack: Stack, account: Account) -> str:
    return stack.incoming_call(random_number(), account.number)["conferenceName"]


def _status(response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert "responseStatus" in body, body
    return body["responseStatus"]


def test_no_key_is_401_with_challenge(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client() as c:
        response = c.get(f"/sessions/{sid}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert _status(response)["errorCode"] == "Unauthorized"


def test_unknown_key_is_401(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client("ok_not-a-real-key") as c:
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": "+14155550123"})
    assert response.status_code == 401
    assert stack.redis.llen(keys.session_members(sid)) == 1  # only the caller


def test_basic_auth_with_key_as_user_name(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client() as c:
        response = c.get(f"/sessions/{sid}", auth=(account.key, ""))
    assert response.status_code == 200
    assert response.json()["id"] == sid


def test_key_without_user_role_is_403(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    key = provision.create_key(redis.Redis.from_url(stack.redis_url), account.id, ["Reporting"])
    with stack.client(key) as c:
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": "+14155550123"})
    assert response.status_code == 403
    assert _status(response)["message"] == "Invalid Role"


def test_admin_passes_the_user_role_check(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    key = provision.create_key(redis.Redis.from_url(stack.redis_url), account.id, ["Admin"])
    with stack.client(key) as c:
        assert c.get(f"/sessions/{sid}").status_code == 200


def test_other_accounts_session_is_404(stack: Stack, account: Account) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    other = provision.create_account(r, "Other Co")
    other_key = provision.create_key(r, other, ["User"])
    sid = _session(stack, account)
    with stack.client(other_key) as c:
        assert c.get(f"/sessions/{sid}").status_code == 404
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": "+14155550123"})
    assert response.status_code == 404
    assert _status(response)["errorCode"] == "NotFound"
    assert stack.redis.llen(keys.session_members(sid)) == 1


def test_missing_session_is_404(stack: Stack, account: Account) -> None:
    with stack.client(account.key) as c:
        response = c.post("/sessions/ses_nope/members", json={"memberToAdd": "+14155550123"})
        assert response.status_code == 404
        assert "ses_nope" in _status(response)["message"]
        assert c.get("/sessions/ses_nope").status_code == 404


def test_missing_member_is_400_naming_the_field(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client(account.key) as c:
        response = c.post(f"/sessions/{sid}/members", json={})
    assert response.status_code == 400
    status = _status(response)
    assert status["errorCode"] == "NotEmpty"
    assert [(e["fieldName"], e["errorCode"]) for e in status["errors"]] == [
        ("MemberToAdd", "NotEmpty")
    ]


def test_bad_phone_number_is_400(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client(account.key) as c:
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": "hello"})
    assert response.status_code == 400
    errors = _status(response)["errors"]
    assert errors[0]["fieldName"] == "MemberToAdd"
    assert errors[0]["errorCode"] == "InvalidPhoneNumber"
    assert "Member To Add" in errors[0]["message"]
    assert stack.redis.llen(keys.session_members(sid)) == 1


def test_every_bad_field_is_reported(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client(account.key) as c:
        response = c.post(
            f"/sessions/{sid}/members", json={"memberToAdd": "", "callerId": "not a number"}
        )
    assert response.status_code == 400
    fields = {e["fieldName"]: e["errorCode"] for e in _status(response)["errors"]}
    assert fields == {"MemberToAdd": "NotEmpty", "CallerId": "InvalidPhoneNumber"}


def test_unknown_user_is_400(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client(account.key) as c:
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": "nobody@example.com"})
    assert response.status_code == 400
    assert _status(response)["errors"][0]["errorCode"] == "NotFound"


def test_malformed_bodies_are_400_not_500(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client(account.key) as c:
        for body in (b"{not json", b"[1, 2]", b'{"memberToAdd": ["+14155550123"]}', b"\xff\xfe"):
            response = c.post(
                f"/sessions/{sid}/members",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 400, (body, response.text)
            assert "Traceback" not in response.text


def test_unsupported_content_type_is_415(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client(account.key) as c:
        response = c.post(
            f"/sessions/{sid}/members", content=b"<x/>", headers={"Content-Type": "text/xml"}
        )
    assert response.status_code == 415
    assert _status(response)["errorCode"] == "UnsupportedMediaType"


def test_oversized_body_is_413(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client(account.key) as c:
        response = c.post(
            f"/sessions/{sid}/members",
            content=b'{"memberToAdd": "' + b"1" * 100_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413


def test_form_body_query_string_and_case_insensitive_names(stack: Stack, account: Account) -> None:
    sid = _session(stack, account)
    with stack.client(account.key) as c:
        form = c.post(f"/sessions/{sid}/members", data={"MEMBERTOADD": "(415) 555-0142"})
        query = c.post(f"/sessions/{sid}/members?memberToAdd=%2B14155550143")
        # The path names the session, whatever the body says.
        path_wins = c.post(
            f"/sessions/{sid}/members",
            json={"sessionId": "ses_elsewhere", "MemberToAdd": "+14155550144"},
        )
    for response in (form, query, path_wins):
        assert response.status_code == 200, response.text
        assert response.json()["id"] == sid
    identities = [m["identity"] for m in path_wins.json()["members"]]
    assert {"+14155550142", "+14155550143", "+14155550144"} <= set(identities)


def test_unknown_route_is_a_response_status(stack: Stack) -> None:
    response = httpx_get(stack, "/nothing/here")
    assert response.status_code == 404
    assert _status(response)["errorCode"] == "NotFound"


def httpx_get(stack: Stack, path: str):
    with stack.client() as c:
        return c.get(path)
