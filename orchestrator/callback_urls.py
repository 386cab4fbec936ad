"""Where Twilio calls us back: built in one place for the web and the worker,
because a signature only validates if both agree on the exact URL."""

from __future__ import annotations

from urllib.parse import urlencode

CONFERENCE_EVENTS = ("start", "end", "join", "leave", "mute", "hold")
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")


def conference_status(public_base_url: str) -> str:
    return f"{public_base_url}/twilio/conference-status"


def call_status(public_base_url: str, session_id: str, member_id: str) -> str:
    query = urlencode({"session": session_id, "member": member_id})
    return f"{public_base_url}/twilio/call-status?{query}"
