"""Reading the TwiML the emulator acts on: ``<Say>``, ``<Dial><Conference>``, ``<Hangup>``,
``<Reject>``.

An incoming call is only useful to the orchestrator once the caller sits in a conference, so
``parse_conference`` looks for the first ``<Conference>`` inside a ``<Dial>``. A softphone's
call follows the document verb by verb (``parse_verbs``): what is said is recorded (there is
no audio), a conference is joined, ``<Hangup>``/``<Reject>`` end the call. Every other verb
(``<Play>``, ``<Pause>``, ...) would merely make noise on a real call and is skipped.
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


@dataclass(frozen=True)
class Say:
    """``<Say>``: the text the caller hears."""

    text: str


@dataclass(frozen=True)
class Hangup:
    """``<Hangup/>``: the call ends."""


@dataclass(frozen=True)
class Reject:
    """``<Reject reason="rejected|busy"/>``: the call is refused (``reason`` as given)."""

    reason: str


Verb = Say | ConferenceTwiml | Hangup | Reject


def _root(document: str) -> ET.Element:
    try:
        root = ET.fromstring(document.strip())
    except ET.ParseError as exc:
        raise TwimlError(f"voice URL did not return XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"TwiML root must be <Response>, got <{root.tag}>")
    return root


def parse_conference(document: str, base_url: str) -> ConferenceTwiml | None:
    """Return the ``<Dial><Conference>`` of a TwiML document, or None when there is none.

    ``base_url`` is the voice URL the TwiML came from: Twilio resolves a relative
    ``statusCallback`` against it, and so does the emulator. Raises ``TwimlError`` when the
    document is not XML or its root is not ``<Response>``.
    """
    element = _root(document).find("./Dial/Conference")
    if element is None:
        return None
    return _conference(element, base_url)


def parse_verbs(document: str, base_url: str) -> list[Verb]:
    """The verbs of a TwiML document the emulator follows, in order.

    A ``<Dial>`` counts only for its ``<Conference>`` (a ``<Dial>`` of anything else is
    skipped); a ``<Reject>`` reason other than ``busy`` reads as ``rejected``, Twilio's
    default. Raises ``TwimlError`` as ``parse_conference`` does.
    """
    verbs: list[Verb] = []
    for element in _root(document):
        if element.tag == "Say":
            verbs.append(Say((element.text or "").strip()))
        elif element.tag == "Dial":
            conference = element.find("./Conference")
            if conference is not None:
                verbs.append(_conference(conference, base_url))
        elif element.tag == "Hangup":
            verbs.append(Hangup())
        elif element.tag == "Reject":
            reason = (element.get("reason") or "rejected").strip().lower()
            verbs.append(Reject("busy" if reason == "busy" else "rejected"))
    return verbs


def _conference(element: ET.Element, base_url: str) -> ConferenceTwiml:
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
