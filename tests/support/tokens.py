"""Reading a Twilio Access Token as Twilio does: its HS256 signature verified with the API
key's secret before any claim is believed (PyJWT is not needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verified(token: str, secret: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JWT's header and payload, once its HS256 signature checks out with `secret`
    (AssertionError otherwise)."""
    header, payload, signature = token.split(".")
    expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(_b64(signature), expected), "signature does not verify"
    return json.loads(_b64(header)), json.loads(_b64(payload))
