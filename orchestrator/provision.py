"""Accounts, numbers, users and API keys: what an operator sets up once.

Synchronous on purpose: used by the CLI and tests, never on the event loop.
"""

from __future__ import annotations

import redis

from orchestrator import auth
from orchestrator.store import PREFIX, new_id, now


class ProvisionError(Exception):
    """The request names something that does not exist or is taken."""


def _require_account(r: redis.Redis, account_id: str) -> None:
    if not r.exists(f"{PREFIX}account:{account_id}"):
        raise ProvisionError(f"no account {account_id!r}")


def create_account(r: redis.Redis, name: str) -> str:
    aid = new_id("acc")
    r.hset(f"{PREFIX}account:{aid}", mapping={"id": aid, "name": name, "dateCreated": now()})
    return aid


def add_number(r: redis.Redis, e164: str, account_id: str) -> str:
    _require_account(r, account_id)
    key = f"{PREFIX}number:{e164}"
    if not r.set(key, account_id, nx=True):
        owner = r.get(key)
        if owner is not None and owner.decode() != account_id:
            raise ProvisionError(f"{e164} already belongs to another account")
    return e164


def add_user(
    r: redis.Redis, email: str, account_id: str, name: str | None = None, avatar: str | None = None
) -> str:
    _require_account(r, account_id)
    email_key = f"{PREFIX}account:{account_id}:user:{email.strip().lower()}"
    if r.exists(email_key):
        raise ProvisionError(f"{email} is already a user of this account")
    uid = new_id("usr")
    fields = {"id": uid, "accountId": account_id, "email": email.strip()}
    if name:
        fields["name"] = name
    if avatar:
        fields["avatarUrl"] = avatar
    pipe = r.pipeline()
    pipe.hset(f"{PREFIX}user:{uid}", mapping=fields)
    pipe.set(email_key, uid)
    pipe.set(f"{PREFIX}account:{account_id}:user:{uid}", uid)
    pipe.execute()
    return uid


def create_key(r: redis.Redis, account_id: str, roles: list[str]) -> str:
    """Store a new key's hash and return the plain key: the only time it is seen."""
    _require_account(r, account_id)
    if not roles or not all(role.isalnum() for role in roles):
        raise ProvisionError("roles are names of letters and digits, e.g. User")
    key = auth.generate_key()
    r.hset(
        f"{PREFIX}apikey:{auth.digest(key)}",
        mapping={"id": new_id("key"), "accountId": account_id, "roles": ",".join(roles)},
    )
    return key
