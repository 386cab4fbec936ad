"""Checking a Twilio Access Token as Twilio checks the one a softphone registers with.

An Access Token is a JWT signed HS256 with an API key's secret: header ``cty:
twilio-fpa;v=1``, ``iss`` the key's sid, ``sub`` the account's sid, ``exp`` (at most 24 h
after ``iat``/``nbf``) and ``grants``, with ``identity`` and, for the Voice SDK, ``voice``
(``incoming.allow``, ``outgoing.application_sid``). The emulator refuses what Twilio refuses,
with Twilio's access token error codes (its error dictionary, 201XX):

=====  ===============================================================================
code   refused when
=====  ===============================================================================
20101  not a JWT at all (three base64url parts of JSON)
20102  header without ``alg: HS256`` or without ``cty: twilio-fpa;v=1``
20103  ``iss`` names no API key of the account, or ``sub`` is not the account's sid
20104  ``exp`` missing, not a number, or in the past
20105  ``nbf`` in the future
20106  ``grants`` without an ``identity`` or without ``voice``
20107  signature not made with the key's secret
20157  ``exp`` more than 24 h after ``nbf`` (or ``iat``)
=====  ===============================================================================

HS256 is a few lines of ``hmac``: the emulator needs no JWT library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The content type Twilio requires in an Access Token's header.
CONTENT_TYPE = "twilio-fpa;v=1"
#: The longest lifetime Twilio accepts, in seconds (error 20157 past it).
MAX_TTL_SECONDS = 24 * 3600


class AccessTokenError(ValueError):
    """A token Twilio would refuse: ``code`` is Twilio's error code, ``str()`` says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class VoiceToken:
    """What a valid token grants a softphone."""

    identity: str
    key_sid: str
    expires: int  # epoch seconds
    incoming_allow: bool
    application_sid: str | None
    outgoing_params: dict[str, Any]


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _json_part(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(part))
    except (binascii.Error, ValueError) as exc:
        raise AccessTokenError(20101, "Invalid Access Token: not a JWT") from exc
    if not isinstance(value, dict):
        raise AccessTokenError(20101, "Invalid Access Token: not a JWT")
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def verify(
    token: str, account_sid: str, secret_for: Callable[[str], str | None], now: float
) -> VoiceToken:
    """The grants of ``token`` if Twilio would accept it for the Voice SDK at ``now``.

    ``secret_for(key_sid)`` is the secret of one of the account's API keys, or None when the
    account has no such key. Raises ``AccessTokenError`` with Twilio's code otherwise; the
    checks run in the order of the module table's reasons a token is refused.
    """
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise AccessTokenError(20101, "Invalid Access Token: not a JWT")
    header, payload = _json_part(parts[0]), _json_part(parts[1])
    if header.get("alg") != "HS256":
        raise AccessTokenError(20102, "Invalid Access Token header: alg must be HS256")
    if header.get("cty") != CONTENT_TYPE:
        raise AccessTokenError(20102, f"Invalid Access Token header: cty must be {CONTENT_TYPE}")
    issuer, subject = payload.get("iss"), payload.get("sub")
    secret = secret_for(issuer) if isinstance(issuer, str) else None
    if secret is None:
        raise AccessTokenError(
            20103, f"Invalid Access Token issuer/subject: iss {issuer!r} is no API key"
        )
    if subject != account_sid:
        raise AccessTokenError(
            20103, f"Invalid Access Token issuer/subject: sub {subject!r} is not the account"
        )
    signed = f"{parts[0]}.{parts[1]}".encode()
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    try:
        signature = _b64decode(parts[2])
    except (binascii.Error, ValueError):
        signature = b""
    if not hmac.compare_digest(expected, signature):
        raise AccessTokenError(20107, "Invalid Access Token signature")
    expires = _number(payload.get("exp"))
    if expires is None or expires <= now:
        raise AccessTokenError(20104, "Access Token expired or expiration date invalid")
    not_before = _number(payload.get("nbf"))
    if not_before is not None and not_before > now:
        raise AccessTokenError(20105, "Access Token not yet valid")
    start = not_before if not_before is not None else _number(payload.get("iat"))
    if start is not None and expires - start > MAX_TTL_SECONDS:
        raise AccessTokenError(20157, "Expiration Time Exceeds Maximum Time Allowed (24 h)")
    grants = payload.get("grants")
    if not isinstance(grants, dict):
        raise AccessTokenError(20106, "Invalid Access Token grants: none")
    identity = grants.get("identity")
    if not isinstance(identity, str) or not identity:
        raise AccessTokenError(20106, "Invalid Access Token grants: no identity")
    voice = grants.get("voice")
    if not isinstance(voice, dict):
        raise AccessTokenError(20106, "Invalid Access Token grants: no voice grant")
    incoming = voice.get("incoming")
    outgoing = voice.get("outgoing")
    application_sid = outgoing.get("application_sid") if isinstance(outgoing, dict) else None
    params = outgoing.get("params") if isinstance(outgoing, dict) else None
    return VoiceToken(
        identity=identity,
        key_sid=issuer,
        expires=int(expires),
        incoming_allow=isinstance(incoming, dict) and incoming.get("allow") is True,
        application_sid=application_sid if isinstance(application_sid, str) else None,
        outgoing_params=params if isinstance(params, dict) else {},
    )
