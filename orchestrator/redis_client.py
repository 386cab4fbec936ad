"""The web process's Redis client: redis-py's asyncio client, packing with hiredis.

redis-py's asyncio connections pack every command in pure Python, one `encode` per
argument, while its sync connections hand the whole command to hiredis's C packer. An
invite's script call carries its dial job (about fifty arguments), so the web process
packs as the sync client does: same bytes on the wire, a tenth of the CPU.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import redis.asyncio
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE


class _HiredisPacking:
    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)


@cache
def _packing(connection_class: type) -> type:
    return type(f"Hiredis{connection_class.__name__}", (_HiredisPacking, connection_class), {})


def connect(url: str, socket_timeout: float = 5, **options: Any) -> redis.asyncio.Redis:
    """The client every web process (and the bench's apps) uses; connects lazily."""
    client = redis.asyncio.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2,
        max_connections=256,
        **options,
    )
    pool = client.connection_pool
    if HIREDIS_AVAILABLE:  # the URL's scheme picked the class (TCP, TLS or unix socket)
        pool.connection_class = _packing(pool.connection_class)
    return client
