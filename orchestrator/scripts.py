"""Lua scripts that make each state change one atomic Redis round trip.

Every script is `_common.lua` followed by its own file, so the key layout and
the member state rules live in one place. redis-py's Script objects send
EVALSHA and fall back to EVAL after a Redis restart (NOSCRIPT).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.asyncio

NAMES = (
    "render",
    "create_session",
    "invite",
    "begin_dial",
    "record_dial",
    "fail_dial",
    "call_event",
    "conference_event",
)


@cache
def source(name: str) -> str:
    folder = resources.files("orchestrator") / "lua"
    return (folder / "_common.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


class Scripts:
    """The scripts registered on one client (sync or asyncio)."""

    def __init__(self, client: redis.Redis | redis.asyncio.Redis) -> None:
        self._scripts = {name: client.register_script(source(name)) for name in NAMES}

    def __getitem__(self, name: str) -> Any:
        return self._scripts[name]
