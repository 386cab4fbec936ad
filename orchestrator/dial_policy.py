"""Where dials may go (docs/api.md#where-dials-may-go): the countries an account may
dial, and the numbers no account ever dials.

Every dial the service makes (an invite, a blind transfer) is checked here before
Twilio is asked, so a leaked API key or a hijacked console cannot run up a
toll-fraud bill: the numbers reached are those of the countries the account
allows (its own list, else `DIAL_COUNTRIES`), and never a premium-rate or
shared-cost one, whose charges pay the number's owner (what toll fraud lives on).
A user (a Twilio Client identity) is no phone number: countries do not apply.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import phonenumbers
import redis.asyncio

from orchestrator import keys

# The account hash's field holding its own list ("US,CA"); absent: the setting.
ACCOUNT_FIELD = "dialCountries"

# Refused for every account, whatever its countries. Shared-cost numbers are refused
# with premium-rate ones: both share the caller's charge with the number's owner, and a
# contact centre's dial (a customer, an agent, a colleague) never needs one.
NEVER_DIALLED = {
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium-rate",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared-cost",
}

# What `phonenumbers` knows as regions (ISO 3166 alpha-2 codes; "001", the
# non-geographic numbers' code, is none, so those are never in a list).
KNOWN_COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)


def parse_countries(text: str) -> tuple[str, ...]:
    """The comma-separated country codes of `text`, upper case, in order, once each.

    Raises ValueError naming every code that is not a region `phonenumbers` knows,
    or saying the list is empty: a typo must stop the process or the command, not
    quietly narrow (or widen) where an account may dial.
    """
    codes = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not codes:
        raise ValueError("no country codes given (ISO 3166 alpha-2, e.g. US,CA)")
    unknown = [code for code in codes if code not in KNOWN_COUNTRIES]
    if unknown:
        names = ", ".join(repr(code) for code in unknown)
        raise ValueError(f"{names}: not a country code (ISO 3166 alpha-2, e.g. US, GB)")
    return tuple(dict.fromkeys(codes))


def is_number(address: str) -> bool:
    """Whether a dial's address is a phone number (E.164), not a user (`client:<id>`,
    or the id or email the API names one by): only numbers cost by where they go."""
    return address.startswith("+")


def refusal(address: str, countries: Iterable[str]) -> str | None:
    """Why an account that may dial `countries` may not dial `address` (an E.164
    number or a user), in plain words; None when it may. A user always may."""
    return never_dialled(address) or country_refusal(address, countries)


def never_dialled(address: str) -> str | None:
    """Why no account may dial `address` (a premium-rate or shared-cost number, or no
    number at all), None if some account may: the half of the policy that needs no
    account's list."""
    if not is_number(address):
        return None
    try:
        number = phonenumbers.parse(address, None)
    except phonenumbers.NumberParseException:
        return f"{address} is not a phone number this service can place"
    kind = NEVER_DIALLED.get(phonenumbers.number_type(number))
    if kind is not None:
        return f"{_shown(number)} is a {kind} number; {kind} numbers are never dialled"
    return None


def country(address: str) -> str:
    """The country (ISO 3166 alpha-2) of an E.164 number, "" if it has none."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(address, None))
    except phonenumbers.NumberParseException:
        return ""
    return region if region in KNOWN_COUNTRIES else ""


def country_refusal(address: str, countries: Iterable[str]) -> str | None:
    """Why an account that may dial `countries` may not dial the number `address` for
    its country, None if it may (or if `address` is a user)."""
    if not is_number(address):
        return None
    allowed = list(countries)
    region = country(address)
    if region and region in allowed:
        return None
    try:
        shown = _shown(phonenumbers.parse(address, None))
    except phonenumbers.NumberParseException:
        shown = address
    where = f"is in {region}" if region else "belongs to no country"
    may = ", ".join(allowed) if allowed else "no country"
    return f"{shown} {where}; this account may dial {may}"


def _shown(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


class CountryCache:
    """The accounts' own country lists, as recently read, for one second.

    An invite is then no extra Redis read when the account dialled within the last
    second, and `accounts update --dial-countries` reaches every web process within
    one second of the update: an entry lives `ttl` from the moment its read began,
    as the API key cache does (orchestrator/apikeys.py, which says why a bound
    beats invalidation messages). A read costs one field (HGET), so a miss is cheap.
    """

    def __init__(self, ttl: float = 1.0, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self._entries: OrderedDict[str, tuple[float, tuple[str, ...] | None]] = OrderedDict()

    async def countries(
        self, r: redis.asyncio.Redis, account_id: str, default: Sequence[str]
    ) -> tuple[str, ...]:
        """The countries `account_id` may dial: its own list, else `default`."""
        entry = self._entries.get(account_id)
        if entry is None or entry[0] <= time.monotonic():
            read_at = time.monotonic()
            raw = await r.hget(keys.account(account_id), ACCOUNT_FIELD)
            entry = (read_at + self.ttl, _stored(raw))
            self._entries[account_id] = entry
            self._entries.move_to_end(account_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry[1] if entry[1] is not None else tuple(default)


def _stored(raw: bytes | str | None) -> tuple[str, ...] | None:
    """An account's stored list, None when it has none. Codes that do not read are
    left out (the command that stores a list checks it, so that is only a hand edit
    gone wrong): a list that leaves nothing allows no number, never every one."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    codes = (part.strip().upper() for part in text.split(","))
    return tuple(dict.fromkeys(code for code in codes if code in KNOWN_COUNTRIES))
