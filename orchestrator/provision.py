"""Accounts, numbers, users and API keys: what an operator sets up once.

Synchronous on purpose: used by the CLI and tests, never on the event loop.

An API key is a hash named by the key's sha256 (`keys.api_key`: id, accountId,
roles, dateCreated, and userId and userName for a key that acts as a user): all
that authentication needs, in one read. Two indexes let an operator, who never
sees the key again, name it by its id: `keys.api_key_id` (the digest) and
`keys.account_keys` (the account's key ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from orchestrator import apikeys, dial_policy, keys
from orchestrator.store import new_id, now


class ProvisionError(Exception):
    """The request names something that does not exist or is taken."""


def _require_account(r: redis.Redis, account_id: str) -> None:
    if not r.exists(keys.account(account_id)):
        raise ProvisionError(f"no account {account_id!r}")


def create_account(r: redis.Redis, name: str) -> str:
    aid = new_id("acc")
    r.hset(keys.account(aid), mapping={"id": aid, "name": name, "dateCreated": now()})
    return aid


def set_dial_countries(r: redis.Redis, account_id: str, countries: tuple[str, ...] | None) -> str:
    """Store the countries the account may dial (docs/api.md#where-dials-may-go), which
    replace DIAL_COUNTRIES for it; None: the setting again. Web processes apply it
    within a second (dial_policy.CountryCache)."""
    _require_account(r, account_id)
    if countries is None:
        r.hdel(keys.account(account_id), dial_policy.ACCOUNT_FIELD)
    else:
        r.hset(keys.account(account_id), dial_policy.ACCOUNT_FIELD, ",".join(countries))
    return account_id


def add_number(r: redis.Redis, e164: str, account_id: str) -> str:
    _require_account(r, account_id)
    key = keys.number(e164)
    if not r.set(key, account_id, nx=True):
        owner = r.get(key)
        if owner is not None and owner.decode() != account_id:
            raise ProvisionError(f"{e164} already belongs to another account")
        return e164
    pipe = r.pipeline()
    pipe.rpush(keys.account_numbers(account_id), e164)
    pipe.sadd(keys.numbers(), e164)
    pipe.execute()
    return e164


def list_numbers(r: redis.Redis) -> set[str]:
    """Every number of every account (E.164): the ones `orchestrator twilio setup` points
    at the service (docs/operations.md#orchestrator-twilio-setup)."""
    return {n.decode() if isinstance(n, bytes) else n for n in r.smembers(keys.numbers())}


def add_user(
    r: redis.Redis, email: str, account_id: str, name: str | None = None, avatar: str | None = None
) -> str:
    _require_account(r, account_id)
    email_key = keys.account_user(account_id, email.strip().lower())
    if r.exists(email_key):
        raise ProvisionError(f"{email} is already a user of this account")
    uid = new_id("usr")
    fields = {"id": uid, "accountId": account_id, "email": email.strip()}
    if name:
        fields["name"] = name
    if avatar:
        fields["avatarUrl"] = avatar
    pipe = r.pipeline()
    pipe.hset(keys.user(uid), mapping=fields)
    pipe.set(email_key, uid)
    pipe.set(keys.account_user(account_id, uid), uid)
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
    key = apikeys.generate_key()
    digest = apikeys.digest(key)
    pipe = r.pipeline()
    pipe.hset(keys.api_key(digest), mapping=fields)
    pipe.set(keys.api_key_id(kid), digest)
    pipe.sadd(keys.account_keys(account_id), kid)
    pipe.execute()
    return key


def _key_user(r: redis.Redis, account_id: str, ref: str) -> dict[str, str]:
    """The key-hash fields of the user `ref` (id or email) of the account.

    The name is copied, not looked up per request, so that authentication
    stays one Redis read.
    """
    ref = ref.strip()
    uid = r.get(keys.account_user(account_id, ref)) or r.get(
        keys.account_user(account_id, ref.lower())
    )
    if uid is None:
        raise ProvisionError(f"no user {ref!r} in account {account_id!r}")
    uid = uid.decode()
    user = {k.decode(): v.decode() for k, v in r.hgetall(keys.user(uid)).items()}
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
    kids = [k.decode() for k in r.smembers(keys.account_keys(account_id))]
    digests = r.mget([keys.api_key_id(kid) for kid in kids]) if kids else []
    pipe = r.pipeline(transaction=False)
    for digest in digests:
        if digest is not None:
            pipe.hmget(keys.api_key(digest.decode()), "id", "roles", "userId", "dateCreated")
    found = [_key_info(fields) for fields in pipe.execute() if fields[0] is not None]
    return sorted(found, key=lambda k: (k.date_created, k.id))


def _key_info(fields: list[bytes | None]) -> KeyInfo:
    kid, roles, user_id, created = (f.decode() if f is not None else None for f in fields)
    return KeyInfo(kid or "", tuple((roles or "").split(",")), user_id, created or "")


def revoke_key(r: redis.Redis, key_id: str) -> str:
    """Delete the key: every web process refuses it within a second (apikeys.KeyCache)."""
    digest = r.get(keys.api_key_id(key_id))
    if digest is None:
        raise ProvisionError(f"no API key {key_id!r}")
    hash_key = keys.api_key(digest.decode())
    account_id = r.hget(hash_key, "accountId")
    pipe = r.pipeline()
    pipe.delete(hash_key, keys.api_key_id(key_id))
    if account_id is not None:
        pipe.srem(keys.account_keys(account_id.decode()), key_id)
    pipe.execute()
    return key_id
