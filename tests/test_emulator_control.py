"""What the emulator shows about itself: ``/_emulator/creates`` counts the creates (and the
attempts), ``/_emulator/calls/{sid}`` the REST requests about each call, and
``/_emulator/reset`` forgets them.
"""

from __future__ import annotations

import time

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.support import net
from tests.support.emulator import (
    ACCOUNT_SID,
    ALL_CALL_EVENTS,
    CALLER_ID,
    EmuHooks,
    emu_api,
    emu_dial,
    emu_get,
)

pytest_plugins = ("tests.support.emulator",)


def test_creates_are_counted_per_label_with_times_and_attempts(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    before = time.time()
    emu_dial(emu_client, emu_hooks, "room-n", "alice", "+14155550120")
    emu_dial(emu_client, emu_hooks, "room-n", "alice", "+14155550120")
    emu_dial(emu_client, emu_hooks, "room-n", "bob", "+14155550121")
    with pytest.raises(TwilioRestException):
        emu_dial(emu_client, emu_hooks, "room-n", "bob", "bogus")
    # Wrong credentials never reach the handler, so they are not attempts.
    bad_auth = net.post(
        f"{emu_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/room-n/Participants.json",
        data={"From": CALLER_ID, "To": "+14155550122"},
        auth=(ACCOUNT_SID, "wrong"),
    )
    assert bad_auth.status_code == 401
    after = time.time()
    creates = emu_get(emu_url, "creates").json()
    times = creates.pop("times")
    assert creates == {"total": 3, "byLabel": {"alice": 2, "bob": 1}, "attempts": 4}
    assert len(times) == 3 and times == sorted(times)
    assert before <= times[0] and times[-1] <= after

    assert net.post(f"{emu_url}/_emulator/reset").json() == {"ok": True}
    assert emu_get(emu_url, "creates").json() == {
        "total": 0,
        "byLabel": {},
        "times": [],
        "attempts": 0,
    }
    assert emu_get(emu_url, "calls").json() == {"calls": []}


def test_each_call_records_the_rest_requests_about_it(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    """`GET /_emulator/calls/{sid}` lists the REST requests naming the call, each with the
    time.time() it was received (to time how soon an app cancels or removes a leg)."""
    ringing = emu_dial(emu_client, emu_hooks, "room-rq", "r1", "+14155550002")
    emu_hooks.wait_event("ringing", ringing.call_sid)
    before = time.time()
    emu_client.calls(ringing.call_sid).fetch()
    emu_client.calls(ringing.call_sid).update(status="canceled")
    after = time.time()
    answered = emu_dial(emu_client, emu_hooks, "room-rq", "up", "+14155550172")
    emu_hooks.wait_event("participant-join", answered.call_sid)
    room = emu_client.conferences(answered.conference_sid)
    room.participants("up").update(muted=True)
    room.participants(answered.call_sid).delete()

    cancelled = emu_get(emu_url, f"calls/{ringing.call_sid}").json()["requests"]
    assert [r["operation"] for r in cancelled] == ["CreateParticipant", "FetchCall", "UpdateCall"]
    assert cancelled[2]["params"] == {"Status": "canceled"}
    assert cancelled[0]["params"]["Label"] == "r1"
    assert cancelled[0]["params"]["StatusCallbackEvent"] == ALL_CALL_EVENTS
    assert before <= cancelled[1]["time"] <= cancelled[2]["time"] <= after
    removed = emu_get(emu_url, f"calls/{answered.call_sid}").json()["requests"]
    assert [r["operation"] for r in removed] == [
        "CreateParticipant",
        "UpdateParticipant",
        "DeleteParticipant",
    ]
    assert removed[1]["params"] == {"Muted": "true"}
    assert removed[2]["params"] == {}
    # A request refused before it names a call (unknown sid) is nobody's.
    assert emu_api(emu_url, "GET", "Calls/CA" + "0" * 32 + ".json").status_code == 404
