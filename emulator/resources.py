"""Twilio's JSON representations of participants, conferences, calls, keys, TwiML Apps,
phone numbers and list pages.

Field names, null-vs-absent and string-vs-number choices follow api.twilio.com, because the
official client maps these payloads onto instance attributes (and parses dates as RFC 2822):
an app that works against these shapes works against Twilio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from emulator.calls import API_VERSION, Call, Conference, rfc2822
from emulator.configuration import Application, Key, PhoneNumber
from emulator.numbers import formatted

_PARTICIPANT_STATUS = {
    "ringing": "ringing",
    "in-progress": "connected",
    "completed": "complete",
}

#: ``queue_time`` of a create: the emulator places every call at once (Twilio reports the
#: milliseconds a call waited for the account's calls-per-second limit).
CREATE_QUEUE_TIME = "0"

#: Sub-resources Twilio lists on a Call and a Conference (the keys of its own examples).
CALL_SUBRESOURCES = {
    "notifications": "Notifications.json",
    "recordings": "Recordings.json",
    "payments": "Payments.json",
    "events": "Events.json",
    "siprec": "Siprec.json",
    "streams": "Streams.json",
    "transcriptions": "Transcriptions.json",
    "user_defined_message_subscriptions": "UserDefinedMessageSubscriptions.json",
    "user_defined_messages": "UserDefinedMessages.json",
}
CONFERENCE_SUBRESOURCES = {
    "participants": "Participants.json",
    "recordings": "Recordings.json",
}


def account_uri(account_sid: str) -> str:
    """Path prefix of every account resource."""
    return f"/{API_VERSION}/Accounts/{account_sid}"


def participant_status(call: Call) -> str:
    """Participant status: queued, connecting, ringing, connected, complete or failed.

    A call Twilio has started placing but that is not ringing yet is ``connecting``; a call
    that ended without being answered (busy, no-answer, failed, canceled) is ``failed``.
    """
    if call.status == "queued":
        return "connecting" if call.dialled else "queued"
    return _PARTICIPANT_STATUS.get(call.status, "failed")


def participant_json(account_sid: str, call: Call, *, created: bool = False) -> dict[str, Any]:
    """A Participant resource; ``queue_time`` only in the answer to its create, as on Twilio."""
    conference = call.conference
    conference_sid = conference.sid if conference is not None else None
    return {
        "account_sid": account_sid,
        "call_sid": call.sid,
        "label": call.label,
        "call_sid_to_coach": call.call_sid_to_coach,
        "coaching": call.coaching,
        "conference_sid": conference_sid,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "end_conference_on_exit": call.end_conference_on_exit,
        "muted": call.muted,
        "hold": call.hold,
        "start_conference_on_enter": call.start_conference_on_enter,
        "status": participant_status(call),
        "queue_time": CREATE_QUEUE_TIME if created else None,
        "uri": (
            f"{account_uri(account_sid)}/Conferences/{conference_sid}/Participants/{call.sid}.json"
        ),
    }


def conference_json(account_sid: str, conference: Conference) -> dict[str, Any]:
    """A Conference resource."""
    base = f"{account_uri(account_sid)}/Conferences/{conference.sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "call_sid_ending_conference": conference.call_sid_ending,
        "date_created": rfc2822(conference.date_created),
        "date_updated": rfc2822(conference.date_updated),
        "friendly_name": conference.friendly_name,
        "reason_conference_ended": conference.reason_ended,
        "region": "us1",
        "sid": conference.sid,
        "status": conference.status,
        "subresource_uris": {
            key: f"{base}/{leaf}" for key, leaf in CONFERENCE_SUBRESOURCES.items()
        },
        "uri": f"{base}.json",
    }


def call_json(account_sid: str, call: Call) -> dict[str, Any]:
    """A Call resource: exactly the keys of Twilio's Call schema."""
    base = f"{account_uri(account_sid)}/Calls/{call.sid}"
    return {
        "account_sid": account_sid,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "direction": call.direction,
        "duration": str(call.duration_seconds()) if call.ended else None,
        "end_time": rfc2822(call.ended_at),
        "forwarded_from": None,
        "from": call.from_,
        "from_formatted": formatted(call.from_),
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": rfc2822(call.started_at),
        "status": call.status,
        "subresource_uris": {key: f"{base}/{leaf}" for key, leaf in CALL_SUBRESOURCES.items()},
        "to": call.to,
        "to_formatted": formatted(call.to),
        "trunk_sid": None,
        "uri": f"{base}.json",
    }


def page_json(
    key: str,
    records: list[dict[str, Any]],
    uri: str,
    page: int = 0,
    page_size: int = 50,
    *,
    filters: Sequence[tuple[str, str]] = (),
    page_token: str | None = None,
    sid_key: str = "sid",
) -> dict[str, Any]:
    """One page of a list in Twilio's (2010-04-01) paging shape, records under ``key``.

    Every page URI repeats the list's ``filters`` before ``PageSize`` and ``Page``, as
    Twilio's do (``...Participants.json?Hold=true&PageSize=50&Page=0``), so following
    ``next_page_uri`` keeps filtering. Next and previous pages also carry a ``PageToken``
    (``PA`` + the last record's sid, ``PB`` + the first one's) like Twilio's; the emulator
    pages by ``Page`` and only echoes the token it was given in ``uri``.
    """
    start = page * page_size
    chunk = records[start : start + page_size]
    more = start + page_size < len(records)

    def page_uri(number: int, token: str | None = None) -> str:
        query = [*filters, ("PageSize", str(page_size)), ("Page", str(number))]
        if token:
            query.append(("PageToken", token))
        return f"{uri}?{urlencode(query)}"

    next_token = "PA" + chunk[-1][sid_key] if chunk else None
    # A page past the end still points back: before the last record there is.
    before = chunk[0] if chunk else (records[-1] if records else None)
    previous_token = "PB" + before[sid_key] if before is not None else None
    return {
        key: chunk,
        "page": page,
        "page_size": page_size,
        "start": start,
        "end": start + len(chunk) - 1 if chunk else start,
        "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(page + 1, next_token) if more else None,
        "previous_page_uri": page_uri(page - 1, previous_token) if page > 0 else None,
        "uri": page_uri(page, page_token),
    }


def key_json(key: Key, *, created: bool = False) -> dict[str, Any]:
    """A Key resource; only the answer to its create (``new_key``) carries the secret."""
    body: dict[str, Any] = {
        "sid": key.sid,
        "friendly_name": key.friendly_name,
        "date_created": rfc2822(key.date_created),
        "date_updated": rfc2822(key.date_updated),
    }
    if created:
        body["secret"] = key.secret
    return body


def application_json(account_sid: str, application: Application) -> dict[str, Any]:
    """An Application (TwiML App) resource."""
    return {
        "account_sid": account_sid,
        "date_created": rfc2822(application.date_created),
        "date_updated": rfc2822(application.date_updated),
        "friendly_name": application.friendly_name,
        "sid": application.sid,
        "uri": f"{account_uri(account_sid)}/Applications/{application.sid}.json",
        **application.settings,
    }


#: What every number of the emulator is: a local Twilio number, voice, SMS and MMS capable,
#: with no address requirement and no emergency address registered.
NUMBER_FIXED: dict[str, Any] = {
    "address_requirements": "none",
    "beta": False,
    "emergency_address_status": "unregistered",
    "origin": "twilio",
    "status": "in-use",
    "type": "local",
}


def incoming_phone_number_json(account_sid: str, number: PhoneNumber) -> dict[str, Any]:
    """An IncomingPhoneNumber resource."""
    return {
        "account_sid": account_sid,
        "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
        "date_created": rfc2822(number.date_created),
        "date_updated": rfc2822(number.date_updated),
        "friendly_name": number.friendly_name,
        "phone_number": number.phone_number,
        "sid": number.sid,
        "uri": f"{account_uri(account_sid)}/IncomingPhoneNumbers/{number.sid}.json",
        **NUMBER_FIXED,
        **number.settings,
    }
