"""/openapi.json describes what is served: real sessions validate against it, and it
lists every route. The all-checks schemathesis run over every operation is
tests/test_schema.py."""

from __future__ import annotations

import pytest
import redis
import schemathesis

from orchestrator import apikeys, keys, provision
from tests.support import net
from tests.support.accounts import new_account, random_number
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def api_key(stack: Stack) -> str:
    return new_account(stack.redis_url, "Fuzz Co").key


@pytest.fixture
def api_schema(stack: Stack) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")


def test_real_sessions_match_the_document(stack: Stack, api_schema, api_key) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    account = r.hget(keys.api_key(apikeys.digest(api_key)), "accountId")
    number = random_number()
    provision.add_number(r, number, account.decode())
    sid = stack.incoming_call(random_number(), number)["conferenceName"]
    headers = {"Authorization": f"Bearer {api_key}"}
    invite = api_schema["/sessions/{sessionId}/members"]["POST"].Case(
        path_parameters={"sessionId": sid},
        body={"memberToAdd": random_number()},
        media_type="application/json",
    )
    response = invite.call_and_validate(headers=headers)
    assert response.status_code == 200
    get = api_schema["/sessions/{sessionId}"]["GET"].Case(path_parameters={"sessionId": sid})
    assert get.call_and_validate(headers=headers).status_code == 200


def test_document_lists_every_route_and_the_bearer_scheme(stack: Stack) -> None:
    document = net.get(f"{stack.base_url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/sessions/{sessionId}/members",
        "/sessions/{sessionId}",
        "/api/InviteChatMember",
        "/json/reply/InviteChatMember",
        "/jsv/reply/GetSession",
    }
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    session = document["components"]["schemas"]["SessionInfo"]["properties"]
    assert list(session)[:3] == ["dialState", "callState", "queueState"]
    assert document["components"]["schemas"]["SessionMemberRoles"]["enum"] == [
        "None",
        "Caller",
        "Agent",
        "Transfer",
    ]
