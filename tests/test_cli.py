"""The operator's commands, run as operators run them."""

from __future__ import annotations

import os

import pytest

from orchestrator import keys
from orchestrator.settings import ConfigError, Settings
from tests.support.accounts import random_number
from tests.support.cli import cli
from tests.support.stack import Stack


def test_provisioning_prints_only_the_new_id_or_key(stack: Stack) -> None:
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    account = cli("accounts", "create", "Acme Support", env=env)
    assert account.returncode == 0, account.stderr
    aid = account.stdout.strip()
    assert aid.startswith("acc_") and account.stdout == aid + "\n"

    number = cli("numbers", "add", "(415) 555-0163", "--account", aid, env=env)
    assert number.stdout == "+14155550163\n"
    user = cli("users", "add", "sam@example.com", "--account", aid, "--name", "Sam", env=env)
    uid = user.stdout.strip()
    assert uid.startswith("usr_") and user.stdout == uid + "\n"
    key = cli("keys", "create", "--account", aid, "--role", "User", env=env)
    assert key.returncode == 0 and key.stdout.count("\n") == 1
    plain = key.stdout.strip()
    # Only a hash of the key is stored.
    assert not any(plain in k for k in stack.redis.keys(keys.api_key("*")))

    # The key works, the number routes incoming calls to the account.
    sid = stack.incoming_call(random_number(), "+14155550163")["conferenceName"]
    with stack.client(plain) as c:
        response = c.post(f"/sessions/{sid}/members", json={"memberToAdd": "sam@example.com"})
    assert response.status_code == 200
    assert response.json()["accountId"] == aid
    assert any(m["identity"] == uid for m in response.json()["members"])


def test_provisioning_errors_go_to_stderr(stack: Stack) -> None:
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    missing = cli("numbers", "add", "+14155550164", "--account", "acc_missing", env=env)
    assert missing.returncode == 2 and missing.stdout == ""
    assert "acc_missing" in missing.stderr
    bad = cli("numbers", "add", "hello", "--account", "acc_missing", env=env)
    assert bad.returncode == 2 and "not a valid phone number" in bad.stderr


def test_missing_settings_stop_the_process_with_one_line_each() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_URL"))}
    env |= {"REDIS_URL": "redis://127.0.0.1:1/0", "PUBLIC_BASE_URL": "https://x.example.com"}
    for command in ("web", "worker"):
        result = cli(command, env=env)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "orchestrator: TWILIO_ACCOUNT_SID is required but not set",
            "orchestrator: TWILIO_AUTH_TOKEN is required but not set",
            f"orchestrator: `orchestrator {command} --help` lists the settings; "
            "`orchestrator dev` runs the whole service on this machine with none set",
        ]


GOOD = {
    "REDIS_URL": "redis://127.0.0.1:6390/0",
    "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "TWILIO_AUTH_TOKEN": "secret",
    "PUBLIC_BASE_URL": "https://orchestrator.example.com/",
}


def test_settings_defaults() -> None:
    s = Settings.from_env(GOOD)
    assert s.twilio_api_base_url == "https://api.twilio.com"
    assert s.public_base_url == "https://orchestrator.example.com"
    assert s.twilio_cps == 1 and s.default_caller_id is None
    assert (s.retention.sessions, s.retention.events) == (7 * 24 * 3600, 3600)
    short = Settings.from_env(
        {**GOOD, "SESSION_RETENTION_SECONDS": "120", "EVENT_RETENTION_SECONDS": "60"}
    )
    assert (short.retention.sessions, short.retention.events) == (120, 60)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"REDIS_URL": ""}, "REDIS_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"TWILIO_ACCOUNT_SID": "AC123"}, "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_AUTH_TOKEN": " "}, "TWILIO_AUTH_TOKEN"),
        ({"PUBLIC_BASE_URL": "orchestrator.example.com"}, "PUBLIC_BASE_URL"),
        ({"TWILIO_API_BASE_URL": "ftp://x"}, "TWILIO_API_BASE_URL"),
        ({"DEFAULT_CALLER_ID": "12"}, "DEFAULT_CALLER_ID"),
        ({"TWILIO_CPS": "0"}, "TWILIO_CPS"),
        ({"TWILIO_CPS": "fast"}, "TWILIO_CPS"),
        ({"EVENT_RETENTION_SECONDS": "59"}, "EVENT_RETENTION_SECONDS"),
        ({"SESSION_RETENTION_SECONDS": "1.5"}, "SESSION_RETENTION_SECONDS"),
        # Live events show their sessions: those must be kept at least as long.
        ({"EVENT_RETENTION_SECONDS": "600", "SESSION_RETENTION_SECONDS": "300"}, "SESSION_RET"),
    ],
)
def test_bad_settings_name_the_variable(change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**GOOD, **change})
