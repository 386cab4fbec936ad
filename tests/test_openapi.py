"""/openapi.json describes what is served: schemathesis fuzzes every operation
against the running web process and checks every answer against the document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
import schemathesis

from orchestrator import auth, provision
from tests.conftest import Stack, random_number


@pytest.fixture(scope="module")
def api_key(stack: Stack) -> str:
    r = redis.Redis.from_url(stack.redis_url)
    account = provision.create_account(r, "Fuzz Co")
    provision.add_number(r, random_number(), account)
    return provision.create_key(r, account, ["User"])


@pytest.fixture
def api_schema(stack: Stack) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")


def test_fuzzing_finds_no_server_error_and_no_schema_violation(
    stack: Stack, api_key: str, tmp_path: Path
) -> None:
    """Schemathesis' own runner, every operation, positive and negative data."""
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{stack.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {api_key}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            # The event streams answer 200 with a stream that never ends (their errors
            # are tested in test_events).
            "--exclude-path-regex",
            "/events$",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_real_sessions_match_the_document(stack: Stack, api_schema, api_key) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    account = r.hget(f"orch:apikey:{auth.digest(api_key)}", "accountId")
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
    document = httpx.get(f"{stack.base_url}/openapi.json").json()
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
