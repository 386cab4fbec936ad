"""Accounts, numbers, users and API keys: what an operator sets up once.

Synchronous on purpose: used by the CLI and tests, never on the event loop.

An API key is a hash named by the key's sha256 (`keys.api_key`: id, accountId,
roles, dateCreated, and userId and userName for a key that acts as a user): all
that authentication needs, in one read. Two indexes let an operator, who never
sees the key again, name it by its id: `keys.api_key_id` (the digest) and
`keys.account_keys` (the account's key ids).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from orchestrator import apikeys, dial_policy, keys, queue_reads, scripts
from orchestrator.phone import InvalidPhoneNumber, normalise
from orchestrator.store import new_id, now

DEFAULT_AGENT_STATE = queue_reads.DEFAULT_STATE
DEFAULT_AGENT_REASON = queue_reads.DEFAULT_REASON


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


def add_number(r: redis.Redis, e164: str, account_id: str, queue_id: str | None = None) -> str:
    """Give the account the number; with `queue_id` (a queue of the account), its incoming
    calls go to that ring queue (docs/operations.md#ring-queues)."""
    _require_account(r, account_id)
    if queue_id is not None:
        owner = r.hget(keys.queue(queue_id), "accountId")
        if owner is None:
            raise ProvisionError(f"--queue: no queue {queue_id!r}")
        if owner.decode() != account_id:
            raise ProvisionError(f"--queue: queue {queue_id!r} is not of account {account_id!r}")
    key = keys.number(e164)
    if not r.set(key, account_id, nx=True):
        owner = r.get(key)
        if owner is not None and owner.decode() != account_id:
            raise ProvisionError(f"{e164} already belongs to another account")
        if queue_id is not None:
            r.set(keys.number_queue(e164), queue_id)
        return e164
    pipe = r.pipeline()
    pipe.rpush(keys.account_numbers(account_id), e164)
    pipe.sadd(keys.numbers(), e164)
    if queue_id is not None:
        pipe.set(keys.number_queue(e164), queue_id)
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
    # A new user is logged out until they say they are ready (docs/api.md#agent-state).
    fields |= {"agentState": DEFAULT_AGENT_STATE, "agentStateReason": DEFAULT_AGENT_REASON}
    pipe = r.pipeline()
    pipe.hset(keys.user(uid), mapping=fields)
    pipe.hset(keys.agent_states(), uid, DEFAULT_AGENT_STATE)
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
    uid = _user_id(r, account_id, ref)
    if uid is None:
        raise ProvisionError(f"no user {ref.strip()!r} in account {account_id!r}")
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


# --- ring queues (docs/operations.md#ring-queues) ---------------------------------------------

STRATEGIES = ("ring-all", "linear", "round-robin", "longest-idle")
# Twilio's participant Timeout takes 5 to 600 seconds: an offer rings that long.
RING_TIMEOUT_RANGE = (5, 600)


@dataclass(frozen=True)
class QueueSettings:
    """How a queue offers its calls; the defaults are `orchestrator queues create`'s."""

    strategy: str = "ring-all"
    ring_timeout: int = 20
    max_wait: int = 300
    wrap_up: int = 10
    max_misses: int = 3
    overflow: str | None = None  # a phone number as given, or a user's id or email

    def problems(self) -> list[str]:
        """What is wrong with them, each naming its option of `queues create`."""
        found = []
        if self.strategy not in STRATEGIES:
            found.append(f"--strategy must be one of {', '.join(STRATEGIES)}")
        low, high = RING_TIMEOUT_RANGE
        if not low <= self.ring_timeout <= high:
            found.append(f"--ring-timeout must be {low} to {high} seconds (Twilio's Timeout)")
        if self.max_wait < 1:
            found.append("--max-wait must be 1 second or more")
        if self.wrap_up < 0:
            found.append("--wrap-up must be 0 seconds or more")
        if self.max_misses < 1:
            found.append("--max-misses must be 1 or more")
        return found


def _user_id(r: redis.Redis, account_id: str, ref: str) -> str | None:
    """The id of the account's user `ref` (id or email, any case), or None."""
    ref = ref.strip()
    uid = r.get(keys.account_user(account_id, ref)) or r.get(
        keys.account_user(account_id, ref.lower())
    )
    return uid.decode() if uid is not None else None


def _overflow(r: redis.Redis, account_id: str, ref: str, region: str) -> str:
    """The overflow as stored: a user's id for a user of the account (id or email), else
    the number in E.164."""
    uid = _user_id(r, account_id, ref)
    if uid is not None:
        return uid
    if "@" in ref or ref.strip().startswith("usr_"):
        raise ProvisionError(f"--overflow: no user {ref.strip()!r} in account {account_id!r}")
    try:
        return normalise(ref, region)
    except InvalidPhoneNumber:
        raise ProvisionError(
            f"--overflow: {ref!r} is neither a user of the account nor a valid phone number"
        ) from None


def create_queue(
    r: redis.Redis,
    account_id: str,
    name: str,
    settings: QueueSettings = QueueSettings(),
    region: str = "US",
) -> str:
    """A new ring queue of the account, with no agents yet; its id. `region` reads an
    overflow number given without its country code."""
    problems = settings.problems()
    if problems:
        raise ProvisionError("; ".join(problems))
    if not name.strip():
        raise ProvisionError("a queue's name must not be empty")
    _require_account(r, account_id)
    qid = new_id("que")
    fields = {
        "id": qid,
        "accountId": account_id,
        "name": name.strip(),
        "strategy": settings.strategy,
        "ringTimeout": settings.ring_timeout,
        "maxWait": settings.max_wait,
        "wrapUp": settings.wrap_up,
        "maxMisses": settings.max_misses,
        "dateCreated": now(),
    }
    if settings.overflow is not None and settings.overflow.strip():
        fields["overflow"] = _overflow(r, account_id, settings.overflow, region)
    pipe = r.pipeline()
    pipe.hset(keys.queue(qid), mapping=fields)
    pipe.zadd(keys.account_queues(account_id), {qid: int(time.time() * 1000)})
    pipe.sadd(keys.queues(), qid)
    pipe.execute()
    return qid


def _queue_account(r: redis.Redis, queue_id: str) -> str:
    owner = r.hget(keys.queue(queue_id), "accountId")
    if owner is None:
        raise ProvisionError(f"no queue {queue_id!r}")
    return owner.decode()


def _agent(r: redis.Redis, queue_id: str, user: str) -> str:
    account_id = _queue_account(r, queue_id)
    uid = _user_id(r, account_id, user)
    if uid is None:
        raise ProvisionError(f"no user {user.strip()!r} in the queue's account {account_id!r}")
    return uid


def add_agent(r: redis.Redis, queue_id: str, user: str) -> str:
    """Make the user (id or email, of the queue's account) an agent of the queue, after
    those already there (`linear` offers calls in that order); one already there keeps
    their place. Their id."""
    uid = _agent(r, queue_id, user)
    _queue_agent(r, queue_id, uid, "add")
    return uid


def remove_agent(r: redis.Redis, queue_id: str, user: str) -> tuple[str, bool]:
    """The user is no longer an agent of the queue (calls ringing them stay offered until
    they end); their id, and whether they were one."""
    uid = _agent(r, queue_id, user)
    return uid, _queue_agent(r, queue_id, uid, "remove")


def _queue_agent(r: redis.Redis, queue_id: str, uid: str, op: str) -> bool:
    """queue_agent.lua: the queue's agents and its free set change in one step, the free
    set as every script that changes an agent keeps it."""
    script = r.register_script(scripts.source("queue_agent"))
    return bool(script(args=[keys.PREFIX, queue_id, uid, op]))


def list_queues(r: redis.Redis, account_id: str) -> list[queue_reads.Queue]:
    """The account's queues, oldest first, with their agents and calls waiting."""
    _require_account(r, account_id)
    return queue_reads.run_sync(r, queue_reads.account_queues(account_id))
