"""E.164 phone numbers, parsed the way people type them."""

from __future__ import annotations

import phonenumbers


class InvalidPhoneNumber(ValueError):
    """The text is not a valid, dialable phone number."""


def normalise(text: str, region: str = "US") -> str:
    """Return `text` as E.164, reading national formats in `region`.

    Only numbers `phonenumbers` calls valid pass: dialling a number that cannot
    exist costs a Twilio error and leaves the agent waiting on a dead member. A
    number typed without "+" is one of `region` itself (docs/api.md): read in the
    US, "416 200 0000" would otherwise quietly become a Canadian number, which
    neither the agent nor the API's description of a national number meant.
    """
    if "+" in text.strip()[1:]:
        # phonenumbers skips a stray "+" ("2012000000+", "++1..."): not a number as typed.
        raise InvalidPhoneNumber(f"{text!r} has a '+' that is not its first character")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(str(exc)) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(f"{text!r} is not a valid phone number")
    if not text.strip().startswith("+") and not phonenumbers.is_valid_number_for_region(
        number, region
    ):
        raise InvalidPhoneNumber(
            f"{text!r} is not a number of {region}; give another country's number "
            "with + and its country code"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def display(e164: str) -> str:
    """Human form for display names, e.g. +1 415-555-0100."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
