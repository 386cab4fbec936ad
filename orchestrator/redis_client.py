"""Redis clients for every process, from `REDIS_URL`: one Redis server, or the
primary of a Sentinel group.

`redis+sentinel://[[user]:password@]host1:26379,host2:26379/<master name>/<db>`
names a group that Redis Sentinel watches: the clients ask the Sentinels for the
primary when they connect, and again after it fails (a refused connection, or a
READONLY answer from a primary since demoted), so a failover needs no restart.
That is redis-py's Sentinel support; nothing here decides who the primary is.
While there is none, commands fail with a ConnectionError within seconds, which
the API answers as 503 with Retry-After.

The web process's asyncio connections pack commands with hiredis, as its sync
connections do: redis-py's asyncio connections pack every command in pure
Python, one `encode` per argument, and an invite's script call carries its dial
job (about fifty arguments). Same bytes on the wire, a tenth of the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
# Asking a Sentinel is quick or it is down: the next one is asked.
SENTINEL_TIMEOUT = 0.5
# What Redis being away looks like to a client (no primary, a refused or hung
# connection): the API answers these with 503 and Retry-After, workers wait them out.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class _HiredisPacking:
    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)


@cache
def _packing(connection_class: type) -> type:
    return type(f"Hiredis{connection_class.__name__}", (_HiredisPacking, connection_class), {})


@dataclass(frozen=True)
class SentinelGroup:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def describe(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"{SENTINEL_SCHEME}://{hosts}/{self.master}/{self.db}"


def sentinel_group(url: str) -> SentinelGroup | None:
    """The Sentinel group a `redis+sentinel://` URL names, None for a plain Redis URL;
    ValueError (saying what is wrong) for anything else."""
    parts = urlsplit(url)
    if parts.scheme in PLAIN_SCHEMES:
        return None
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(
            "REDIS_URL must be a redis://, rediss://, unix:// or redis+sentinel:// URL"
        )
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels = []
    for item in hostlist.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = item.strip(), "26379"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_URL: '{item}' is not a Sentinel host:port")
        sentinels.append((host.strip("[]"), int(port)))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("REDIS_URL: a Sentinel URL ends /<master name> or /<master name>/<db>")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"REDIS_URL: the database '{path[1]}' is not a number")
    query = parse_qs(parts.query)
    return SentinelGroup(
        sentinels=tuple(sentinels),
        master=path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=(query.get("sentinel_password") or [None])[0],
    )


def _retry() -> Retry:
    """redis-py retries a failed command three times with backoff growing to seconds;
    while there is no primary that only holds a request up. One quick retry is kept: it
    is what moves a pooled connection to a new primary after a failover."""
    return Retry(NoBackoff(), 1)


def _sentinel_options(group: SentinelGroup) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT,
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),  # a Sentinel that is down: ask the next one
    }
    if group.sentinel_password:
        options["password"] = group.sentinel_password
    return options


def _primary_options(group: SentinelGroup, options: dict[str, Any]) -> dict[str, Any]:
    return {"db": group.db, "username": group.username, "password": group.password, **options}


def _async_retry() -> AsyncRetry:
    """The web's quick retry is for a refused or dropped connection only (what a failover
    looks like): a command that timed out met a hung Redis, and asking it again would only
    double the wait of a request that is answered 503 anyway."""
    return AsyncRetry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))


# The web's commands take milliseconds: one unanswered this long means Redis hangs (its
# process stopped, a network partition), and the request is answered 503 with Retry-After
# within it. Reads that block on purpose (the event hub's XREAD BLOCK, a WAIT for replicas)
# run on clients, or with timeouts, of their own above their block time.
WEB_SOCKET_TIMEOUT = 1.5


def connect(
    url: str, socket_timeout: float = WEB_SOCKET_TIMEOUT, **options: Any
) -> redis.asyncio.Redis:
    """The web process's client (and the bench's apps'); connects lazily."""
    options = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": min(socket_timeout, 2),
        "max_connections": 256,
        "retry": _async_retry(),
        **options,
    }
    group = sentinel_group(url)
    if group is None:
        client = redis.asyncio.Redis.from_url(url, **options)
    else:
        sentinel_options = {**_sentinel_options(group), "retry": AsyncRetry(NoBackoff(), 0)}
        manager = redis.asyncio.sentinel.Sentinel(
            list(group.sentinels), sentinel_kwargs=sentinel_options
        )
        client = manager.master_for(group.master, **_primary_options(group, options))
    pool = client.connection_pool
    if HIREDIS_AVAILABLE:  # the URL picked the class (TCP, TLS, unix socket, Sentinel's)
        pool.connection_class = _packing(pool.connection_class)
    return client


def display_url(url: str) -> str:
    """`url` fit for a log line: its password replaced by `***`."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hosts}")
    if "password=" in parts.query:
        query = "&".join(
            f"{name}=***" if name.endswith("password") else f"{name}={value}"
            for name, _, value in (item.partition("=") for item in parts.query.split("&"))
        )
        parts = parts._replace(query=query)
    return parts.geturl()


def connect_sync(url: str, **options: Any) -> redis.Redis:
    """A worker's, the CLI's or a test's client; connects lazily."""
    options = {"retry": _retry(), **options}
    group = sentinel_group(url)
    if group is None:
        return redis.Redis.from_url(url, **options)
    manager = redis.sentinel.Sentinel(
        list(group.sentinels), sentinel_kwargs=_sentinel_options(group)
    )
    return manager.master_for(group.master, **_primary_options(group, options))
