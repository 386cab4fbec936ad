"""Calls an agent places (docs/api.md#calls-agents-place): what the agent dialled, read
once for both ways of placing one (the softphone's call through the TwiML App, and
click to call), and why one is refused, in the words an agent hears or reads.

A refusal is decided before anything is stored or dialled: the destination must be a
number (in any format PHONE_DEFAULT_REGION reads) or a user of the account, and a
number must be one the dial policy allows (orchestrator/dial_policy.py). The
account's own country list is read by the script that creates the session, in the
same step, so this module gives it the number's country and the default list.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import dial_policy
from orchestrator.phone import InvalidPhoneNumber, normalise
from orchestrator.settings import Settings
from orchestrator.store import Outgoing, OutgoingResult


@dataclass(frozen=True)
class Refusal:
    """Why a call is not placed: `code` is the API's errorCode, `reason` plain words that
    make sense both spoken to the agent and after the API's field name."""

    code: str
    reason: str


def is_user_ref(text: str) -> bool:
    """A user of the account, named by its id or email, rather than a number."""
    return "@" in text or text.startswith("usr_")


def plan(
    settings: Settings, user_id: str, dialled: str, caller_id: str | None
) -> Outgoing | Refusal:
    """The call `user_id` asks for, or why it cannot be placed. `caller_id` is used only
    if it is one of the account's numbers; one that is no number is left out."""
    dialled = dialled.strip()
    if not dialled:
        return Refusal("NotEmpty", "no number was dialled")
    asked = None
    if caller_id and caller_id.strip():
        try:
            asked = normalise(caller_id, settings.phone_region)
        except InvalidPhoneNumber:
            asked = None
    if is_user_ref(dialled):
        return Outgoing(user_id, "user", dialled.lower(), dialled, "", (), asked)
    try:
        e164 = normalise(dialled, settings.phone_region)
    except InvalidPhoneNumber:
        return Refusal(
            "InvalidPhoneNumber",
            f"{dialled} is not a phone number, nor the ID or email of a user of this account",
        )
    why = dial_policy.never_dialled(e164)
    if why is not None:
        return Refusal("DialNotAllowed", why)
    return Outgoing(
        user_id,
        "phone",
        e164,
        dialled,
        dial_policy.country(e164),
        settings.dial_countries,
        asked,
    )


def refused(call: Outgoing, result: OutgoingResult) -> Refusal | None:
    """Why the script did not create the session, None if it did (or had before)."""
    if result.outcome in ("created", "exists"):
        return None
    if result.outcome == "notallowed":
        countries = [c for c in result.allowed.split(",") if c]
        why = dial_policy.country_refusal(call.ref, countries)
        return Refusal("DialNotAllowed", why or f"{call.ref} may not be dialled")
    if result.outcome == "nodest":
        return Refusal("NotFound", f"there is no user {call.dialled} in this account")
    if result.outcome == "self":
        return Refusal("InvalidValue", "an agent cannot call themselves")
    return Refusal("NoUser", "this softphone is not signed in as a user of this service")
