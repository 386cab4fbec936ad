"""Reading the one TwiML shape the emulator acts on: ``<Dial><Conference>``.

An incoming call is only useful to the orchestrator once the caller sits in a conference, so
the emulator looks for the first ``<Conference>`` inside a ``<Dial>`` and ignores every other
verb (``<Say>``, ``<Play>``, ...), which would merely make noise on a real call.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin


class TwimlError(ValueError):
    """The voice app's answer is not TwiML the emulator can follow."""


@dataclass(frozen=True)
class ConferenceTwiml:
    """The attributes of ``<Conference>`` that shape the caller's participation."""

    name: str
    status_callback: str | None
    status_callback_method: str
    status_callback_events: tuple[str, ...]
    muted: bool
    start_conference_on_enter: bool
    end_conference_on_exit: bool
    participant_label: str | None


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() == "true"


def parse_conference(document: str, base_url: str) -> ConferenceTwiml | None:
    """Return the ``<Dial><Conference>`` of a TwiML document, or None when there is none.

    ``base_url`` is the voice URL the TwiML came from: Twilio resolves a relative
    ``statusCallback`` against it, and so does the emulator. Raises ``TwimlError`` when the
    document is not XML or its root is not ``<Response>``.
    """
    try:
        root = ET.fromstring(document.strip())
    except ET.ParseError as exc:
        raise TwimlError(f"voice URL did not return XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"TwiML root must be <Response>, got <{root.tag}>")
    element = root.find("./Dial/Conference")
    if element is None:
        return None
    name = (element.text or "").strip()
    if not name:
        raise TwimlError("<Conference> has no conference name")
    callback = element.get("statusCallback")
    events = (element.get("statusCallbackEvent") or "").replace(",", " ").split()
    return ConferenceTwiml(
        name=name,
        status_callback=urljoin(base_url, callback) if callback else None,
        status_callback_method=(element.get("statusCallbackMethod") or "POST").upper(),
        status_callback_events=tuple(events),
        muted=_flag(element.get("muted"), False),
        start_conference_on_enter=_flag(element.get("startConferenceOnEnter"), True),
        end_conference_on_exit=_flag(element.get("endConferenceOnExit"), False),
        participant_label=element.get("participantLabel") or None,
    )
