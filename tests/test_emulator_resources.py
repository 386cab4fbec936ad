"""The emulator's Calls list, API keys, TwiML Apps and phone numbers, as the service uses them.

``tests/test_conformance.py`` holds every answer to Twilio's description; these tests hold
what the description cannot say: which calls the list shows and keeps, what its filters
select, that an incoming call follows its number's configuration, that a key's secret is
shown once, and that the ``callbacks`` fault keeps every callback from the app.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from orchestrator.launch import wait_until
from tests.support import net
from tests.support.emulator import ACCOUNT_SID, AUTH_TOKEN, CALLER_ID, EmuHooks, emu_dial

pytest_plugins = ("tests.support.emulator",)

REST = f"/2010-04-01/Accounts/{ACCOUNT_SID}"


def _twiml(conference: str) -> str:
    """What a voice URL answers: put the caller into ``conference``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Dial><Conference>{conference}</Conference></Dial></Response>"
    )


def _rest(emu_url: str) -> httpx.Client:
    return net.client(base_url=emu_url + REST, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)


def _status(emu_url: str, call_sid: str) -> str:
    return net.get(f"{emu_url}/_emulator/calls/{call_sid}").json()["status"]


def test_the_calls_list_keeps_ended_calls_and_filters_them(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    busy = emu_dial(emu_client, emu_hooks, "room-a", "busy", "+14155550001")
    talker = emu_dial(emu_client, emu_hooks, "room-a", "talker", "+14155550123")
    wait_until(lambda: _status(emu_url, busy.call_sid) == "busy", what="the busy callee")
    wait_until(lambda: _status(emu_url, talker.call_sid) == "in-progress", what="an answer")
    calls = emu_client.api.v2010.account.calls
    # Ended calls stay listed (participants do not), newest first.
    assert [c.sid for c in calls.list()] == [talker.call_sid, busy.call_sid]
    assert [c.sid for c in calls.list(to="+14155550001", from_=CALLER_ID)] == [busy.call_sid]
    assert [c.sid for c in calls.list(status="busy")] == [busy.call_sid]
    assert calls.list(from_="+15005550007") == []
    # A busy call was dialled, so it has a start time; only ended calls have an end time.
    now = datetime.now(UTC)
    since = calls.list(start_time_after=now - timedelta(minutes=1))
    assert {c.sid for c in since} == {busy.call_sid, talker.call_sid}
    assert calls.list(start_time_after=now + timedelta(minutes=1)) == []
    assert [c.sid for c in calls.list(end_time_before=now + timedelta(minutes=1))] == [
        busy.call_sid
    ]
    with _rest(emu_url) as rest:
        today = now.date().isoformat()
        by_day = rest.get("/Calls.json", params={"StartTime": today}).json()["calls"]
        assert len(by_day) == 2
        page = rest.get("/Calls.json", params={"Status": "busy", "StartTime>": today}).json()
        assert page["uri"].startswith(f"{REST}/Calls.json?Status=busy&StartTime%3E={today}&")
        child = rest.get("/Calls.json", params={"ParentCallSid": busy.call_sid}).json()
        assert child["calls"] == []  # no call of the emulator has a parent


def test_a_key_shows_its_secret_once(emu_client: Client) -> None:
    account = emu_client.api.v2010.account
    new = account.new_keys.create(friendly_name="softphones")
    assert len(new.secret) == 32
    assert account.keys(new.sid).fetch().friendly_name == "softphones"
    assert [k.sid for k in account.keys.list()] == [new.sid]
    assert account.keys(new.sid).delete() is True
    assert account.keys.list() == []
    with pytest.raises(TwilioRestException) as gone:
        account.keys(new.sid).fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)


def test_numbers_are_bought_once_and_filtered_as_twilio_filters(emu_client: Client) -> None:
    numbers = emu_client.api.v2010.account.incoming_phone_numbers
    first = numbers.create(phone_number="+14155550100")
    assert first.friendly_name == "(415) 555-0100" and first.voice_method == "POST"
    by_area = numbers.create(area_code="628", friendly_name="by area")
    assert by_area.phone_number.startswith("+1628")
    with pytest.raises(TwilioRestException) as taken:
        numbers.create(phone_number="+14155550100")
    assert (taken.value.status, taken.value.code) == (400, 21422)
    with pytest.raises(TwilioRestException) as neither:
        numbers.create(friendly_name="no number")
    assert neither.value.status == 400
    # PhoneNumber matches a part of the number, '*' any digit; FriendlyName exactly.
    assert [n.sid for n in numbers.list(phone_number="555010*")] == [first.sid]
    assert [n.sid for n in numbers.list(friendly_name="by area")] == [by_area.sid]
    assert [n.sid for n in numbers.list()] == [first.sid, by_area.sid]
    with pytest.raises(TwilioRestException) as unknown:
        numbers(first.sid).update(voice_application_sid="AP" + "0" * 32)
    assert (unknown.value.status, unknown.value.code) == (400, 21218)


def test_an_incoming_call_follows_its_numbers_app_then_its_own_voice_url(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    account = emu_client.api.v2010.account
    emu_hooks.serve("/app-voice", 200, _twiml("via-app"))
    emu_hooks.serve("/number-voice", 200, _twiml("via-number"))
    app = account.applications.create(friendly_name="agents", voice_url=emu_hooks.url("/app-voice"))
    number = account.incoming_phone_numbers.create(
        phone_number="+14155550177",
        voice_url=emu_hooks.url("/number-voice"),
        voice_application_sid=app.sid,
    )

    def call_in() -> str:
        answer = net.post(
            f"{emu_url}/_emulator/incoming", data={"From": "+14155559000", "To": "+14155550177"}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["conferenceName"]

    assert call_in() == "via-app"
    account.applications(app.sid).delete()  # the number forgets it
    assert account.incoming_phone_numbers(number.sid).fetch().voice_application_sid is None
    assert call_in() == "via-number"


def test_the_callbacks_fault_keeps_every_callback_from_the_app(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    refused = net.post(
        f"{emu_url}/_emulator/faults", data={"operation": "callbacks", "status": "503"}
    )
    assert refused.status_code == 400  # only mode=reset: the app is unreachable
    armed = net.post(
        f"{emu_url}/_emulator/faults",
        data={"operation": "callbacks", "mode": "reset", "for_seconds": "30"},
    )
    assert armed.json()["operation"] == "callbacks"
    busy = emu_dial(emu_client, emu_hooks, "room-f", "busy", "+14155550001")
    wait_until(lambda: _status(emu_url, busy.call_sid) == "busy", what="the busy callee")

    def settled() -> dict | None:
        call = net.get(f"{emu_url}/_emulator/calls/{busy.call_sid}").json()
        return call if not call["sending"] and len(call["failedCallbacks"]) >= 3 else None

    call = wait_until(settled, what="every callback to fail")
    assert call["callbacks"] == [] and emu_hooks.for_call(busy.call_sid) == []
    assert all(d["error"].startswith("ConnectError") for d in call["failedCallbacks"])
    assert net.get(f"{emu_url}/_emulator/faults").json()["served"] >= 3


def test_reset_forgets_keys_apps_and_numbers(emu_client: Client, emu_url: str) -> None:
    account = emu_client.api.v2010.account
    account.new_keys.create()
    account.applications.create(friendly_name="x")
    account.incoming_phone_numbers.create(phone_number="+14155550188")
    assert net.post(f"{emu_url}/_emulator/reset").status_code == 200
    assert account.keys.list() == []
    assert account.applications.list() == []
    assert account.incoming_phone_numbers.list() == []
