"""Agents' access tokens are what Twilio accepts (docs/api.md, GetAppConfig): checked by
verifying the JWT's HS256 signature with the key's secret and reading every claim Twilio
reads; and the settings that sign them are refused at start when Twilio would refuse them."""

from __future__ import annotations

import secrets
import time

import pytest

from orchestrator.settings import ConfigError, Settings
from orchestrator.tokens import (
    InvalidIdentity,
    access_token,
    client_address,
    client_identity,
)
from tests.support.tokens import verified

GOOD = {
    "REDIS_URL": "redis://127.0.0.1:6390/0",
    "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "TWILIO_AUTH_TOKEN": "secret",
    "PUBLIC_BASE_URL": "https://orchestrator.example.com/",
}
ACCOUNT = "AC" + "1" * 32
KEY_SID = "SK" + "2" * 32
APP_SID = "AP" + "3" * 32


def test_token_carries_what_twilio_checks() -> None:
    secret = secrets.token_hex(32)
    before = int(time.time())
    token = access_token(ACCOUNT, KEY_SID, secret, APP_SID, "usr_0a1b2c", 600)
    header, claims = verified(token, secret)
    assert header["alg"] == "HS256" and header["typ"] == "JWT"
    assert header["cty"] == "twilio-fpa;v=1"
    assert claims["iss"] == KEY_SID and claims["sub"] == ACCOUNT
    assert claims["exp"] - claims["nbf"] == 600
    assert before <= claims["nbf"] <= int(time.time())
    assert claims["grants"]["identity"] == "usr_0a1b2c"
    voice = claims["grants"]["voice"]
    assert voice["incoming"] == {"allow": True}
    assert voice["outgoing"]["application_sid"] == APP_SID
    assert "push_credential_sid" not in voice
    with pytest.raises(AssertionError, match="signature"):
        verified(token, secret + "x")


def test_token_decodes_with_pyjwt_and_carries_the_push_credential() -> None:
    jwt = pytest.importorskip("jwt")
    secret = secrets.token_hex(32)
    push = "CR" + "4" * 32
    token = access_token(ACCOUNT, KEY_SID, secret, APP_SID, "usr_ff", 3600, push)
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["exp"] - claims["nbf"] == 3600
    assert claims["grants"]["voice"]["push_credential_sid"] == push
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "y" * 64, algorithms=["HS256"])


@pytest.mark.parametrize("user_id", ["usr_" + "ab12" * 6, "A", "x" * 121])
def test_user_ids_are_their_own_identity(user_id: str) -> None:
    assert client_identity(user_id) == user_id
    assert client_address(client_identity(user_id)) == f"client:{user_id}"


@pytest.mark.parametrize("bad", ["ada@example.com", "usr 1", "", "x" * 122, "usr-1", "é"])
def test_an_identity_twilio_refuses_is_never_used(bad: str) -> None:
    with pytest.raises(InvalidIdentity):
        client_identity(bad)
    with pytest.raises(InvalidIdentity):
        access_token(ACCOUNT, KEY_SID, "secret", APP_SID, bad, 60)


SOFTPHONE = {
    "TWILIO_API_KEY_SID": KEY_SID,
    "TWILIO_API_KEY_SECRET": "s3cret",
    "TWILIO_TWIML_APP_SID": APP_SID,
}


def test_softphone_settings_are_optional_and_read() -> None:
    bare = Settings.from_env(GOOD)
    assert bare.access_token_ttl == 3600
    assert bare.softphone_settings_missing == [
        "TWILIO_API_KEY_SID",
        "TWILIO_API_KEY_SECRET",
        "TWILIO_TWIML_APP_SID",
    ]
    some = Settings.from_env({**GOOD, "TWILIO_API_KEY_SID": KEY_SID})
    assert some.softphone_settings_missing == ["TWILIO_API_KEY_SECRET", "TWILIO_TWIML_APP_SID"]
    full = Settings.from_env({**GOOD, **SOFTPHONE, "ACCESS_TOKEN_TTL": "86400"})
    assert full.softphone_settings_missing == []
    assert (full.twilio_api_key_sid, full.twilio_twiml_app_sid) == (KEY_SID, APP_SID)
    assert full.access_token_ttl == 86400


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"TWILIO_API_KEY_SID": "SK123"}, "TWILIO_API_KEY_SID"),
        ({"TWILIO_API_KEY_SID": "AC" + "2" * 32}, "TWILIO_API_KEY_SID"),
        ({"TWILIO_TWIML_APP_SID": "AP" + "g" * 32}, "TWILIO_TWIML_APP_SID"),
        ({"ACCESS_TOKEN_TTL": "86401"}, "ACCESS_TOKEN_TTL"),
        ({"ACCESS_TOKEN_TTL": "0"}, "ACCESS_TOKEN_TTL"),
        ({"ACCESS_TOKEN_TTL": "-5"}, "ACCESS_TOKEN_TTL"),
        ({"ACCESS_TOKEN_TTL": "1.5"}, "ACCESS_TOKEN_TTL"),
        ({"ACCESS_TOKEN_TTL": "an hour"}, "ACCESS_TOKEN_TTL"),
    ],
)
def test_bad_softphone_settings_stop_the_start(change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**GOOD, **SOFTPHONE, **change})
