"""The Twilio emulator, end to end: real HTTP, the official twilio client, signed webhooks.

The harness (emulator and webhook receiver in-process, one URL namespace per test) lives in
``tests/emulator_support.py``. ``tests/test_conformance.py`` checks every answer against
Twilio's own OpenAPI description; this module checks the behaviour: call flows, callbacks,
Twilio's rules, faults and the command line.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import requests
from starlette.datastructures import ImmutableMultiDict
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from emulator.__main__ import parse_args
from emulator.app import create_app
from emulator.callbacks import sign
from tests.emulator_support import (
    ACCOUNT_SID,
    ALL_CALL_EVENTS,
    ALL_CONFERENCE_EVENTS,
    AUTH_TOKEN,
    CALLER_ID,
    ROOT,
    EmuHooks,
    EmuReceiver,
    EmuServer,
    emu_api,
    emu_dial,
    emu_free_port,
    emu_get,
    emu_wait,
    emu_wait_status,
)

pytest_plugins = ("tests.emulator_support",)

# ---------------------------------------------------------------------------- answered


def test_answered_call_plays_in_order_then_hangs_up(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    participant = emu_dial(emu_client, emu_hooks, "room-a", "alice", "+14155550100")

    assert participant.status == "queued"
    assert re.fullmatch(r"CA[0-9a-f]{32}", participant.call_sid)
    assert re.fullmatch(r"CF[0-9a-f]{32}", participant.conference_sid)
    assert participant.label == "alice"
    assert participant.account_sid == ACCOUNT_SID
    assert (participant.muted, participant.hold, participant.coaching) == (False, False, False)
    assert participant.start_conference_on_enter is True
    assert participant.end_conference_on_exit is False
    assert participant.date_created is not None  # parsed from RFC 2822 by the client
    assert participant.uri.endswith(
        f"/Conferences/{participant.conference_sid}/Participants/{participant.call_sid}.json"
    )

    hooks = emu_hooks.wait_count(5)
    assert emu_hooks.events() == [
        "initiated",
        "ringing",
        "in-progress",
        "participant-join",
        "conference-start",
    ]
    progress = [h for h in hooks if h.path.endswith("/call-status")]
    for number, hook in enumerate(progress):
        assert hook.query == {"session": "room-a", "member": "alice"}
        assert hook["SequenceNumber"] == str(number)
        assert hook["AccountSid"] == ACCOUNT_SID
        assert hook["ApiVersion"] == "2010-04-01"
        assert hook["CallSid"] == participant.call_sid
        assert hook["To"] == hook["Called"] == "+14155550100"
        assert hook["From"] == hook["Caller"] == CALLER_ID
        assert hook["Direction"] == "outbound-api"
        assert hook["CallbackSource"] == "call-progress-events"
        assert parsedate_to_datetime(hook["Timestamp"]).utcoffset().total_seconds() == 0
        assert "CallDuration" not in hook.params
    join, start = hooks[3], hooks[4]
    assert join.params | {"Timestamp": "-"} == {
        "AccountSid": ACCOUNT_SID,
        "ConferenceSid": participant.conference_sid,
        "FriendlyName": "room-a",
        "StatusCallbackEvent": "participant-join",
        "SequenceNumber": "0",
        "Timestamp": "-",
        "CallSid": participant.call_sid,
        "ParticipantLabel": "alice",
        "Muted": "false",
        "Hold": "false",
        "Coaching": "false",
        "EndConferenceOnExit": "false",
        "StartConferenceOnEnter": "true",
    }
    assert start["SequenceNumber"] == "1"
    assert start["ConferenceSid"] == participant.conference_sid
    assert "CallSid" not in start.params

    room = emu_client.conferences(participant.conference_sid)
    by_label = room.participants("alice").fetch()
    assert (by_label.call_sid, by_label.status) == (participant.call_sid, "connected")
    assert room.participants(participant.call_sid).fetch().label == "alice"
    conference = emu_client.conferences(participant.conference_sid).fetch()
    assert (conference.friendly_name, conference.status, conference.region) == (
        "room-a",
        "in-progress",
        "us1",
    )
    call = emu_client.calls(participant.call_sid).fetch()
    assert (call.status, call.direction, call.to) == ("in-progress", "outbound-api", "+14155550100")

    assert room.participants("alice").delete() is True

    hooks = emu_hooks.wait_count(8)
    assert emu_hooks.events()[5:] == ["participant-leave", "completed", "conference-end"]
    leave, completed, end = hooks[5:]
    assert leave["ParticipantCallStatus"] == "completed"
    assert leave["ReasonParticipantLeft"] == "participant_updated_via_api"
    assert leave["SequenceNumber"] == "2"
    assert completed["SequenceNumber"] == "3"
    assert completed["CallDuration"].isdigit() and completed["Duration"].isdigit()
    assert end["ReasonConferenceEnded"] == "last-participant-kicked"
    assert end["CallSidEndingConference"] == participant.call_sid
    assert end["SequenceNumber"] == "3"

    assert emu_client.conferences(participant.conference_sid).fetch().status == "completed"
    assert emu_client.calls(participant.call_sid).fetch().status == "completed"
    with pytest.raises(TwilioRestException) as gone:
        emu_client.conferences(participant.conference_sid).participants("alice").fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)

    # The emulator records a delivery once the receiver's response is back: poll for the last.
    inspected = emu_wait(
        lambda: (
            (body := emu_get(emu_url, f"calls/{participant.call_sid}").json())
            and len(body["callbacks"]) == len(hooks)
            and body
        ),
        message="the emulator to record all 8 deliveries",
    )
    assert inspected["status"] == "completed"
    assert inspected["label"] == "alice"
    assert inspected["conferenceName"] == "room-a"
    assert inspected["direction"] == "outbound-api"
    assert [(c["url"], c["params"]) for c in inspected["callbacks"]] == [
        (h.url, h.params) for h in hooks
    ]
    assert inspected["failedCallbacks"] == []


def test_second_participant_joins_without_restarting_the_conference(
    emu_client: Client, emu_hooks: EmuHooks
) -> None:
    first = emu_dial(emu_client, emu_hooks, "room-b", "m1", "+14155550101")
    emu_hooks.wait_event("conference-start")
    second = emu_dial(emu_client, emu_hooks, "room-b", "m2", "client:agent-7")
    assert second.conference_sid == first.conference_sid
    emu_hooks.wait_event("participant-join", second.call_sid)

    listing = [p.label for p in emu_client.conferences(first.conference_sid).participants.list()]
    assert listing == ["m1", "m2"]

    emu_client.calls(first.call_sid).update(status="completed")
    leave = emu_hooks.wait_event("participant-leave", first.call_sid)
    assert leave["ReasonParticipantLeft"] == "participant_updated_via_api"
    emu_hooks.wait_event("completed", first.call_sid)
    # m2 is still there: the conference goes on.
    assert emu_client.conferences(first.conference_sid).fetch().status == "in-progress"
    assert emu_hooks.events().count("conference-start") == 1

    assert emu_client.conferences(first.conference_sid).update(status="completed").status == (
        "completed"
    )
    end = emu_hooks.wait_event("conference-end")
    assert end["ReasonConferenceEnded"] == "conference-ended-via-api"
    events = emu_hooks.events()
    assert events[-3:] == ["participant-leave", "completed", "conference-end"]
    assert emu_hooks.all()[-3]["ReasonParticipantLeft"] == "conference_ended_via_api"
    conference_sequence = [
        int(h["SequenceNumber"]) for h in emu_hooks.all() if "StatusCallbackEvent" in h.params
    ]
    assert sorted(conference_sequence) == list(range(len(conference_sequence)))


def test_callee_hangup_from_the_control_endpoint(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    participant = emu_dial(emu_client, emu_hooks, "room-c", "bob", "sip:bob@example.com")
    emu_hooks.wait_event("participant-join")

    response = httpx.post(f"{emu_url}/_emulator/calls/{participant.call_sid}/hangup")
    assert response.status_code == 200
    assert response.json()["status"] == "completed"

    end = emu_hooks.wait_event("conference-end")
    assert end["ReasonConferenceEnded"] == "last-participant-left"
    leave = emu_hooks.wait_event("participant-leave")
    assert leave["ReasonParticipantLeft"] == "participant_hung_up"
    assert emu_hooks.events()[-3:] == ["participant-leave", "completed", "conference-end"]


def test_default_events_are_completed_only(emu_client: Client, emu_hooks: EmuHooks) -> None:
    participant = emu_dial(
        emu_client,
        emu_hooks,
        "room-d",
        "quiet",
        "+14155550104",
        call_events=None,
        conference_events=None,
    )
    emu_wait(
        lambda: emu_client.calls(participant.call_sid).fetch().status == "in-progress",
        message="answer",
    )
    emu_client.calls(participant.call_sid).update(status="completed")
    hooks = emu_hooks.wait_count(1)
    assert [(h.event, h["SequenceNumber"]) for h in hooks] == [("completed", "0")]


def test_get_status_callbacks_are_signed_over_the_query_string(
    emu_client: Client, emu_hooks: EmuHooks
) -> None:
    participant = emu_dial(
        emu_client,
        emu_hooks,
        "room-g",
        "getter",
        "+14155550107",
        call_events=["initiated"],
        status_callback_method="GET",
    )
    hook = emu_hooks.wait_event("initiated")
    assert hook.method == "GET"
    assert hook.query["CallSid"] == participant.call_sid
    assert hook.query["member"] == "getter"
    assert hook.valid


# ---------------------------------------------------------------------------- unanswered


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("+14155550001", ["initiated", "ringing", "busy"]),
        ("+14155550002", ["initiated", "ringing", "no-answer"]),
        ("+14155550003", ["initiated", "failed"]),
        ("client:offline-agent", ["initiated", "ringing", "no-answer"]),
    ],
)
def test_unanswered_outcomes(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str, to: str, expected: list[str]
) -> None:
    participant = emu_dial(emu_client, emu_hooks, f"room-{to[-4:]}", "carol", to)
    hooks = emu_hooks.wait_count(len(expected) + 1)
    emu_wait(
        lambda: emu_get(emu_url, f"calls/{participant.call_sid}").json()["status"] == expected[-1],
        message=f"final status {expected[-1]}",
    )
    # The final call status, then the participant Twilio could not add leaves.
    assert emu_hooks.events() == [*expected, "participant-leave"]
    progress, leave = hooks[:-1], hooks[-1]
    assert [h["SequenceNumber"] for h in progress] == [str(n) for n in range(len(expected))]
    assert progress[-1]["CallDuration"] == "0"
    assert progress[-1]["Duration"] == "0"
    assert leave["CallSid"] == participant.call_sid
    assert leave["ParticipantLabel"] == "carol"
    assert leave["ParticipantCallStatus"] == expected[-1]
    assert leave["ReasonParticipantLeft"] == "participant_add_failed"
    assert emu_client.calls(participant.call_sid).fetch().status == expected[-1]
    with pytest.raises(TwilioRestException) as gone:
        emu_client.conferences(participant.conference_sid).participants("carol").fetch()
    assert gone.value.status == 404
    # Nobody ever joined: the conference never started and is gone, silently.
    assert emu_client.conferences(participant.conference_sid).fetch().status == "completed"


def test_no_answer_waits_longer_than_ringing(emu_client: Client, emu_hooks: EmuHooks) -> None:
    participant = emu_dial(emu_client, emu_hooks, "room-slow", "dave", "+14155550002")
    ringing = emu_hooks.wait_event("ringing")
    final = emu_hooks.wait_event("no-answer")
    assert final["CallSid"] == participant.call_sid
    elapsed = parsedate_to_datetime(final["Timestamp"]) - parsedate_to_datetime(
        ringing["Timestamp"]
    )
    assert elapsed.total_seconds() <= 2


def test_cancel_a_ringing_call(emu_client: Client, emu_hooks: EmuHooks) -> None:
    participant = emu_dial(emu_client, emu_hooks, "room-cancel", "erin", "+14155550002")
    emu_hooks.wait_event("ringing")
    call = emu_client.calls(participant.call_sid).update(status="canceled")
    assert call.status == "canceled"
    leave = emu_hooks.wait_event("participant-leave")
    assert emu_hooks.events() == ["initiated", "ringing", "canceled", "participant-leave"]
    assert leave["ParticipantCallStatus"] == "canceled"
    assert leave["ReasonParticipantLeft"] == "participant_updated_via_api"


# ---------------------------------------------------------------------------- API errors


@pytest.mark.parametrize("to", ["555-0100", "+1415", "client:", "tel:+14155550100", "+14155550004"])
def test_invalid_to_is_rejected_with_21211(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str, to: str
) -> None:
    with pytest.raises(TwilioRestException) as rejected:
        emu_dial(emu_client, emu_hooks, "room-bad", "x", to)
    assert (rejected.value.status, rejected.value.code) == (400, 21211)
    assert f"The 'To' number {to} is not a valid phone number." in rejected.value.msg
    assert emu_get(emu_url, "creates").json() == {
        "total": 0,
        "byLabel": {},
        "times": [],
        "attempts": 1,
    }


def test_missing_and_invalid_parameters(emu_url: str) -> None:
    path = "Conferences/room-x/Participants.json"
    missing_to = emu_api(emu_url, "POST", path, data={"From": CALLER_ID})
    assert missing_to.status_code == 400
    assert missing_to.json() == {
        "code": 21604,
        "message": "'To' is required",
        "more_info": "https://www.twilio.com/docs/errors/21604",
        "status": 400,
    }
    missing_from = emu_api(emu_url, "POST", path, data={"To": "+14155550100"})
    assert (missing_from.status_code, missing_from.json()["code"]) == (400, 21603)
    bad_from = emu_api(emu_url, "POST", path, data={"To": "+14155550100", "From": "nope"})
    assert (bad_from.status_code, bad_from.json()["code"]) == (400, 21212)


def test_wrong_credentials_get_401(emu_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    client = Client(ACCOUNT_SID, "not-the-token")
    client.api.base_url = emu_url
    with pytest.raises(TwilioRestException) as denied:
        client.conferences("room").participants.create(from_=CALLER_ID, to="+14155550100")
    assert (denied.value.status, denied.value.code) == (401, 20003)

    anonymous = httpx.get(f"{emu_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/x.json")
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert emu_get(emu_url, "creates").json()["total"] == 0


def test_other_account_and_unknown_resources_are_404(emu_url: str) -> None:
    other = httpx.get(
        f"{emu_url}/2010-04-01/Accounts/AC{'0' * 32}/Conferences/x.json",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
    )
    assert (other.status_code, other.json()["code"]) == (404, 20404)
    unknown_cf, unknown_ca = "CF" + "0" * 32, "CA" + "0" * 32
    for path in (
        "Conferences/nope.json",
        f"Conferences/{unknown_cf}.json",
        "Calls/CA0.json",
        f"Calls/{unknown_ca}.json",
        f"Conferences/{unknown_cf}/Participants.json",
        f"Conferences/{unknown_cf}/Participants/{unknown_ca}.json",
    ):
        response = emu_api(emu_url, "GET", path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"code", "message", "more_info", "status"}
        assert response.json()["code"] == 20404


# ---------------------------------------------------------------------------- updates


def test_hold_and_mute_emit_conference_events(emu_client: Client, emu_hooks: EmuHooks) -> None:
    participant = emu_dial(emu_client, emu_hooks, "room-h", "frank", "+14155550105")
    emu_hooks.wait_event("participant-join")
    room = emu_client.conferences(participant.conference_sid)

    assert room.participants("frank").update(hold=True).hold is True
    assert room.participants("frank").update(hold=False).hold is False
    assert room.participants("frank").update(muted=True).muted is True
    room.participants("frank").update(muted=True)  # no change, no event
    assert room.participants(participant.call_sid).update(muted=False).muted is False
    room.participants("frank").delete()

    emu_hooks.wait_event("conference-end")
    conference_hooks = [h for h in emu_hooks.all() if h.path.endswith("/conference-status")]
    assert [(h.event, h["Hold"], h["Muted"]) for h in conference_hooks[2:6]] == [
        ("participant-hold", "true", "false"),
        ("participant-unhold", "false", "false"),
        ("participant-mute", "false", "true"),
        ("participant-unmute", "false", "false"),
    ]
    assert conference_hooks[6].event == "participant-leave"


def test_participants_list_has_twilio_page_shape(emu_client: Client, emu_url: str) -> None:
    hooks_free = emu_client.conferences("room-list").participants
    first = hooks_free.create(from_=CALLER_ID, to="+14155550110", label="a")
    hooks_free.create(from_=CALLER_ID, to="+14155550111", label="b")
    path = f"Conferences/{first.conference_sid}/Participants.json"
    body = emu_api(emu_url, "GET", path).json()
    assert [p["label"] for p in body["participants"]] == ["a", "b"]
    assert {k: body[k] for k in ("page", "page_size", "start", "end", "next_page_uri")} == {
        "page": 0,
        "page_size": 50,
        "start": 0,
        "end": 1,
        "next_page_uri": None,
    }
    assert body["previous_page_uri"] is None
    assert body["first_page_uri"].startswith(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/CF")
    listed = emu_client.conferences.list(friendly_name="room-list")
    assert [c.friendly_name for c in listed] == ["room-list"]
    assert listed[0].status in ("init", "in-progress")
    assert emu_client.conferences.list(friendly_name="room-list", status="completed") == []


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
    bad_auth = httpx.post(
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

    assert httpx.post(f"{emu_url}/_emulator/reset").json() == {"ok": True}
    assert emu_get(emu_url, "creates").json() == {
        "total": 0,
        "byLabel": {},
        "times": [],
        "attempts": 0,
    }
    assert emu_get(emu_url, "calls").json() == {"calls": []}


# ---------------------------------------------------------------------------- Twilio's rules


def emu_error(response: httpx.Response) -> tuple[int, int]:
    return response.status_code, response.json()["code"]


def test_participants_need_the_conference_sid_except_on_create(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    created = emu_dial(emu_client, emu_hooks, "room-sid", "ann", "+14155550190")
    assert created.conference_sid.startswith("CF")
    by_name = "Conferences/room-sid/Participants"
    for method, path in [
        ("GET", f"{by_name}.json"),
        ("GET", f"{by_name}/ann.json"),
        ("GET", f"{by_name}/{created.call_sid}.json"),
        ("POST", f"{by_name}/ann.json"),
        ("DELETE", f"{by_name}/ann.json"),
    ]:
        refused = emu_api(
            emu_url, method, path, data={"Muted": "true"} if method == "POST" else None
        )
        assert emu_error(refused) == (405, 20004), (method, path)
        assert refused.json()["message"] == "Method not allowed"
    with pytest.raises(TwilioRestException) as official:
        emu_client.conferences("room-sid").participants("ann").fetch()
    assert (official.value.status, official.value.code) == (405, 20004)
    # Nothing happened to the participant, and the sid works for all of them.
    room = emu_client.conferences(created.conference_sid)
    assert room.participants("ann").fetch().muted is False
    assert [p.label for p in room.participants.list()] == ["ann"]
    assert room.participants(created.call_sid).update(muted=True).muted is True
    # Create takes the friendly name (joins the live conference) and the CF sid alike.
    second = emu_dial(emu_client, emu_hooks, "room-sid", "ben", "+14155550191")
    third = emu_dial(emu_client, emu_hooks, created.conference_sid, "cy", "+14155550192")
    assert second.conference_sid == third.conference_sid == created.conference_sid
    assert room.participants("ann").delete() is True


def test_conferences_and_calls_are_looked_up_by_sid(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    created = emu_dial(emu_client, emu_hooks, "room-by-sid", "dee", "+14155550193")
    assert emu_error(emu_api(emu_url, "GET", "Conferences/room-by-sid.json")) == (404, 20404)
    not_ended = emu_api(
        emu_url, "POST", "Conferences/room-by-sid.json", data={"Status": "completed"}
    )
    assert emu_error(not_ended) == (404, 20404)
    assert emu_client.conferences(created.conference_sid).fetch().status in ("init", "in-progress")
    assert emu_error(emu_api(emu_url, "GET", "Calls/dee.json")) == (404, 20404)
    assert emu_error(emu_api(emu_url, "GET", f"Calls/CA{'0' * 32}.json")) == (404, 20404)
    # Create into a CF sid that names no live conference: Twilio cannot start one by sid.
    emu_client.conferences(created.conference_sid).update(status="completed")
    for sid in (created.conference_sid, "CF" + "0" * 32):
        with pytest.raises(TwilioRestException) as gone:
            emu_client.conferences(sid).participants.create(from_=CALLER_ID, to="+14155550194")
        assert (gone.value.status, gone.value.code) == (404, 20404)
    assert emu_get(emu_url, "creates").json()["total"] == 1


def test_list_filters_filter(emu_client: Client, emu_hooks: EmuHooks) -> None:
    first = emu_dial(emu_client, emu_hooks, "room-filter", "m1", "+14155550195")
    second = emu_dial(emu_client, emu_hooks, "room-filter", "m2", "+14155550196")
    third = emu_dial(emu_client, emu_hooks, "room-filter", "m3", "+14155550197")
    for participant in (first, second, third):
        emu_hooks.wait_event("participant-join", participant.call_sid)
    room = emu_client.conferences(first.conference_sid)
    room.participants("m1").update(muted=True)
    room.participants("m2").update(hold=True)
    room.participants("m3").update(call_sid_to_coach=first.call_sid)

    def labels(**filters: bool) -> list[str]:
        return [p.label for p in room.participants.list(**filters)]

    assert labels() == ["m1", "m2", "m3"]
    assert labels(muted=True) == ["m1"]
    assert labels(muted=False) == ["m2", "m3"]
    assert labels(hold=True) == ["m2"]
    assert labels(coaching=True) == ["m3"]
    assert labels(muted=False, hold=False) == ["m3"]
    assert labels(muted=True, hold=True) == []


def test_queue_time_is_only_in_the_create_answer(emu_client: Client, emu_hooks: EmuHooks) -> None:
    created = emu_dial(emu_client, emu_hooks, "room-queue", "q", "+14155550198")
    assert created.queue_time == "0"
    room = emu_client.conferences(created.conference_sid)
    assert room.participants("q").fetch().queue_time is None
    assert room.participants("q").update(muted=True).queue_time is None
    assert [p.queue_time for p in room.participants.list()] == [None]


def test_participant_status_follows_the_call(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    created = emu_dial(emu_client, emu_hooks, "room-status", "s", "+14155550002")
    assert created.status == "queued"
    emu_hooks.wait_event("ringing")
    room = emu_client.conferences(created.conference_sid)
    assert room.participants("s").fetch().status == "ringing"
    answered = emu_dial(emu_client, emu_hooks, "room-status", "t", "+14155550199")
    emu_hooks.wait_event("participant-join", answered.call_sid)
    assert room.participants("t").fetch().status == "connected"


def test_cancel_only_touches_a_queued_or_ringing_call(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    queued = emu_dial(emu_client, emu_hooks, "room-cx", "queued", "+14155550170", call_events=[])
    assert emu_client.calls(queued.call_sid).update(status="canceled").status == "canceled"
    answered = emu_dial(emu_client, emu_hooks, "room-cx", "up", "+14155550171")
    emu_hooks.wait_event("participant-join", answered.call_sid)
    before = emu_hooks.events(emu_hooks.for_call(answered.call_sid))
    untouched = emu_client.calls(answered.call_sid).update(status="canceled")
    assert untouched.status == "in-progress"
    room = emu_client.conferences(answered.conference_sid)
    assert room.participants("up").fetch().status == "connected"
    # An ended call is left as it is too, for either status.
    assert emu_client.calls(queued.call_sid).update(status="completed").status == "canceled"
    assert emu_client.calls(answered.call_sid).update(status="completed").status == "completed"
    emu_hooks.wait_event("completed", answered.call_sid)
    assert emu_client.calls(answered.call_sid).update(status="canceled").status == "completed"
    after = emu_hooks.events(emu_hooks.for_call(answered.call_sid))
    assert after[len(before) :] == ["participant-leave", "completed"]
    for status in ("in-progress", "ringing", "busy", "Completed"):
        refused = emu_api(
            emu_url, "POST", f"Calls/{answered.call_sid}.json", data={"Status": status}
        )
        assert emu_error(refused) == (400, 20001), status


def test_hanging_up_a_ringing_leg_cancels_it(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    ringing = emu_dial(emu_client, emu_hooks, "room-hu", "r1", "+14155550002")
    emu_hooks.wait_event("ringing", ringing.call_sid)
    assert emu_client.calls(ringing.call_sid).update(status="completed").status == "canceled"
    deleted = emu_dial(emu_client, emu_hooks, "room-hu2", "r2", "+14155550002")
    emu_hooks.wait_event("ringing", deleted.call_sid)
    assert emu_client.conferences(deleted.conference_sid).participants("r2").delete() is True
    emu_wait_status(emu_url, deleted.call_sid, "canceled")
    for call in (ringing, deleted):
        leave = emu_hooks.wait_event("participant-leave", call.call_sid)
        assert leave["ParticipantCallStatus"] == "canceled"
        assert leave["ReasonParticipantLeft"] == "participant_updated_via_api"
        events = [h.event for h in emu_hooks.for_call(call.call_sid)]
        assert events == ["initiated", "ringing", "canceled", "participant-leave"]


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


def test_the_first_participants_conference_callback_is_the_conferences(
    emu_client: Client, emu_hooks: EmuHooks
) -> None:
    first = emu_dial(
        emu_client,
        emu_hooks,
        "room-first",
        "first",
        "+14155550172",
        conference_events=["join", "leave", "end"],
        conference_callback="/first",
        conference_status_callback_method="GET",
    )
    emu_hooks.wait_event("participant-join", first.call_sid)
    second = emu_dial(
        emu_client, emu_hooks, "room-first", "second", "+14155550173", conference_callback="/later"
    )
    emu_hooks.wait_event("participant-join", second.call_sid)
    room = emu_client.conferences(first.conference_sid)
    room.participants("second").update(muted=True, hold=True)  # not asked for by the first
    room.update(status="completed")
    emu_hooks.wait_event("conference-end")
    conference_hooks = [h for h in emu_hooks.all() if "StatusCallbackEvent" in h.params]
    assert {h.path for h in conference_hooks} == {f"{emu_hooks.prefix}/first"}
    assert {h.method for h in conference_hooks} == {"GET"}
    events = [(h.event, h["CallSid"] if "CallSid" in h.params else None) for h in conference_hooks]
    assert sorted(events[:2]) == sorted(
        [("participant-join", first.call_sid), ("participant-join", second.call_sid)]
    )
    assert sorted(events[2:4]) == sorted(
        [("participant-leave", first.call_sid), ("participant-leave", second.call_sid)]
    )
    assert events[4:] == [("conference-end", None)]


def test_an_incoming_callers_twiml_callback_is_the_conferences(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    emu_hooks.serve("/voice", 200, emu_twiml("sess-first", emu_hooks.url("/from-twiml")))
    incoming = httpx.post(
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


def test_leave_and_end_callbacks_say_why(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    boss = emu_dial(
        emu_client, emu_hooks, "room-why", "boss", "+14155550175", end_conference_on_exit=True
    )
    staff = emu_dial(emu_client, emu_hooks, "room-why", "staff", "+14155550176")
    emu_hooks.wait_event("participant-join", staff.call_sid)
    emu_client.conferences(boss.conference_sid).participants("boss").delete()
    end = emu_hooks.wait_event("conference-end")
    assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-kicked"
    assert end["CallSidEndingConference"] == boss.call_sid
    leaves = {h["CallSid"]: h for h in emu_hooks.all() if h.event == "participant-leave"}
    assert leaves[boss.call_sid]["ReasonParticipantLeft"] == "participant_updated_via_api"
    assert leaves[staff.call_sid]["ReasonParticipantLeft"] == "moderator_ended_conference"
    assert {h["ParticipantCallStatus"] for h in leaves.values()} == {"completed"}
    ended = emu_client.conferences(boss.conference_sid).fetch()
    assert (ended.reason_conference_ended, ended.call_sid_ending_conference) == (
        "participant-with-end-conference-on-exit-kicked",
        boss.call_sid,
    )

    # Ended through the API, with a leg still ringing: it is cancelled and leaves too.
    host = emu_dial(emu_client, emu_hooks, "room-why-2", "host", "+14155550177")
    emu_hooks.wait_event("participant-join", host.call_sid)
    ringing = emu_dial(emu_client, emu_hooks, "room-why-2", "late", "+14155550002")
    emu_hooks.wait_event("ringing", ringing.call_sid)
    emu_client.conferences(host.conference_sid).update(status="completed")
    end = emu_wait(
        lambda: [h for h in emu_hooks.all() if h.event == "conference-end"][1:],
        message="the second conference-end",
    )[0]
    assert end["ReasonConferenceEnded"] == "conference-ended-via-api"
    assert "CallSidEndingConference" not in end.params
    late = emu_hooks.wait_event("participant-leave", ringing.call_sid)
    assert (late["ParticipantCallStatus"], late["ReasonParticipantLeft"]) == (
        "canceled",
        "conference_ended_via_api",
    )
    host_leave = emu_hooks.wait_event("participant-leave", host.call_sid)
    assert host_leave["ReasonParticipantLeft"] == "conference_ended_via_api"
    assert emu_hooks.all()[-1].event == "conference-end"


def test_participant_update_applies_what_twilio_takes(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    held = emu_dial(emu_client, emu_hooks, "room-upd", "held", "+14155550178")
    coachee = emu_dial(emu_client, emu_hooks, "room-upd", "coachee", "+14155550179")
    emu_hooks.wait_event("participant-join", coachee.call_sid)
    room = emu_client.conferences(held.conference_sid)
    updated = room.participants("held").update(
        hold=True,
        hold_url="https://example.com/hold.xml",
        hold_method="POST",
        announce_url="https://example.com/announce.xml",
        wait_url="https://example.com/wait.xml",
        beep_on_exit=False,
        end_conference_on_exit=True,
    )
    # EndConferenceOnExit changes are ignored while the participant is on hold.
    assert (updated.hold, updated.end_conference_on_exit) == (True, False)
    assert room.participants("held").update(end_conference_on_exit=True).end_conference_on_exit is (
        False
    )
    unheld = room.participants("held").update(hold=False, end_conference_on_exit=True)
    assert (unheld.hold, unheld.end_conference_on_exit) == (False, True)
    settings = emu_get(emu_url, f"calls/{held.call_sid}").json()["settings"]
    assert settings == {
        "HoldUrl": "https://example.com/hold.xml",
        "HoldMethod": "POST",
        "AnnounceUrl": "https://example.com/announce.xml",
        "WaitUrl": "https://example.com/wait.xml",
        "BeepOnExit": "false",
    }
    coach = room.participants("held").update(call_sid_to_coach=coachee.call_sid)
    assert (coach.coaching, coach.call_sid_to_coach) == (True, coachee.call_sid)
    assert room.participants("held").update(coaching=False).call_sid_to_coach is None
    path = f"Conferences/{held.conference_sid}/Participants/held.json"
    for form in (
        {"Coaching": "true"},
        {"CallSidToCoach": held.call_sid},
        {"CallSidToCoach": "CA" + "0" * 32},
        {"CallSidToCoach": "coachee"},
        {"HoldMethod": "PUT"},
    ):
        assert emu_error(emu_api(emu_url, "POST", path, data=form)) == (400, 20001), form
    assert room.participants("held").fetch().coaching is False


# ---------------------------------------------------------------------------- incoming


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
    response = httpx.post(
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

    httpx.post(f"{emu_url}/_emulator/calls/{incoming['callSid']}/hangup")
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
    response = httpx.post(
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
    incoming = httpx.post(
        f"{emu_url}/_emulator/incoming",
        data={"From": "+14155559200", "To": "+14155559201", "VoiceUrl": emu_hooks.url("/voice")},
    ).json()
    member = emu_dial(emu_client, emu_hooks, "sess-eoe", "m1", "+14155550140")
    emu_hooks.wait_event("participant-join", member.call_sid)

    httpx.post(f"{emu_url}/_emulator/calls/{incoming['callSid']}/hangup")
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
    response = httpx.post(
        f"{emu_url}/_emulator/incoming",
        data={"From": "+14155559300", "To": "+14155559301", "VoiceUrl": emu_hooks.url("/voice")},
    )
    assert response.status_code == 502
    assert response.json()["message"]


def test_incoming_without_a_voice_url_is_502() -> None:
    with EmuServer(create_app(ACCOUNT_SID, AUTH_TOKEN)) as server:
        response = httpx.post(
            f"{server.url}/_emulator/incoming", data={"From": "+14155559400", "To": "+14155559401"}
        )
    assert response.status_code == 502
    assert "voice URL" in response.json()["message"]


# ---------------------------------------------------------------------------- signatures


def test_tampered_webhooks_fail_validation(emu_client: Client, emu_hooks: EmuHooks) -> None:
    emu_dial(emu_client, emu_hooks, "room-sig", "sig", "+14155550150")
    hook = emu_hooks.wait_event("participant-join")
    validator = RequestValidator(AUTH_TOKEN)
    assert validator.validate(hook.url, hook.form, hook.signature)

    tampered = ImmutableMultiDict({**hook.params, "CallSid": "CA" + "f" * 32})
    assert not validator.validate(hook.url, tampered, hook.signature)
    assert not validator.validate(hook.url + "&x=1", hook.form, hook.signature)
    assert not RequestValidator("other-token").validate(hook.url, hook.form, hook.signature)


def test_repeated_keys_are_signed_with_every_value() -> None:
    url = "https://example.com/hook?session=1"
    params = {"StatusCallbackEvent": ["join", "leave"], "CallSid": "CA1"}
    signature = sign(AUTH_TOKEN, url, params)
    multi = ImmutableMultiDict(
        [("StatusCallbackEvent", "join"), ("StatusCallbackEvent", "leave"), ("CallSid", "CA1")]
    )
    assert RequestValidator(AUTH_TOKEN).validate(url, multi, signature)
    assert signature != sign(AUTH_TOKEN, url, {"StatusCallbackEvent": "join", "CallSid": "CA1"})


# ---------------------------------------------------------------------------- resilience


def test_unreachable_or_failing_callbacks_do_not_stop_the_call(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str
) -> None:
    dead = f"http://127.0.0.1:{emu_free_port()}/call-status"
    emu_hooks.serve("/conference-status", 500, "boom")
    participant = emu_client.conferences("room-dead").participants.create(
        from_=CALLER_ID,
        to="+14155550160",
        label="ghost",
        status_callback=dead,
        status_callback_event=ALL_CALL_EVENTS,
        conference_status_callback=emu_hooks.url("/conference-status"),
        conference_status_callback_event=ALL_CONFERENCE_EVENTS,
    )
    emu_hooks.wait_event("conference-start")
    inspected = emu_wait(
        lambda: (
            (body := emu_get(emu_url, f"calls/{participant.call_sid}").json())
            and len(body["failedCallbacks"]) == 3
            and len(body["callbacks"]) == 2
            and body
        ),
        message="3 failed call-progress and 2 answered conference callbacks",
    )
    assert [c["params"]["CallStatus"] for c in inspected["failedCallbacks"]] == [
        "initiated",
        "ringing",
        "in-progress",
    ]
    assert all(
        c["url"] == dead and "ConnectError" in c["error"] for c in inspected["failedCallbacks"]
    )
    assert [c["status"] for c in inspected["callbacks"]] == [500, 500]
    assert emu_get(emu_url, "health").json() == {"ok": True}


# ---------------------------------------------------------------------------- CLI


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


@pytest.fixture(scope="module")
def emu_cli() -> Iterator[str]:
    """``python -m emulator`` in a subprocess (credentials from the environment), via its front."""
    port = emu_free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TWILIO_REGION", "TWILIO_EDGE")}
    env.update(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port), "--ring-seconds", "0.05"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                return httpx.get(f"{url}/_emulator/health", timeout=1).json() == {"ok": True}
            except httpx.TransportError:
                return False

        emu_wait(healthy, timeout=15, message="python -m emulator to start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def emu_cli_url(emu_cli: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The subprocess emulator, reset; TWILIO_REGION/EDGE unset for clients built in the test."""
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    assert httpx.post(f"{emu_cli}/_emulator/reset").status_code == 200
    return emu_cli


def test_python_dash_m_emulator_serves(emu_cli_url: str) -> None:
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = emu_cli_url
    participant = client.conferences("cli").participants.create(
        from_=CALLER_ID, to="+14155550170", label="cli"
    )
    assert participant.status == "queued"
    assert emu_get(emu_cli_url, "creates").json()["byLabel"] == {"cli": 1}


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
def test_injected_faults_fail_the_next_creates(
    emu_client: Client, emu_hooks: EmuHooks, emu_url: str, status: int, code: int
) -> None:
    armed = httpx.post(f"{emu_url}/_emulator/faults", data={"status": status, "count": 2})
    assert armed.json() == {"remaining": 2, "served": 0}
    for _ in range(2):
        with pytest.raises(TwilioRestException) as failed:
            emu_dial(emu_client, emu_hooks, "room-fault", "fault", "+14155550100")
        assert (failed.value.status, failed.value.code) == (status, code)
    emu_dial(emu_client, emu_hooks, "room-fault", "fault", "+14155550100")
    assert emu_get(emu_url, "faults").json() == {"remaining": 0, "served": 2}
    assert emu_get(emu_url, "creates").json()["byLabel"] == {"fault": 1}


def test_only_retryable_statuses_can_be_injected(emu_url: str) -> None:
    response = httpx.post(f"{emu_url}/_emulator/faults", data={"status": 404, "count": 1})
    assert response.status_code == 400
    assert emu_get(emu_url, "faults").json()["remaining"] == 0


def emu_faults(url: str, **form: Any) -> httpx.Response:
    return httpx.post(f"{url}/_emulator/faults", data=form, timeout=5)


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
    state = emu_wait(
        lambda: (body := emu_get(emu_url, "faults").json())["remaining"] == 0 and body,
        message="the fault window to close",
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
    emu_wait(
        lambda: (
            [c["status"] for c in emu_get(emu_cli_url, "calls").json()["calls"]] == ["in-progress"]
        ),
        message="the timed-out participant's call to be answered",
    )
