"""API keys as operators manage them: keys that act as a user, listing, and
revocation, which every web process honours within one second."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import redis

from orchestrator import apikeys, keys, provision
from orchestrator.launch import wait_until
from tests.support import net
from tests.support.accounts import Account, random_number
from tests.support.cli import cli
from tests.support.stack import Stack


@pytest.fixture
def env(stack: Stack) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": stack.redis_url}


@pytest.fixture
def second_web(stack: Stack) -> Iterator[str]:
    """Another `orchestrator web` on the same Redis, with its own key cache; its base URL."""
    try:
        yield stack.add_web("web2")
    finally:
        stack.stop("web2")


def _session(stack: Stack, account: Account) -> str:
    return stack.incoming_call(random_number(), account.number)["conferenceName"]


def _key_hash(stack: Stack, plain: str) -> dict[str, str]:
    return stack.redis.hgetall(keys.api_key(apikeys.digest(plain)))


def _list(account_id: str, env: dict[str, str]) -> list[list[str]]:
    result = cli("keys", "list", "--account", account_id, env=env)
    assert result.returncode == 0, result.stderr
    return [line.split(" ") for line in result.stdout.splitlines()]


def _create(env: dict[str, str], account_id: str, *extra: str) -> str:
    result = cli("keys", "create", "--account", account_id, "--role", "User", *extra, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1  # only the key, so scripts can capture it
    return result.stdout.strip()


def test_key_created_for_a_user_acts_as_that_user(
    stack: Stack, account: Account, env: dict[str, str]
) -> None:
    plain = _create(env, account.id, "--user", account.user_id)
    stored = _key_hash(stack, plain)
    assert stored["userId"] == account.user_id
    assert stored["userName"] == "Ada Agent"
    assert plain not in str(stored)

    sid = _session(stack, account)
    with stack.client(plain) as c:
        assert c.get(f"/sessions/{sid}").status_code == 200


def test_a_user_is_named_by_id_or_email_and_without_a_name_by_email(
    stack: Stack, account: Account, env: dict[str, str]
) -> None:
    by_email = _create(env, account.id, "--user", account.user_email.upper())
    assert _key_hash(stack, by_email)["userId"] == account.user_id
    nameless = provision.add_user(stack.redis, "nameless@example.com", account.id)
    plain = _create(env, account.id, "--user", nameless)
    assert _key_hash(stack, plain)["userName"] == "nameless@example.com"


def test_unknown_user_is_refused_and_creates_no_key(
    stack: Stack, account: Account, env: dict[str, str]
) -> None:
    before = _list(account.id, env)
    args = ("--account", account.id, "--role", "User", "--user", "usr_missing")
    result = cli("keys", "create", *args, env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert "usr_missing" in result.stderr
    assert _list(account.id, env) == before


def test_no_key_for_a_user_of_another_account(
    stack: Stack, account: Account, env: dict[str, str]
) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    other = provision.create_account(r, "Other Co")
    for ref in (account.user_id, account.user_email):
        result = cli("keys", "create", "--account", other, "--role", "User", "--user", ref, env=env)
        assert result.returncode == 2 and result.stdout == ""
        assert other in result.stderr
    assert _list(other, env) == []


def test_keys_list_shows_id_roles_and_user(
    stack: Stack, account: Account, env: dict[str, str]
) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    aid = provision.create_account(r, "Listed Co")
    uid = provision.add_user(r, "lee@example.com", aid)
    plain = _create(env, aid, "--user", uid)
    admin = cli("keys", "create", "--account", aid, "--role", "User", "--role", "Admin", env=env)
    listed = _list(aid, env)
    assert [line[1:] for line in listed] == [["User", uid], ["User,Admin", "-"]]
    assert all(line[0].startswith("key_") for line in listed)
    assert listed[0][0] == _key_hash(stack, plain)["id"]
    assert listed[1][0] == _key_hash(stack, admin.stdout.strip())["id"]
    # No other account's keys.
    assert all(line[0] not in {k[0] for k in _list(account.id, env)} for line in listed)


def test_revoke_unknown_id_is_an_error(env: dict[str, str]) -> None:
    result = cli("keys", "revoke", "key_missing", env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert "key_missing" in result.stderr


def test_revoked_key_is_refused_by_every_web_process_within_a_second(
    stack: Stack, account: Account, env: dict[str, str], second_web: str
) -> None:
    plain = _create(env, account.id, "--user", account.user_id)
    kid = _key_hash(stack, plain)["id"]
    sid = _session(stack, account)
    headers = {"Authorization": f"Bearer {plain}"}
    webs = [
        net.client(base_url=b, headers=headers, timeout=10) for b in (stack.base_url, second_web)
    ]
    try:
        # Each process has now read the key from Redis and caches it.
        assert [w.get(f"/sessions/{sid}").status_code for w in webs] == [200, 200]

        revoke = cli("keys", "revoke", kid, env=env)
        revoked_at = time.monotonic()  # the key was deleted before the command returned
        assert revoke.returncode == 0, revoke.stderr
        assert revoke.stdout == kid + "\n"
        assert not stack.redis.exists(keys.api_key(apikeys.digest(plain)), keys.api_key_id(kid))

        # The product's promise is "refused everywhere one second after the
        # revoke": the first moment both processes refuse it is within that second
        # (a process still serving the key from its cache answers 200).
        def refused_since() -> float | None:
            asked = time.monotonic()
            refused = [w.get(f"/sessions/{sid}").status_code for w in webs] == [401, 401]
            return asked if refused else None

        refused_at = wait_until(refused_since, 5, "both web processes to refuse the key")
        assert refused_at - revoked_at <= 1.0
    finally:
        for w in webs:
            w.close()
    assert [line[0] for line in _list(account.id, env)].count(kid) == 0


def test_cache_entry_lives_one_second_from_its_read() -> None:
    cache = apikeys.KeyCache()
    principal = apikeys.Principal("key_x", "acc_x", frozenset({"User"}))
    cache.put("fresh", principal, read_at=time.monotonic())
    cache.put("stale", principal, read_at=time.monotonic() - cache.ttl)
    assert cache.ttl <= 1.0
    assert cache.get("fresh") == principal
    assert cache.get("stale") is None
