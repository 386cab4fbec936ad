"""Fault injection (``/_emulator/faults``): error statuses, late answers and connection resets
on demand, for the next requests or a time window, in-process and through the TCP front of
``python -m emulator`` (the only way to get a real reset).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from orchestrator.launch import wait_until
from tests.support import net
from tests.support.emulator import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CALLER_ID,
    EmuHooks,
    emu_dial,
    emu_get,
)

pytest_plugins = ("tests.support.emulator",)


# ---------------------------------------------------------------------------- in-process


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
def test_injected_faults_fail_the_next_creates(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str, status: int, code: int
) -> None:
    armed = net.post(f"{emu_url}/_emulator/faults", data={"status": status, "count": 2})
    assert armed.json() == {"remaining": 2, "served": 0}
    for _ in range(2):
        with pytest.raises(TwilioRestException) as failed:
            emu_dial(emu_client, emu_hooks, "room-fault", "fault", "+14155550100")
        assert (failed.value.status, failed.value.code) == (status, code)
    emu_dial(emu_client, emu_hooks, "room-fault", "fault", "+14155550100")
    assert emu_get(emu_url, "faults").json() == {"remaining": 0, "served": 2}
    assert emu_get(emu_url, "creates").json()["byLabel"] == {"fault": 1}


def test_only_retryable_statuses_can_be_injected(emu_url: str) -> None:
    response = net.post(f"{emu_url}/_emulator/faults", data={"status": 404, "count": 1})
    assert response.status_code == 400
    assert emu_get(emu_url, "faults").json()["remaining"] == 0


def emu_faults(url: str, **form: Any) -> httpx.Response:
    return net.post(f"{url}/_emulator/faults", data=form, timeout=5)


def test_delayed_create_is_made_even_when_the_client_times_out(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    assert emu_faults(emu_url, mode="delay", seconds="0.9").json() == {
        "mode": "delay",
        "seconds": 0.9,
        "remaining": 1,
        "served": 0,
    }
    impatient = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=TwilioHttpClient(timeout=0.5))
    impatient.api.base_url = emu_url
    with pytest.raises(requests.exceptions.Timeout):
        emu_dial(impatient, emu_hooks, "room-slow", "slow", "+14155550180")
    # Twilio did the work before the client gave up: the participant exists, exactly once.
    creates = emu_get(emu_url, "creates").json()
    assert (creates["total"], creates["byLabel"], creates["attempts"]) == (1, {"slow": 1}, 1)
    (conference,) = emu_client.conferences.list(friendly_name="room-slow")
    (listed,) = emu_client.conferences(conference.sid).participants.list()
    assert listed.label == "slow"
    # ... and its call plays once the (lost) response has gone out.
    join = emu_hooks.wait_event("participant-join")
    assert (join["ParticipantLabel"], join["CallSid"]) == ("slow", listed.call_sid)
    assert emu_get(emu_url, "faults").json() == {
        "mode": "delay",
        "seconds": 0.9,
        "remaining": 0,
        "served": 1,
    }


def test_delayed_create_answers_normally_after_the_delay(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    emu_faults(emu_url, mode="delay", seconds="0.2", count="1")
    started = time.monotonic()
    participant = emu_dial(emu_client, emu_hooks, "room-late", "late", "+14155550181")
    assert time.monotonic() - started >= 0.2
    assert participant.status == "queued"
    # The call only starts once the 201 is out, so the app knows the sid before any webhook.
    assert emu_hooks.wait_event("participant-join")["CallSid"] == participant.call_sid
    assert emu_get(emu_url, "faults").json()["remaining"] == 0  # count=1: the next is on time
    emu_dial(emu_client, emu_hooks, "room-late", "on-time", "+14155550182")
    creates = emu_get(emu_url, "creates").json()
    assert (creates["byLabel"], creates["attempts"]) == ({"late": 1, "on-time": 1}, 2)


def test_faults_for_a_time_window(emu_client: Client, emu_hooks: EmuHooks, emu_url: str) -> None:
    armed = emu_faults(emu_url, status="503", for_seconds="0.5").json()
    assert armed["remaining"] is None and armed["served"] == 0 and "mode" not in armed
    assert 0 < armed["secondsLeft"] <= 0.5
    for _ in range(2):
        with pytest.raises(TwilioRestException) as failed:
            emu_dial(emu_client, emu_hooks, "room-window", "w", "+14155550183")
        assert (failed.value.status, failed.value.code) == (503, 20503)
    state = wait_until(
        lambda: (body := emu_get(emu_url, "faults").json())["remaining"] == 0 and body,
        what="the fault window to close",
    )
    assert state == {"remaining": 0, "served": 2, "secondsLeft": 0.0}
    emu_dial(emu_client, emu_hooks, "room-window", "w", "+14155550183")
    creates = emu_get(emu_url, "creates").json()
    assert (creates["total"], creates["attempts"], len(creates["times"])) == (1, 3, 1)


def test_count_zero_clears_any_fault(emu_client: Client, emu_url: str) -> None:
    assert emu_faults(emu_url, mode="delay", seconds="5", count="3").json()["remaining"] == 3
    assert emu_faults(emu_url, mode="delay", count="0").json() == {"remaining": 0, "served": 0}
    assert emu_faults(emu_url, mode="reset", for_seconds="30").json()["remaining"] is None
    assert emu_faults(emu_url, count="0").json() == {"remaining": 0, "served": 0}
    started = time.monotonic()
    emu_client.conferences("room-clear").participants.create(from_=CALLER_ID, to="+14155550184")
    assert time.monotonic() - started < 1
    assert emu_get(emu_url, "creates").json()["total"] == 1


@pytest.mark.parametrize(
    "form",
    [
        {"status": "404"},
        {"mode": "explode"},
        {"mode": "delay"},
        {"mode": "delay", "seconds": "-1"},
        {"mode": "delay", "seconds": "nan"},
        {"mode": "reset", "status": "503"},
        {"seconds": "1"},
        {"count": "1", "for_seconds": "1"},
        {"count": "x"},
        {"for_seconds": "inf"},
    ],
)
def test_invalid_faults_are_rejected_and_change_nothing(emu_url: str, form: dict) -> None:
    emu_faults(emu_url, mode="delay", seconds="1", count="2")
    response = emu_faults(emu_url, **form)
    assert response.status_code == 400
    assert response.json()["message"]
    assert emu_get(emu_url, "faults").json() == {
        "mode": "delay",
        "seconds": 1.0,
        "remaining": 2,
        "served": 0,
    }
    emu_faults(emu_url, count="0")


def test_reset_without_the_front_answers_502(emu_client: Client, emu_url: str) -> None:
    emu_faults(emu_url, mode="reset")
    with pytest.raises(TwilioRestException) as failed:
        emu_client.conferences("room-rst").participants.create(from_=CALLER_ID, to="+14155550185")
    assert failed.value.status == 502
    assert "no TCP front" in failed.value.msg
    assert emu_get(emu_url, "faults").json() == {"mode": "reset", "remaining": 0, "served": 1}
    creates = emu_get(emu_url, "creates").json()
    assert (creates["total"], creates["attempts"]) == (0, 1)


# ---------------------------------------------------------------------------- through the TCP front


def emu_raw_create(url: str, label: str) -> socket.socket:
    """Send a participant create on a raw socket; returns the socket for reading the answer."""
    host, port = url.removeprefix("http://").split(":")
    body = urlencode({"From": CALLER_ID, "To": "+14155550186", "Label": label}).encode()
    auth = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    head = (
        f"POST /2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/room-raw/Participants.json"
        f" HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(head.encode() + body)
    return sock


def test_reset_mode_resets_the_connection_and_creates_nothing(emu_cli_url: str) -> None:
    host, port = emu_cli_url.removeprefix("http://").split(":")
    # A keep-alive connection through the front, opened before the reset.
    bystander = http.client.HTTPConnection(host, int(port), timeout=5)
    bystander.request("GET", "/_emulator/health")
    assert bystander.getresponse().read() == b'{"ok":true}'
    bystander_sock = bystander.sock

    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = emu_cli_url
    room = client.conferences("room-rst").participants
    room.create(from_=CALLER_ID, to="+14155550187", label="first")  # leaves a pooled connection
    assert emu_faults(emu_cli_url, mode="reset", count="2").json() == {
        "mode": "reset",
        "remaining": 2,
        "served": 0,
    }
    with pytest.raises(requests.exceptions.ConnectionError) as failed:
        room.create(from_=CALLER_ID, to="+14155550187", label="reset")
    assert "ConnectionResetError" in repr(failed.value.args)

    # A reset, not a clean close: the kernel reports ECONNRESET, and not one byte came back.
    with emu_raw_create(emu_cli_url, "raw") as sock, pytest.raises(ConnectionResetError):
        sock.recv(65536)

    # The next create gets a fresh connection and works.
    after = room.create(from_=CALLER_ID, to="+14155550187", label="after")
    assert after.status == "queued"
    creates = emu_get(emu_cli_url, "creates").json()
    assert (creates["byLabel"], creates["attempts"]) == ({"first": 1, "after": 1}, 4)
    assert emu_get(emu_cli_url, "faults").json() == {"mode": "reset", "remaining": 0, "served": 2}

    # The bystander's keep-alive connection is untouched, for GETs and POSTs with a body.
    bystander.request("GET", "/_emulator/faults")
    assert json.loads(bystander.getresponse().read())["served"] == 2
    bystander.request(
        "POST",
        "/_emulator/faults",
        body="count=0",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert json.loads(bystander.getresponse().read()) == {"remaining": 0, "served": 2}
    assert bystander.sock is bystander_sock
    bystander.close()


def test_front_forwards_delays_and_client_timeouts(emu_cli_url: str) -> None:
    emu_faults(emu_cli_url, mode="delay", seconds="0.8")
    impatient = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=TwilioHttpClient(timeout=0.3))
    impatient.api.base_url = emu_cli_url
    with pytest.raises(requests.exceptions.Timeout):
        impatient.conferences("room-front").participants.create(
            from_=CALLER_ID, to="+14155550188", label="slow"
        )
    assert emu_get(emu_cli_url, "creates").json()["byLabel"] == {"slow": 1}
    # The call plays although its client is gone.
    wait_until(
        lambda: (
            [c["status"] for c in emu_get(emu_cli_url, "calls").json()["calls"]] == ["in-progress"]
        ),
        what="the timed-out participant's call to be answered",
    )
