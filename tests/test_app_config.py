"""GetAppConfig (docs/api.md): an agent's softphone gets a Twilio access token for its
user's Client identity, on every route and format and through the official ServiceStack
client; the identity is the one an invite of the user dials; a server without the token
settings, or a key of no user, gets a clear error and never a token.

The session's `stack` has none of the token settings; `softphones` is a stack of its own
(its own Redis too, so no other stack's worker takes its dials) that has them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from servicestack import JsonServiceClient, WebServiceException

from orchestrator import jsv, keys, provision, redis_client
from orchestrator.launch import wait_until
from tests.support.accounts import Account, new_account, random_number
from tests.support.servicestack import official_dtos
from tests.support.stack import ACCOUNT_SID, Stack, private_stack
from tests.support.tokens import verified

KEY_SID = "SK" + secrets.token_hex(16)
KEY_SECRET = secrets.token_hex(32)
APP_SID = "AP" + secrets.token_hex(16)
TTL = 120
SOFTPHONE_SETTINGS = {
    "TWILIO_API_KEY_SID": KEY_SID,
    "TWILIO_API_KEY_SECRET": KEY_SECRET,
    "TWILIO_TWIML_APP_SID": APP_SID,
    "ACCESS_TOKEN_TTL": str(TTL),
}


@pytest.fixture(scope="module")
def softphones(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with private_stack(tmp_path_factory.mktemp("softphones"), env=SOFTPHONE_SETTINGS) as stack:
        yield stack


@pytest.fixture(scope="module")
def unconfigured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose launcher did not run `orchestrator twilio setup`: no token settings."""
    with private_stack(tmp_path_factory.mktemp("unconfigured"), softphones=False) as stack:
        yield stack


def _agent_key(stack: Stack, account: Account) -> str:
    """A User key that acts as the account's user (Ada Agent)."""
    r = redis_client.connect_sync(stack.redis_url)
    return provision.create_key(r, account.id, ["User"], user=account.user_id)


def _check_config(config: dict[str, Any], account: Account) -> None:
    """A configured server's AppConfig for the account's user, token verified."""
    assert config["endpointId"] == account.user_id
    assert config["identity"] == account.user_id
    assert config["accountId"] == account.id
    assert config["emailAddress"] == account.user_email
    assert config["userInfo"] == {
        "firstName": "Ada",
        "lastName": "Agent",
        "name": "Ada Agent",
        "avatarUrl": "https://example.com/ada.png",
    }
    assert (config["agentState"], config["agentStateReason"]) == ("LoggedOut", "Unknown")
    header, claims = verified(config["accessToken"], KEY_SECRET)
    assert header["cty"] == "twilio-fpa;v=1"
    assert (claims["iss"], claims["sub"]) == (KEY_SID, ACCOUNT_SID)
    assert claims["exp"] - claims["nbf"] == TTL
    assert claims["grants"]["identity"] == config["identity"]
    assert claims["grants"]["voice"] == {
        "incoming": {"allow": True},
        "outgoing": {"application_sid": APP_SID},
    }


ROUTES = [
    ("/app/config", {}, "application/json"),
    ("/app/config?deviceType=iOS&sandbox=true", {}, "application/json"),
    ("/api/GetAppConfig", {}, "application/json"),
    ("/json/reply/GetAppConfig", {"Accept": "text/jsv"}, "application/json"),
    ("/jsv/reply/GetAppConfig", {}, "text/jsv"),
    ("/app/config.jsv", {}, "text/jsv"),
    ("/app/config?format=jsv", {}, "text/jsv"),
    ("/app/config", {"Accept": "application/jsv"}, "text/jsv"),
]


def test_every_route_and_format_answers_the_users_config(softphones: Stack) -> None:
    account = new_account(softphones.redis_url)
    with softphones.client(_agent_key(softphones, account)) as c:
        for path, headers, content_type in ROUTES:
            response = c.get(path, headers=headers)
            assert response.status_code == 200, (path, response.text)
            assert response.headers["content-type"].startswith(content_type), path
            config = jsv.loads(response.text) if content_type == "text/jsv" else response.json()
            _check_config(config, account)


def test_agent_state_is_read_from_the_user(softphones: Stack) -> None:
    account = new_account(softphones.redis_url)
    r = softphones.redis
    with softphones.client(_agent_key(softphones, account)) as c:
        r.hset(keys.user(account.user_id), mapping={"agentState": "Ready"})
        config = c.get("/app/config").json()
        assert (config["agentState"], config["agentStateReason"]) == ("Ready", "Unknown")
        r.hset(keys.user(account.user_id), mapping={"agentStateReason": "SetByUser"})
        config = c.get("/app/config").json()
        assert (config["agentState"], config["agentStateReason"]) == ("Ready", "SetByUser")
        # A value that is no state is never passed on: the client's enum could not read it.
        r.hset(keys.user(account.user_id), mapping={"agentState": "Asleep"})
        assert c.get("/app/config").json()["agentState"] == "LoggedOut"


def test_push_credential_goes_into_the_grant_and_a_bad_one_is_refused(softphones: Stack) -> None:
    account = new_account(softphones.redis_url)
    push = "CR" + secrets.token_hex(16)
    with softphones.client(_agent_key(softphones, account)) as c:
        config = c.get("/app/config", params={"deviceType": "Android", "pushCredentialSid": push})
        assert config.status_code == 200, config.text
        _, claims = verified(config.json()["accessToken"], KEY_SECRET)
        assert claims["grants"]["voice"]["push_credential_sid"] == push
        bad = c.get("/app/config", params={"pushCredentialSid": "PN123"})
        assert bad.status_code == 400, bad.text
        status = bad.json()["responseStatus"]
        assert [e["fieldName"] for e in status["errors"]] == ["PushCredentialSid"]
        wrong_device = c.get("/app/config", params={"deviceType": "Fax"})
        assert wrong_device.status_code == 400
        assert wrong_device.json()["responseStatus"]["errors"][0]["fieldName"] == "DeviceType"


def test_a_key_of_no_user_is_refused(softphones: Stack) -> None:
    account = new_account(softphones.redis_url)
    with softphones.client(account.key) as c:
        response = c.get("/app/config")
    assert response.status_code == 403, response.text
    status = response.json()["responseStatus"]
    assert status["errorCode"] == "Forbidden"
    assert "acts as no user" in status["message"]
    assert "accessToken" not in response.text


def test_a_removed_user_gets_no_token(softphones: Stack) -> None:
    account = new_account(softphones.redis_url)
    key = _agent_key(softphones, account)
    softphones.redis.delete(keys.user(account.user_id))
    with softphones.client(key) as c:
        response = c.get("/app/config")
    assert response.status_code == 403, response.text
    assert "no longer exists" in response.json()["responseStatus"]["message"]


def test_an_invite_of_the_user_dials_the_identity_of_the_token(softphones: Stack) -> None:
    account = new_account(softphones.redis_url)
    with softphones.client(_agent_key(softphones, account)) as c:
        identity = c.get("/app/config").json()["identity"]
    sid = softphones.incoming_call(random_number(), account.number)["conferenceName"]
    with softphones.client(account.key) as c:
        invited = c.post(f"/sessions/{sid}/members", json={"memberToAdd": account.user_email})
    assert invited.status_code == 200, invited.text
    member = next(m for m in invited.json()["members"] if m["endpointId"] == account.user_id)
    assert member["identity"] == identity

    def dialled() -> list[str]:
        """What the emulator was asked to dial into the session (the caller's leg came in)."""
        calls = softphones.emulator("calls").json()["calls"]
        return [
            c["to"] for c in calls if c["conferenceName"] == sid and c["direction"] != "inbound"
        ]

    assert wait_until(dialled, 10, "the user's invite dialled") == [f"client:{identity}"]


# --- a stack with no token settings ------------------------------------------------------------


def test_a_server_without_token_settings_names_them(unconfigured: Stack) -> None:
    stack, account = unconfigured, new_account(unconfigured.redis_url)
    with stack.client(_agent_key(stack, account)) as c:
        for path in ("/app/config", "/api/GetAppConfig", "/jsv/reply/GetAppConfig"):
            response = c.get(path)
            assert response.status_code == 503, (path, response.text)
            assert int(response.headers["retry-after"]) > 0
            if path.startswith("/jsv/"):
                status = jsv.loads(response.text)["responseStatus"]
            else:
                status = response.json()["responseStatus"]
            assert status["errorCode"] == "NotConfigured"
            for name in ("TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET", "TWILIO_TWIML_APP_SID"):
                assert name in status["message"]
            assert "accessToken" not in response.text
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    case = schema["/app/config"]["GET"].Case(query={"deviceType": "Android"})
    headers = {"Authorization": f"Bearer {_agent_key(stack, account)}"}
    # As documented (a 5xx is the point here, so schemathesis' "no 5xx" check is left out).
    answer = case.call_and_validate(headers=headers, excluded_checks=[not_a_server_error])
    assert answer.status_code == 503
    # Who may not ask learns nothing of the configuration.
    with stack.client(account.key) as c:
        assert c.get("/app/config").status_code == 403
    with stack.client() as anonymous:
        assert anonymous.get("/app/config").status_code == 401


# --- the official ServiceStack client ------------------------------------------------------


def test_official_client_gets_the_config_and_the_error(
    softphones: Stack, unconfigured: Stack, tmp_path: Path
) -> None:
    stack, account = unconfigured, new_account(unconfigured.redis_url)
    dtos = official_dtos(softphones, tmp_path, "softphone_dtos")
    agent = new_account(softphones.redis_url)
    client = JsonServiceClient(softphones.base_url)
    client.set_bearer_token(_agent_key(softphones, agent))
    config = client.get(dtos.GetAppConfig(device_type=dtos.DeviceTypes.WEB))
    assert isinstance(config, dtos.AppConfig)
    assert config.identity == agent.user_id and config.endpoint_id == agent.user_id
    assert config.agent_state == dtos.AgentStates.LOGGED_OUT
    assert config.agent_state_reason == dtos.AgentStateReasons.UNKNOWN
    assert isinstance(config.user_info, dtos.UserInfo)
    assert config.user_info.first_name == "Ada"
    _, claims = verified(config.access_token, KEY_SECRET)
    assert claims["grants"]["identity"] == config.identity

    unconfigured = JsonServiceClient(stack.base_url)
    unconfigured.set_bearer_token(_agent_key(stack, account))
    with pytest.raises(WebServiceException) as refused:
        unconfigured.get(dtos.GetAppConfig())
    assert refused.value.status_code == 503
    assert refused.value.response_status.error_code == "NotConfigured"
    assert "TWILIO_TWIML_APP_SID" in refused.value.response_status.message


def test_answers_match_the_document(softphones: Stack) -> None:
    """The configured answer and the refusals validate against /openapi.json."""
    schema = schemathesis.openapi.from_url(f"{softphones.base_url}/openapi.json")
    account = new_account(softphones.redis_url)
    cases = [
        (_agent_key(softphones, account), {"deviceType": "Web"}, 200),
        (_agent_key(softphones, account), {"pushCredentialSid": "nope"}, 400),
        (account.key, {}, 403),
    ]
    for key, query, status in cases:
        for path in ("/app/config", "/api/GetAppConfig", "/jsv/reply/GetAppConfig"):
            case = schema[path]["GET"].Case(query=query)
            response = case.call_and_validate(headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == status, (path, response.text)
