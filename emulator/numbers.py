"""Which addresses Twilio accepts, and how each callee behaves when dialled.

The emulator has no real phones, so the callee address itself scripts the call. Keeping the
table in one place means tests, the README and the playback code cannot disagree about it:

==================================  ===================================================
To                                  outcome
==================================  ===================================================
not E.164 / ``client:`` / ``sip:``  rejected synchronously: 400, code 21211
E.164 ending in ``0004``            rejected synchronously: 400, code 21211 (undialable)
E.164 ending in ``0001``            initiated -> ringing -> busy
E.164 ending in ``0002``            initiated -> ringing -> no-answer (after no_answer_seconds)
E.164 ending in ``0003``            initiated -> failed
``client:<identity>``               as its registered softphone answers (below); with none,
                                    initiated -> ringing -> no-answer (after no_answer_seconds)
anything else                       initiated -> ringing -> answered (after ring_seconds)
==================================  ===================================================

A ``client:`` callee is a Voice SDK softphone: ``outcome_for`` gives what happens when no
softphone is registered under that identity (Twilio rings nobody), and the ``Switchboard``
asks ``emulator.softphones`` first, where a registered one answers, declines (``busy``) or
ignores the call (``no-answer``).
"""

from __future__ import annotations

import enum
import re

_E164 = re.compile(r"^\+[0-9]{8,15}$")
_NANP = re.compile(r"^\+1([0-9]{3})([0-9]{3})([0-9]{4})$")


class Outcome(enum.Enum):
    """What happens to a dialled call once it has been initiated."""

    ANSWER = "answer"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"


def is_e164(address: str) -> bool:
    """``+`` followed by 8 to 15 digits, the only phone-number form Twilio's API takes."""
    return bool(_E164.match(address))


def is_client(address: str) -> bool:
    """A Twilio Client (Voice SDK) identity, ``client:<identity>`` with a non-empty identity."""
    return address.startswith("client:") and len(address) > len("client:")


def is_sip(address: str) -> bool:
    """A SIP URI; the emulator does not look past the scheme."""
    return address.startswith("sip:") and len(address) > len("sip:")


def valid_to(address: str) -> bool:
    """Whether Twilio would accept ``address`` as a participant's ``To``.

    A well-formed number ending in 0004 is refused too: Twilio rejects numbers that look
    fine but cannot be dialled, and callers need a way to play that path.
    """
    if is_e164(address):
        return not address.endswith("0004")
    return is_client(address) or is_sip(address)


def valid_from(address: str) -> bool:
    """Whether Twilio would accept ``address`` as a participant's ``From`` (caller id)."""
    return is_e164(address) or is_client(address)


def formatted(address: str) -> str:
    """``to_formatted``/``from_formatted`` of a Call: North American numbers as
    ``(415) 555-0100``, every other address as it is (Twilio's own examples)."""
    match = _NANP.match(address)
    if match is None:
        return address
    area, exchange, line = match.groups()
    return f"({area}) {exchange}-{line}"


def outcome_for(to: str) -> Outcome:
    """Script for a (valid) callee: see the module table."""
    if is_e164(to):
        if to.endswith("0001"):
            return Outcome.BUSY
        if to.endswith("0002"):
            return Outcome.NO_ANSWER
        if to.endswith("0003"):
            return Outcome.FAILED
        return Outcome.ANSWER
    if is_client(to):
        return Outcome.NO_ANSWER  # no softphone registered: see ``emulator.softphones``
    return Outcome.ANSWER
