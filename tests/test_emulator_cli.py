"""The command line: ``python -m emulator`` reads its credentials from the environment and
serves the Twilio API on its port.
"""

from __future__ import annotations

import pytest
from twilio.rest import Client

from emulator.__main__ import parse_args
from tests.support.emulator import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CALLER_ID,
    emu_get,
)

pytest_plugins = ("tests.support.emulator",)


def test_cli_reads_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("EMULATOR_VOICE_URL", "http://127.0.0.1:9/voice")
    args = parse_args(["--port", "8123"])
    assert (args.account_sid, args.auth_token, args.voice_url) == (
        ACCOUNT_SID,
        AUTH_TOKEN,
        "http://127.0.0.1:9/voice",
    )
    assert (args.host, args.port, args.ring_seconds, args.no_answer_seconds) == (
        "127.0.0.1",
        8123,
        0.2,
        1.0,
    )
    assert parse_args(["--auth-token", "flag"]).auth_token == "flag"
    assert args.no_front is False
    assert parse_args(["--no-front"]).no_front is True
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    with pytest.raises(SystemExit):
        parse_args([])


def test_python_dash_m_emulator_serves(emu_cli_url: str) -> None:
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = emu_cli_url
    participant = client.conferences("cli").participants.create(
        from_=CALLER_ID, to="+14155550170", label="cli"
    )
    assert participant.status == "queued"
    assert emu_get(emu_cli_url, "creates").json()["byLabel"] == {"cli": 1}
