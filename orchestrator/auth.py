"""API keys: one account, some roles, stored only as a hash.

Keys are 32 random bytes, so a fast hash (SHA-256) is as safe as a slow one
and keeps authentication to a single Redis read.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

KEY_PREFIX = "ok_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is behind a request: a key of one account, acting as one of its users or not."""

    key_id: str
    account_id: str
    roles: frozenset[str]
    user_id: str | None = None
    user_name: str | None = None  # the user's name, else email

    def has_role(self, role: str) -> bool:
        """Admin passes every role check, as in ServiceStack."""
        return role in self.roles or "Admin" in self.roles

    @property
    def actor_id(self) -> str:
        """What createdBy, lastModifiedBy and heldByUserId record: the user, else the key."""
        return self.user_id or self.key_id

    @property
    def actor_name(self) -> str:
        """How the session's log names who acted ("Ada Agent put the call on hold")."""
        return self.user_name or self.user_id or f"API key {self.key_id}"


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


class KeyCache:
    """Recently seen keys, so an agent console's burst of calls costs one lookup.

    A revoked or changed key keeps working for at most `ttl` seconds in each
    web process; unknown keys are not cached, so a new key works at once.
    """

    def __init__(self, ttl: float = 10.0, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, digest: str, principal: Principal) -> None:
        self._entries[digest] = (time.monotonic() + self.ttl, principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
