"""Where Twilio calls us back: built in one place for the web, the worker and
the docs, because a signature only validates if all agree on the exact URL.

Every URL carries Twilio's connection overrides in its fragment, so that a
callback refused while Redis is away (503) or lost on the way is sent again
(with the same I-Twilio-Idempotency-Token, which the scripts apply once).
Twilio never sends the fragment and signs the URL without it; the webhooks
check the signature against PUBLIC_BASE_URL + path + query, fragment-free.
"""

from __future__ import annotations

from urllib.parse import urlencode

CONFERENCE_EVENTS = ("start", "end", "join", "leave", "mute", "hold")
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")

#: Twilio's connection overrides (its documented ranges in brackets):
#: connect within 2 s [100-10000 ms] and answer within 4 s [100-15000], so a
#: stuck attempt leaves time for the next; retry up to 5 times [0-5] on a
#: connect or read timeout and on any 5xx; all attempts within 15 s
#: [100-15000], Twilio's own ceiling for a call-related request. The webhooks
#: answer in milliseconds, so only an outage ever spends this budget.
CONNECTION_OVERRIDES = (
    ("ct", "2000"),
    ("rt", "4000"),
    ("tt", "15000"),
    ("rc", "5"),
    ("rp", "ct,rt,5xx"),
)
OVERRIDES_FRAGMENT = "#" + "&".join(f"{k}={v}" for k, v in CONNECTION_OVERRIDES)


def without_fragment(url: str) -> str:
    """The URL Twilio requests and signs: everything before the fragment."""
    return url.partition("#")[0]


def voice(public_base_url: str) -> str:
    """The number's "A call comes in" webhook, as an operator sets it at Twilio."""
    return f"{public_base_url}/twilio/voice{OVERRIDES_FRAGMENT}"


def conference_status(public_base_url: str) -> str:
    return f"{public_base_url}/twilio/conference-status{OVERRIDES_FRAGMENT}"


def call_status(public_base_url: str, session_id: str, member_id: str) -> str:
    query = urlencode({"session": session_id, "member": member_id})
    return f"{public_base_url}/twilio/call-status?{query}{OVERRIDES_FRAGMENT}"
