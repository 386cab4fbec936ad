"""Helpers for tests that run the Lua scripts directly through `AsyncScripts`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis

from orchestrator import keys, provision, store
from orchestrator.scripts import AsyncScripts
from tests.support.accounts import random_number

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to its end on a fresh event loop (the tests are synchronous)."""
    return asyncio.run(coro)


def our_number(r: redis.Redis) -> str:
    """A number of a fresh account: calls to it open sessions."""
    return provision.add_number(r, random_number(), provision.create_account(r, "Batch Co"))


def create_args(number: str, i: int) -> list[str]:
    """create_session.lua's arguments for the i-th incoming call; its session is ses_batch{i}."""
    sid = f"ses_batch{i}"
    return [keys.PREFIX, f"CA{i:032d}", random_number(), number, store.now(), sid, f"mem_b{i}"]


def stand_in_job(mid: str) -> tuple[str, str, str, str, list[str]]:
    """A stand-in dial job for `store.invite`: with no worker running, its keys only have to
    be written."""
    test_keys = keys.PREFIX + "test:"
    return (test_keys + "queue", test_keys + "queues", test_keys + f"job:{mid}", mid, ["id", mid])


async def invite_numbers(
    scripts: AsyncScripts, sid: str, account: str, n: int, first: int = 0
) -> None:
    """InviteChatMember of `n` new numbers into `sid` as its account's key would, members
    mem_{sid}_{first}, mem_{sid}_{first + 1}..., each with a stand-in dial job."""
    for i in range(first, first + n):
        await store.invite(
            scripts,
            sid=sid,
            account_id=account,
            kind="phone",
            ref=random_number(),
            member_id=f"mem_{sid}_{i}",
            caller_id=None,
            actor=store.Actor("key_test"),
            job=stand_in_job(f"mem_{sid}_{i}"),
        )
