"""Reading request parameters as Twilio reads them, and refusing what its description rules out.

Twilio's OpenAPI description of API v2010 declares, for each parameter, its type and any
pattern, bound or enum. This module is where those rules live, so the REST handlers only ask
for values: ``To``/``From`` of a create, booleans read the way Twilio reads them, an update's
``Status``, list paging and filters. A refused value is a ``TwilioError`` with Twilio's code
(``emulator/README.md``, "Twilio's rules the emulator enforces", lists them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from starlette.datastructures import FormData, ImmutableMultiDict

from emulator import numbers
from emulator.errors import bad_request

#: Sid patterns of Twilio's description (``^CF[0-9a-fA-F]{32}$``, ...).
CONFERENCE_SID = re.compile(r"CF[0-9a-fA-F]{32}")
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")

#: Form parameters whose value must be a sid of one kind, with that kind's prefix.
SID_PARAMETERS = {
    "CallSidToCoach": "CA",
    "Byoc": "BY",
    "AccountSid": "AC",
    "ApplicationSid": "AP",
    "VoiceApplicationSid": "AP",
    "SmsApplicationSid": "AP",
    "AddressSid": "AD",
    "EmergencyAddressSid": "AD",
    "IdentitySid": "RI",
    "TrunkSid": "TK",
    "BundleSid": "BU",
}

#: Form parameters with an enum of their own (``Status`` is read by ``update_status``).
ENUM_PARAMETERS = {
    "EmergencyStatus": ("Active", "Inactive"),
    "VoiceReceiveMode": ("voice", "fax"),
}

#: Twilio's Call ``status`` values (``call_enum_status``): the Calls list's ``Status`` filter.
CALL_STATUSES = (
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
)

#: The Calls list's time filters, in the order of Twilio's description and its page URIs.
CALL_TIME_FILTERS = ("StartTime", "StartTime<", "StartTime>", "EndTime", "EndTime<", "EndTime>")

#: Participant parameters stored as given (no audio here) and shown by ``/_emulator/calls``.
STORED_CREATE_PARAMETERS = ("WaitUrl", "WaitMethod", "Beep", "Timeout", "EarlyMedia")
STORED_UPDATE_PARAMETERS = (
    "HoldUrl",
    "HoldMethod",
    "AnnounceUrl",
    "AnnounceMethod",
    "WaitUrl",
    "WaitMethod",
    "BeepOnExit",
)

#: List filters of the Participants list, in the order Twilio's page URIs repeat them.
PARTICIPANT_FILTERS = (("Muted", "muted"), ("Hold", "hold"), ("Coaching", "coaching"))

#: The ``Status`` values an update may set (Twilio's update-status enums).
CALL_UPDATE_STATUSES = ("canceled", "completed")
CONFERENCE_UPDATE_STATUSES = ("completed",)

#: Twilio's error code for a parameter value outside what its description allows.
INVALID_PARAMETER = 20001


def flag(form: ImmutableMultiDict, key: str, default: bool) -> bool:
    """A boolean parameter, ``default`` when absent."""
    # Twilio reads "true" (any case) as true and every other value as false.
    value = form.get(key)
    if value is None or not isinstance(value, str):
        return default
    return value.strip().lower() == "true"


def optional_flag(form: ImmutableMultiDict, key: str) -> bool | None:
    """A boolean parameter, None when absent (an update that leaves it alone)."""
    value = form.get(key)
    if value is None or not isinstance(value, str):
        return None
    return value.strip().lower() == "true"


def text(form: FormData, key: str) -> str | None:
    """A text parameter; absent and empty are the same (None)."""
    value = form.get(key)
    if value is None or not isinstance(value, str) or value == "":
        return None
    return value


def texts(form: FormData, key: str) -> list[str]:
    """Every value of a repeated parameter (``StatusCallbackEvent``), in order."""
    return [v for v in form.getlist(key) if isinstance(v, str)]


def stored(form: FormData, keys: tuple[str, ...]) -> dict[str, str]:
    """The given ones of ``keys``, as given: parameters kept but not played."""
    return {key: value for key in keys if (value := text(form, key)) is not None}


def as_params(form: FormData | None) -> dict[str, str | list[str]]:
    """A request's form as the call's record shows it: a repeated key as a list."""
    params: dict[str, str | list[str]] = {}
    for key in dict.fromkeys(form.keys()) if form is not None else ():
        values = texts(form, key)
        params[key] = values[0] if len(values) == 1 else values
    return params


def check_parameters(form: FormData) -> None:
    """Refuse values Twilio's description rules out, for every operation alike.

    Each ``...Method`` parameter is ``GET`` or ``POST`` (any case), and a sid parameter
    (``CallSidToCoach``, ``Byoc``) has its kind's prefix and 32 hex digits. Unknown
    parameters are ignored, as Twilio ignores them.
    """
    for key, value in form.multi_items():
        if not isinstance(value, str):
            continue
        if key.endswith("Method") and value.upper() not in ("GET", "POST"):
            raise bad_request(INVALID_PARAMETER, f"{key} must be GET or POST, not {value!r}")
        prefix = SID_PARAMETERS.get(key)
        if prefix is not None and value != "" and not is_sid(prefix, value):
            raise bad_request(INVALID_PARAMETER, f"{key} {value!r} is not a valid {prefix} sid")
        allowed = ENUM_PARAMETERS.get(key)
        if allowed is not None and value not in allowed:
            raise bad_request(
                INVALID_PARAMETER, f"{key} must be one of {', '.join(allowed)}, not {value!r}"
            )


def is_sid(prefix: str, value: str) -> bool:
    """Whether ``value`` is a sid of the kind ``prefix`` names (``^CA[0-9a-fA-F]{32}$``)."""
    return re.fullmatch(prefix + "[0-9a-fA-F]{32}", value) is not None


def addresses(form: FormData) -> tuple[str, str]:
    """A create's ``To`` and ``From``: required, and each an address Twilio can use.

    Checked in Twilio's order, so a request with several faults gets the code Twilio gives:
    missing ``To`` (21604), missing ``From`` (21603), invalid ``To`` (21211), invalid
    ``From`` (21212).
    """
    to = text(form, "To")
    from_ = text(form, "From")
    if to is None:
        raise bad_request(21604, "'To' is required")
    if from_ is None:
        raise bad_request(21603, "'From' is required")
    if not numbers.valid_to(to):
        raise bad_request(21211, f"The 'To' number {to} is not a valid phone number.")
    if not numbers.valid_from(from_):
        raise bad_request(
            21212,
            f"The 'From' number {from_} is not a valid phone number, shortcode, "
            "or alphanumeric sender ID.",
        )
    return to, from_


def update_status(form: FormData, allowed: tuple[str, ...]) -> str | None:
    """An update's ``Status``, which must be one of ``allowed`` when given."""
    status = text(form, "Status")
    if status is not None and status not in allowed:
        raise bad_request(
            INVALID_PARAMETER,
            f"Invalid Status {status!r}: must be one of {', '.join(allowed)}",
        )
    return status


def paging(query: Mapping[str, str]) -> tuple[int, int]:
    """``Page`` (>= 0) and ``PageSize`` (1 to 1000), as Twilio's description bounds them."""
    try:
        page_size = int(query.get("PageSize", "50"))
        page = int(query.get("Page", "0"))
    except ValueError:
        raise bad_request(INVALID_PARAMETER, "Invalid paging parameters") from None
    if not 1 <= page_size <= 1000 or page < 0:
        raise bad_request(INVALID_PARAMETER, "Page must be >= 0 and PageSize between 1 and 1000")
    return page, page_size


def participant_filters(query: ImmutableMultiDict) -> list[tuple[str, str, bool]]:
    """The list filters given, as ``(parameter, Call attribute, wanted value)``."""
    return [
        (key, attribute, value)
        for key, attribute in PARTICIPANT_FILTERS
        if (value := optional_flag(query, key)) is not None
    ]


@dataclass(frozen=True)
class TimeFilter:
    """One of the Calls list's ``StartTime``/``EndTime`` filters, as an interval of instants.

    A date (``2026-12-06``, Twilio's documented form) covers that whole UTC day; a date and
    time (``2026-12-06T21:40:00Z``, what the ``twilio`` client sends for a ``datetime``)
    is that instant. ``StartTime>`` is on or after (a query written ``StartTime>=...``),
    ``StartTime<`` on or before, plain ``StartTime`` within.
    """

    parameter: str
    value: str
    low: datetime | None
    high: datetime | None

    def admits(self, moment: datetime | None) -> bool:
        """Whether a call whose start (or end) is ``moment`` passes; a call not yet started
        (or ended) passes no filter on it."""
        if moment is None:
            return False
        return (self.low is None or moment >= self.low) and (
            self.high is None or moment <= self.high
        )


def _instant_or_day(parameter: str, value: str) -> tuple[datetime, datetime]:
    """The first and last instant ``value`` names (a day, or one instant)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            first = datetime.combine(day, time(), UTC)
            return first, first + timedelta(days=1) - timedelta(microseconds=1)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            INVALID_PARAMETER, f"{parameter} {value!r} is not a date (YYYY-MM-DD) or date-time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment, moment


def call_list_filters(
    query: Mapping[str, str],
) -> tuple[dict[str, str], list[TimeFilter], list[tuple[str, str]]]:
    """The Calls list's filters: exact ones (``To``, ``From``, ``ParentCallSid``,
    ``Status``), time ones, and every given filter in the order page URIs repeat them.

    ``ParentCallSid`` must be a ``CA`` sid and ``Status`` one of Twilio's call statuses,
    as the description declares, else 400 / 20001.
    """
    exact: dict[str, str] = {}
    for parameter in ("To", "From", "ParentCallSid", "Status"):
        value = query.get(parameter)
        if value is None or value == "":
            continue
        if parameter == "ParentCallSid" and not is_sid("CA", value):
            raise bad_request(INVALID_PARAMETER, f"ParentCallSid {value!r} is not a valid CA sid")
        if parameter == "Status" and value not in CALL_STATUSES:
            raise bad_request(
                INVALID_PARAMETER, f"Status must be one of {', '.join(CALL_STATUSES)}"
            )
        exact[parameter] = value
    times: list[TimeFilter] = []
    for parameter in CALL_TIME_FILTERS:
        value = query.get(parameter)
        if value is None or value == "":
            continue
        first, last = _instant_or_day(parameter, value)
        if parameter.endswith(">"):
            times.append(TimeFilter(parameter, value, first, None))
        elif parameter.endswith("<"):
            times.append(TimeFilter(parameter, value, None, last))
        else:
            times.append(TimeFilter(parameter, value, first, last))
    given = [*exact.items(), *((t.parameter, t.value) for t in times)]
    return exact, times, given
