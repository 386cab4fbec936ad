"""Twilio's documented rules, as the emulator enforces them on REST requests.

Credentials, accounts and unknown resources; ``To``/``From`` validation; conferences and
calls looked up by sid; list filters and pages; what cancel, hang-up and participant
updates may do. ``tests/test_conformance.py`` checks the answers' shapes against Twilio's
OpenAPI description; this module checks the behaviour behind them.
"""

from __future__ import annotations

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.support import net
from tests.support.emulator import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CALLER_ID,
    EmuHooks,
    emu_api,
    emu_dial,
    emu_get,
    emu_wait_status,
)

pytest_plugins = ("tests.support.emulator",)


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

    anonymous = net.get(f"{emu_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/x.json")
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert emu_get(emu_url, "creates").json()["total"] == 0


def test_other_account_and_unknown_resources_are_404(emu_url: str) -> None:
    other = net.get(
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


# ---------------------------------------------------------------------------- Twilio's rules


def emu_error(response: httpx.Response) -> tuple[int, int]:
    return response.status_code, response.json()["code"]


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
