"""Who is calling: the API key of a request, checked against Redis through a
per-process cache, and the role the operation needs."""

from __future__ import annotations

import time

from starlette.requests import Request

from orchestrator import apikeys, store
from orchestrator.errors import forbidden, unauthorized

USER_ROLE = "User"


async def authenticate(request: Request, role: str = USER_ROLE) -> apikeys.Principal:
    key = apikeys.key_from_header(request.headers.get("authorization"))
    if key is None:
        raise unauthorized()
    digest = apikeys.digest(key)
    cache: apikeys.KeyCache = request.app.state.keys
    principal = cache.get(digest)
    if principal is None:
        # Taken before the read, so a key revoked while the read is under way
        # is cached for less than the cache's bound, never more.
        read_at = time.monotonic()
        found = await store.api_key(request.app.state.redis, digest)
        if found is None:
            raise unauthorized("Invalid API key")
        principal = _principal(found)
        cache.put(digest, principal, read_at)
    if not principal.has_role(role):
        raise forbidden()
    return principal


def _principal(found: dict[str, str]) -> apikeys.Principal:
    """The key's hash holds everything a request needs (the user it acts as
    included), so authentication stays one Redis read."""
    return apikeys.Principal(
        key_id=found.get("id", ""),
        account_id=found.get("accountId", ""),
        roles=frozenset(r for r in found.get("roles", "").split(",") if r),
        user_id=found.get("userId") or None,
        user_name=found.get("userName") or None,
    )
