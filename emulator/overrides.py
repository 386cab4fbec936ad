"""Twilio's webhook connection overrides: ``#ct=..&rt=..&tt=..&rc=..&rp=..`` on a callback URL.

Twilio reads them from the URL's fragment, strips the fragment before it requests (and signs)
the URL, and applies them to that one webhook. The ranges and defaults are Twilio's published
ones; a value outside them, or a retry policy Twilio does not know, makes Twilio fail the
webhook (error 11243 for the policy) rather than guess, and so does the emulator.

=====  ==================================  ===========  =======
key    meaning                             range        default
=====  ==================================  ===========  =======
``ct``  connect timeout, ms                 100-10000    5000
``rt``  read timeout, ms                    100-15000    15000
``tt``  total time for all attempts, ms     100-15000    15000
``rc``  retries after the first attempt     0-5          1
``rp``  which failures are retried          see below    ``ct``
``e``   egress edge                         any          (none)
``sni`` server name indication              any          (none)
=====  ==================================  ===========  =======

``rp`` is ``ct`` (no connection), ``rt`` (no answer in time), ``4xx``, ``5xx``, ``all``, or a
comma-separated list of those.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

POLICIES = frozenset({"ct", "rt", "4xx", "5xx"})
#: ``all`` also covers failures that fit no class (a broken response, say).
ALL = POLICIES | {"other"}

_RANGES = {"ct": (100, 10000), "rt": (100, 15000), "tt": (100, 15000), "rc": (0, 5)}
_OPAQUE = frozenset({"e", "sni"})


class OverrideError(ValueError):
    """The fragment asks for something Twilio refuses; the webhook is not sent."""


@dataclass(frozen=True)
class Overrides:
    """The connection settings of one webhook, in seconds (Twilio's defaults without a fragment)."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total: float = 15.0
    retries: int = 1
    policy: frozenset[str] = frozenset({"ct"})


def parse_url(url: str) -> tuple[str, Overrides]:
    """The URL to request (fragment removed) and the overrides its fragment sets."""
    base, _, fragment = url.partition("#")
    if not fragment:
        return base, Overrides()
    numbers: dict[str, int] = {}
    policy = Overrides.policy
    for key, value in parse_qsl(fragment, keep_blank_values=True):
        if key in _RANGES:
            low, high = _RANGES[key]
            if not value.isdigit() or not low <= int(value) <= high:
                raise OverrideError(
                    f"connection override {key}={value!r} is outside Twilio's range {low}-{high}"
                )
            numbers[key] = int(value)
        elif key == "rp":
            policy = _policy(value)
        elif key not in _OPAQUE:
            raise OverrideError(f"unknown connection override {key!r}")
    return base, Overrides(
        connect_timeout=numbers.get("ct", 5000) / 1000,
        read_timeout=numbers.get("rt", 15000) / 1000,
        total=numbers.get("tt", 15000) / 1000,
        retries=numbers.get("rc", 1),
        policy=policy,
    )


def _policy(value: str) -> frozenset[str]:
    names = [name.strip() for name in value.split(",")]
    if "all" in names and len(names) == 1:
        return ALL
    if not names or any(name not in POLICIES for name in names):
        raise OverrideError(f"Twilio error 11243: HTTP retry policy {value!r} is invalid")
    return frozenset(names)
