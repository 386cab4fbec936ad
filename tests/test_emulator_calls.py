"""The emulator's calls end to end: real HTTP, the official twilio client, signed webhooks.

Each call plays out as Twilio's webhooks: call progress in order, conference events, the
final status and why a participant left or a conference ended, every one signed as Twilio
signs it. A failing or unreachable app never stops a call. The harness (emulator and webhook
receiver in-process, one URL namespace per test) is ``tests/support/emulator.py``.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

import pytest
from starlette.datastructures import ImmutableMultiDict
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from emulator.callbacks import sign
from orchestrator.launch import free_port, wait_until
from tests.support import net
from tests.support.emulator import (
    ACCOUNT_SID,
    ALL_CALL_EVENTS,
    ALL_CONFERENCE_EVENTS,
    AUTH_TOKEN,
    CALLER_ID,
    EmuHooks,
    emu_dial,
    emu_get,
)

pytest_plugins = ("tests.support.emulator",)


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
    inspected = wait_until(
        lambda: (
            (body := emu_get(emu_url, f"calls/{participant.call_sid}").json())
            and len(body["callbacks"]) == len(hooks)
            and body
        ),
        what="the emulator to record all 8 deliveries",
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
    second = emu_dial(emu_client, emu_hooks, "room-b", "m2", "+14155550107")
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

    response = net.post(f"{emu_url}/_emulator/calls/{participant.call_sid}/hangup")
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
    wait_until(
        lambda: emu_client.calls(participant.call_sid).fetch().status == "in-progress",
        what="answer",
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
    wait_until(
        lambda: emu_get(emu_url, f"calls/{participant.call_sid}").json()["status"] == expected[-1],
        what=f"final status {expected[-1]}",
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


# ---------------------------------------------------------------------------- conference callbacks


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
    end = wait_until(
        lambda: [h for h in emu_hooks.all() if h.event == "conference-end"][1:],
        what="the second conference-end",
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
    dead = f"http://127.0.0.1:{free_port()}/call-status"
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
    inspected = wait_until(
        lambda: (
            (body := emu_get(emu_url, f"calls/{participant.call_sid}").json())
            and len(body["failedCallbacks"]) == 3
            and len(body["callbacks"]) == 2
            and body
        ),
        what="3 failed call-progress and 2 answered conference callbacks",
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
