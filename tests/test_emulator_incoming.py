"""Customers calling in: ``POST /_emulator/incoming`` asks the app's voice URL for TwiML and
puts the caller into the ``<Dial><Conference>`` it names, with that conference's callback.
"""

from __future__ import annotations

import re

import pytest
from twilio.rest import Client

from emulator.app import create_app
from tests.support import net
from tests.support.emulator import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    EmuHooks,
    EmuReceiver,
    EmuServer,
    emu_dial,
)

pytest_plugins = ("tests.support.emulator",)


def emu_twiml(name: str, callback: str, **attributes: str) -> str:
    extra = "".join(f' {key}="{value}"' for key, value in attributes.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        "<Response><Say>Connecting you.</Say><Dial>"
        f'<Conference statusCallback="{callback}" statusCallbackMethod="POST"'
        f' statusCallbackEvent="start end join leave mute hold"{extra}>{name}</Conference>'
        "</Dial></Response>"
    )


def test_incoming_call_joins_the_conference_from_twiml(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    emu_hooks.serve(
        "/voice",
        200,
        emu_twiml("sess-1", emu_hooks.url("/conference-status?src=twiml"), participantLabel="cust"),
    )
    response = net.post(
        f"{emu_url}/_emulator/incoming",
        data={"From": "+14155559000", "To": "+14155559001", "VoiceUrl": emu_hooks.url("/voice")},
    )
    assert response.status_code == 200, response.text
    incoming = response.json()
    assert incoming["conferenceName"] == "sess-1"
    assert re.fullmatch(r"CA[0-9a-f]{32}", incoming["callSid"])
    assert re.fullmatch(r"CF[0-9a-f]{32}", incoming["conferenceSid"])

    voice = emu_hooks.all()[0]
    assert voice.path.endswith("/voice")
    assert voice.params == {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": incoming["callSid"],
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "+14155559000",
        "To": "+14155559001",
        "Called": "+14155559001",
        "Caller": "+14155559000",
    }
    join = emu_hooks.wait_event("participant-join", incoming["callSid"])
    assert join.query == {"src": "twiml"}
    assert join["ParticipantLabel"] == "cust"
    assert join["ConferenceSid"] == incoming["conferenceSid"]
    emu_hooks.wait_event("conference-start")
    assert emu_client.calls(incoming["callSid"]).fetch().direction == "inbound"

    member = emu_dial(emu_client, emu_hooks, "sess-1", "m1", "+14155550130")
    assert member.conference_sid == incoming["conferenceSid"]
    emu_hooks.wait_event("participant-join", member.call_sid)

    net.post(f"{emu_url}/_emulator/calls/{incoming['callSid']}/hangup")
    leave = emu_hooks.wait_event("participant-leave", incoming["callSid"])
    assert leave["ReasonParticipantLeft"] == "participant_hung_up"
    assert emu_client.conferences(incoming["conferenceSid"]).fetch().status == "in-progress"

    emu_client.conferences(incoming["conferenceSid"]).update(status="completed")
    emu_hooks.wait_event("conference-end")
    assert emu_hooks.events()[-3:] == ["participant-leave", "completed", "conference-end"]
    assert emu_hooks.events().count("conference-start") == 1


def test_incoming_with_default_voice_url_as_plain_text(
    emu_receiver: tuple[EmuReceiver, str], emu_hooks: EmuHooks, emu_url: str
) -> None:
    receiver, _ = emu_receiver
    receiver.responses["/voice"] = (200, emu_twiml("sess-plain", emu_hooks.url("/conf")))
    response = net.post(
        f"{emu_url}/_emulator/incoming",
        data={"From": "+14155559100", "To": "+14155559101"},
        headers={"Accept": "text/plain"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "sess-plain"
    emu_hooks.wait_event("conference-start")


def test_end_conference_on_exit_caller_takes_everyone_out(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    emu_hooks.serve(
        "/voice", 200, emu_twiml("sess-eoe", emu_hooks.url("/conf"), endConferenceOnExit="true")
    )
    incoming = net.post(
        f"{emu_url}/_emulator/incoming",
        data={"From": "+14155559200", "To": "+14155559201", "VoiceUrl": emu_hooks.url("/voice")},
    ).json()
    member = emu_dial(emu_client, emu_hooks, "sess-eoe", "m1", "+14155550140")
    emu_hooks.wait_event("participant-join", member.call_sid)

    net.post(f"{emu_url}/_emulator/calls/{incoming['callSid']}/hangup")
    end = emu_hooks.wait_event("conference-end")
    assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
    assert end["CallSidEndingConference"] == incoming["callSid"]
    member_leave = emu_hooks.wait_event("participant-leave", member.call_sid)
    assert member_leave["ReasonParticipantLeft"] == "moderator_ended_conference"
    assert emu_hooks.events()[-1] == "conference-end"
    assert emu_client.calls(member.call_sid).fetch().status == "completed"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, "oops"),
        (200, "<Response><Reject/></Response>"),
        (200, "this is not xml"),
    ],
)
def test_incoming_fails_with_502_when_the_app_does_not_conference(
    emu_hooks: EmuHooks, emu_url: str, status: int, body: str
) -> None:
    emu_hooks.serve("/voice", status, body)
    response = net.post(
        f"{emu_url}/_emulator/incoming",
        data={"From": "+14155559300", "To": "+14155559301", "VoiceUrl": emu_hooks.url("/voice")},
    )
    assert response.status_code == 502
    assert response.json()["message"]


def test_incoming_without_a_voice_url_is_502() -> None:
    with EmuServer(create_app(ACCOUNT_SID, AUTH_TOKEN)) as server:
        response = net.post(
            f"{server.url}/_emulator/incoming", data={"From": "+14155559400", "To": "+14155559401"}
        )
    assert response.status_code == 502
    assert "voice URL" in response.json()["message"]


def test_an_incoming_callers_twiml_callback_is_the_conferences(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    emu_hooks.serve("/voice", 200, emu_twiml("sess-first", emu_hooks.url("/from-twiml")))
    incoming = net.post(
        f"{emu_url}/_emulator/incoming",
        data={"From": "+14155559500", "To": "+14155559501", "VoiceUrl": emu_hooks.url("/voice")},
    ).json()
    member = emu_dial(
        emu_client, emu_hooks, "sess-first", "m", "+14155550174", conference_callback="/ignored"
    )
    join = emu_hooks.wait_event("participant-join", member.call_sid)
    assert join.path == f"{emu_hooks.prefix}/from-twiml"
    assert member.conference_sid == incoming["conferenceSid"]
    assert not [h for h in emu_hooks.all() if h.path.endswith("/ignored")]
