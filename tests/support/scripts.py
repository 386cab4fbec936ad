"""Helpers for tests that run the Lua scripts directly through `AsyncScripts`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis

from orchestrator import keys, provision, store
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
