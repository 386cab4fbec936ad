"""API keys: one account, some roles, stored only as a hash.

Keys are 32 random bytes, so a fast hash (SHA-256) is as safe as a slow one
and keeps authentication to a single Redis read.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "ok_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    key_id: str
    account_id: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        """Admin passes every role check, as in ServiceStack."""
        return role in self.roles or "Admin" in self.roles


def key_from_header(header: str | None) -> str | None:
    """The API key of `Authorization: Bearer <key>` or `Basic base64(<key>:)`."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            user = base64.b64decode(value, validate=True).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return None
        return user or None
    return None
