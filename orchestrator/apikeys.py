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

    An entry lives `ttl` (one second, the bound operators are promised) from
    the moment its Redis read began, so a revoked key (deleted from Redis)
    stops working in every web process within one second, however many
    processes and hosts there are: a read that began before the revoke expires
    less than a second after it, and a read that began after it finds nothing.
    Each process measures this on its own monotonic clock, so no clocks need
    agree. It costs each process one Redis read per key per second, nothing
    next to the requests it saves; invalidation messages (pub/sub) would need a
    subscriber per process, and still a TTL for the messages a disconnected
    subscriber misses.

    Unknown keys are not cached, so a new key works at once.
    """

    def __init__(self, ttl: float = 1.0, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, digest: str, principal: Principal, read_at: float | None = None) -> None:
        """Cache `principal` until `ttl` after `read_at`, the `time.monotonic()` taken
        just before the Redis read that found it (default: now)."""
        started = time.monotonic() if read_at is None else read_at
        self._entries[digest] = (started + self.ttl, principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
