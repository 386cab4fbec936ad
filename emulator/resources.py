"""Twilio's JSON representations of participants, conferences, calls and list pages.

Field names, null-vs-absent and string-vs-number choices follow api.twilio.com, because the
official client maps these payloads onto instance attributes (and parses dates as RFC 2822):
an app that works against these shapes works against Twilio.
"""

from __future__ import annotations

from typing import Any

from emulator.calls import API_VERSION, Call, Conference, rfc2822

_PARTICIPANT_STATUS = {
    "queued": "queued",
    "ringing": "ringing",
    "in-progress": "connected",
    "completed": "complete",
}


def account_uri(account_sid: str) -> str:
    """Path prefix of every account resource."""
    return f"/{API_VERSION}/Accounts/{account_sid}"


def participant_status(call: Call) -> str:
    """Participant status: queued, ringing, connected, complete or failed."""
    return _PARTICIPANT_STATUS.get(call.status, "failed")


def participant_json(account_sid: str, call: Call) -> dict[str, Any]:
    """A Participant resource."""
    conference = call.conference
    conference_sid = conference.sid if conference is not None else None
    return {
        "account_sid": account_sid,
        "call_sid": call.sid,
        "label": call.label,
        "call_sid_to_coach": None,
        "coaching": False,
        "conference_sid": conference_sid,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "end_conference_on_exit": call.end_conference_on_exit,
        "muted": call.muted,
        "hold": call.hold,
        "start_conference_on_enter": call.start_conference_on_enter,
        "status": participant_status(call),
        "queue_time": "0",
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
            "participants": f"{base}/Participants.json",
            "recordings": f"{base}/Recordings.json",
        },
        "uri": f"{base}.json",
    }


def call_json(account_sid: str, call: Call) -> dict[str, Any]:
    """A Call resource."""
    base = f"{account_uri(account_sid)}/Calls/{call.sid}"
    return {
        "account_sid": account_sid,
        "annotation": None,
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
        "from_formatted": call.from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": rfc2822(call.answered_at),
        "status": call.status,
        "subresource_uris": {
            "notifications": f"{base}/Notifications.json",
            "recordings": f"{base}/Recordings.json",
            "events": f"{base}/Events.json",
        },
        "to": call.to,
        "to_formatted": call.to,
        "trunk_sid": None,
        "uri": f"{base}.json",
    }


def page_json(
    key: str,
    records: list[dict[str, Any]],
    uri: str,
    page: int = 0,
    page_size: int = 50,
) -> dict[str, Any]:
    """One page of a list in Twilio's (2010-04-01) paging shape, records under ``key``."""
    start = page * page_size
    chunk = records[start : start + page_size]
    more = start + page_size < len(records)

    def page_uri(number: int) -> str:
        return f"{uri}?PageSize={page_size}&Page={number}"

    return {
        key: chunk,
        "page": page,
        "page_size": page_size,
        "start": start,
        "end": start + len(chunk) - 1 if chunk else start,
        "first_page_uri": page_uri(0),
        "next_page_uri": page_uri(page + 1) if more else None,
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        "uri": page_uri(page),
    }
