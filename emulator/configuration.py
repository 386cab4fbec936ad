"""The account's configuration: API keys, TwiML Apps (Applications) and phone numbers.

These resources hold no call state: they are what ``orchestrator twilio setup`` (and an
operator) create once and read back. The emulator keeps them in memory, for one account,
like everything else it knows, and forgets them on ``/_emulator/reset``. A phone number's
voice settings matter to calls: an incoming call (``/_emulator/incoming``) to one of the
account's numbers goes to that number's TwiML App's ``VoiceUrl``, else to its own
``VoiceUrl``, as Twilio routes it (``emulator/README.md``).

Each resource keeps its settings by their JSON key (``voice_url``), set from the form
parameter of the same name (``VoiceUrl``): the parameter names are Twilio's, in the order of
its description, with what a resource answers when one was never given.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from starlette.datastructures import FormData

from emulator import forms
from emulator.calls import API_VERSION, new_sid, utcnow
from emulator.numbers import formatted

#: Application settings (form parameter -> default), in Twilio's order.
APPLICATION_SETTINGS: dict[str, str | bool | None] = {
    "ApiVersion": API_VERSION,
    "VoiceUrl": None,
    "VoiceMethod": "POST",
    "VoiceFallbackUrl": None,
    "VoiceFallbackMethod": "POST",
    "StatusCallback": None,
    "StatusCallbackMethod": "POST",
    "VoiceCallerIdLookup": False,
    "SmsUrl": None,
    "SmsMethod": "POST",
    "SmsFallbackUrl": None,
    "SmsFallbackMethod": "POST",
    "SmsStatusCallback": None,
    "MessageStatusCallback": None,
    "PublicApplicationConnectEnabled": False,
}

#: IncomingPhoneNumber settings an API request may set (form parameter -> default).
NUMBER_SETTINGS: dict[str, str | bool | None] = {
    "ApiVersion": API_VERSION,
    "SmsApplicationSid": None,
    "SmsFallbackMethod": "POST",
    "SmsFallbackUrl": None,
    "SmsMethod": "POST",
    "SmsUrl": None,
    "StatusCallback": None,
    "StatusCallbackMethod": "POST",
    "VoiceApplicationSid": None,
    "VoiceCallerIdLookup": False,
    "VoiceFallbackMethod": "POST",
    "VoiceFallbackUrl": None,
    "VoiceMethod": "POST",
    "VoiceUrl": None,
    "EmergencyStatus": "Inactive",
    "EmergencyAddressSid": None,
    "TrunkSid": None,
    "IdentitySid": None,
    "AddressSid": None,
    "VoiceReceiveMode": "voice",
    "BundleSid": None,
}

#: The parameters among those that name a TwiML App of the account.
APPLICATION_SID_PARAMETERS = ("SmsApplicationSid", "VoiceApplicationSid")


def json_key(parameter: str) -> str:
    """``VoiceCallerIdLookup`` -> ``voice_caller_id_lookup``: Twilio's JSON key of a form
    parameter."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", parameter).lower()


def read_settings(
    form: FormData, defaults: dict[str, str | bool | None]
) -> dict[str, str | bool | None]:
    """The given ones of ``defaults``' parameters, by JSON key: booleans read as Twilio reads
    them, methods upper-cased; an empty value clears a setting (Twilio's way to unset a URL)."""
    settings: dict[str, str | bool | None] = {}
    for parameter, default in defaults.items():
        if parameter not in form:
            continue
        if isinstance(default, bool):
            settings[json_key(parameter)] = forms.flag(form, parameter, default)
            continue
        value = forms.text(form, parameter)
        if value is not None and parameter.endswith("Method"):
            value = value.upper()
        settings[json_key(parameter)] = value if value is not None else default
    return settings


def default_settings(defaults: dict[str, str | bool | None]) -> dict[str, str | bool | None]:
    """Every setting at its default, by JSON key."""
    return {json_key(parameter): value for parameter, value in defaults.items()}


@dataclass(eq=False)
class Key:
    """An API key (``SK...``): its secret is shown once, in the answer to its create."""

    sid: str
    friendly_name: str | None
    secret: str
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)


@dataclass(eq=False)
class Application:
    """A TwiML App (``AP...``): where calls it handles get their TwiML."""

    sid: str
    friendly_name: str | None
    settings: dict[str, str | bool | None]
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)


@dataclass(eq=False)
class PhoneNumber:
    """One of the account's phone numbers (``PN...``)."""

    sid: str
    phone_number: str
    friendly_name: str
    settings: dict[str, str | bool | None]
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)


class Directory:
    """The account's keys, TwiML Apps and phone numbers, in creation order."""

    def __init__(self) -> None:
        self.keys: dict[str, Key] = {}
        self.applications: dict[str, Application] = {}
        self.numbers: dict[str, PhoneNumber] = {}

    def new_key(self, friendly_name: str | None) -> Key:
        key = Key(new_sid("SK"), friendly_name, secrets.token_urlsafe(24)[:32])
        self.keys[key.sid] = key
        return key

    def new_application(
        self, friendly_name: str | None, settings: dict[str, str | bool | None]
    ) -> Application:
        merged = {**default_settings(APPLICATION_SETTINGS), **settings}
        application = Application(new_sid("AP"), friendly_name, merged)
        self.applications[application.sid] = application
        return application

    def new_number(
        self, phone_number: str, friendly_name: str | None, settings: dict[str, str | bool | None]
    ) -> PhoneNumber:
        merged = {**default_settings(NUMBER_SETTINGS), **settings}
        # Twilio names a new number after it, formatted, unless given a name.
        name = friendly_name or formatted_name(phone_number)
        number = PhoneNumber(new_sid("PN"), phone_number, name, merged)
        self.numbers[number.sid] = number
        return number

    def number_for(self, address: str) -> PhoneNumber | None:
        """The account's number ``address``, if it has one."""
        for number in self.numbers.values():
            if number.phone_number == address:
                return number
        return None

    def voice_url_for(self, address: str) -> str | None:
        """Where a call to ``address`` gets its TwiML: the number's TwiML App's ``VoiceUrl``
        when it has an App, else the number's own ``VoiceUrl``; None when ``address`` is no
        number of the account or neither is set."""
        number = self.number_for(address)
        if number is None:
            return None
        application_sid = number.settings.get("voice_application_sid")
        if isinstance(application_sid, str):
            application = self.applications.get(application_sid)
            if application is not None:
                url = application.settings.get("voice_url")
                return url if isinstance(url, str) else None
        url = number.settings.get("voice_url")
        return url if isinstance(url, str) else None

    def reset(self) -> None:
        """Forget every key, App and number (``/_emulator/reset``)."""
        self.keys.clear()
        self.applications.clear()
        self.numbers.clear()


def formatted_name(phone_number: str) -> str:
    """A new number's default friendly name, as Twilio gives it: ``(415) 555-0100``."""
    return formatted(phone_number)
