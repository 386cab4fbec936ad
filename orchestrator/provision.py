"""Accounts, numbers, users and API keys: what an operator sets up once.

Synchronous on purpose: used by the CLI and tests, never on the event loop.

An API key is the hash `apikey:{sha256 of the key}` (id, accountId, roles,
dateCreated, and userId and userName for a key that acts as a user): all that
authentication needs, in one read. Two indexes let an operator, who never sees
the key again, name it by its id: `apikeyid:{id}` (str, the digest) and
`account:{aid}:apikeys` (set of key ids).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def create_key(r: redis.Redis, account_id: str, roles: list[str], user: str | None = None) -> str:
    """Store a new key's hash and return the plain key: the only time it is seen.

    With `user` (a user's id or email), the key acts as that user of the account.
    """
    _require_account(r, account_id)
    if not roles or not all(role.isalnum() for role in roles):
        raise ProvisionError("roles are names of letters and digits, e.g. User")
    kid = new_id("key")
    fields = {"id": kid, "accountId": account_id, "roles": ",".join(roles), "dateCreated": now()}
    if user is not None:
        fields |= _key_user(r, account_id, user)
    key = auth.generate_key()
    digest = auth.digest(key)
    pipe = r.pipeline()
    pipe.hset(f"{PREFIX}apikey:{digest}", mapping=fields)
    pipe.set(f"{PREFIX}apikeyid:{kid}", digest)
    pipe.sadd(f"{PREFIX}account:{account_id}:apikeys", kid)
    pipe.execute()
    return key


def _key_user(r: redis.Redis, account_id: str, ref: str) -> dict[str, str]:
    """The key-hash fields of the user `ref` (id or email) of the account.

    The name is copied, not looked up per request, so that authentication
    stays one Redis read.
    """
    ref = ref.strip()
    uid = r.get(f"{PREFIX}account:{account_id}:user:{ref}") or r.get(
        f"{PREFIX}account:{account_id}:user:{ref.lower()}"
    )
    if uid is None:
        raise ProvisionError(f"no user {ref!r} in account {account_id!r}")
    uid = uid.decode()
    user = {k.decode(): v.decode() for k, v in r.hgetall(f"{PREFIX}user:{uid}").items()}
    return {"userId": uid, "userName": user.get("name") or user.get("email") or uid}


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a key: never the key itself."""

    id: str
    roles: tuple[str, ...]
    user_id: str | None
    date_created: str


def list_keys(r: redis.Redis, account_id: str) -> list[KeyInfo]:
    """The account's keys, oldest first."""
    _require_account(r, account_id)
    kids = [k.decode() for k in r.smembers(f"{PREFIX}account:{account_id}:apikeys")]
    digests = r.mget([f"{PREFIX}apikeyid:{kid}" for kid in kids]) if kids else []
    pipe = r.pipeline(transaction=False)
    for digest in digests:
        if digest is not None:
            pipe.hmget(f"{PREFIX}apikey:{digest.decode()}", "id", "roles", "userId", "dateCreated")
    keys = [_key_info(fields) for fields in pipe.execute() if fields[0] is not None]
    return sorted(keys, key=lambda k: (k.date_created, k.id))


def _key_info(fields: list[bytes | None]) -> KeyInfo:
    kid, roles, user_id, created = (f.decode() if f is not None else None for f in fields)
    return KeyInfo(kid or "", tuple((roles or "").split(",")), user_id, created or "")


def revoke_key(r: redis.Redis, key_id: str) -> str:
    """Delete the key: every web process refuses it within a second (auth.KeyCache)."""
    digest = r.get(f"{PREFIX}apikeyid:{key_id}")
    if digest is None:
        raise ProvisionError(f"no API key {key_id!r}")
    hash_key = f"{PREFIX}apikey:{digest.decode()}"
    account_id = r.hget(hash_key, "accountId")
    pipe = r.pipeline()
    pipe.delete(hash_key, f"{PREFIX}apikeyid:{key_id}")
    if account_id is not None:
        pipe.srem(f"{PREFIX}account:{account_id.decode()}:apikeys", key_id)
    pipe.execute()
    return key_id
