"""AsyncScripts sends the script calls of concurrent requests as one pipeline. Batching must
be invisible to each caller: its own reply, its own error, nothing lost when Redis forgets
its scripts or goes away, and a caller that gives up disturbs nobody."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
import redis.exceptions

from orchestrator import provision, redis_client, redis_server, store
from orchestrator.scripts import AsyncScripts
from tests.conftest import random_number, run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[redis_server.RedisServer]:
    """A private Redis: these tests flush its scripts and stop it."""
    srv = redis_server.start(tmp_path / "redis")
    yield srv
    srv.stop()


def our_number(r: redis.Redis) -> str:
    """A number of a fresh account: calls to it open sessions."""
    return provision.add_number(r, random_number(), provision.create_account(r, "Batch Co"))


def create_args(number: str, i: int) -> list[str]:
    """create_session.lua's arguments for the i-th incoming call; its session is ses_batch{i}."""
    sid = f"ses_batch{i}"
    return [store.PREFIX, f"CA{i:032d}", random_number(), number, store.now(), sid, f"mem_b{i}"]


async def with_scripts(url: str, body):  # type: ignore[no-untyped-def]
    client = redis_client.connect(url)
    scripts = AsyncScripts(client)
    try:
        return await body(scripts)
    finally:
        await scripts.aclose()
        await client.aclose()


def test_concurrent_calls_share_a_connection_and_each_gets_its_own_reply(server):
    r = redis.Redis.from_url(server.url)
    number = our_number(r)
    calls = [create_args(number, i) for i in range(300)]

    async def body(scripts: AsyncScripts):
        replies = await asyncio.gather(*(scripts.run("create_session", c) for c in calls))
        clients = r.info("clients")["connected_clients"]
        return replies, clients

    replies, clients = run(with_scripts(server.url, body))
    assert [reply[1].decode() for reply in replies] == [c[5] for c in calls]
    assert all(reply[0] == b"created" for reply in replies)
    assert clients <= 3  # this test's sync client and the batches' connection(s), not 300


def test_an_error_reaches_only_its_caller(server):
    r = redis.Redis.from_url(server.url)
    number = our_number(r)

    async def body(scripts: AsyncScripts):
        good = [scripts.run("create_session", create_args(number, i)) for i in range(5)]
        bad = scripts.run("render", [store.PREFIX])  # no session id: the script fails
        return await asyncio.gather(*good, bad, return_exceptions=True)

    *good, bad = run(with_scripts(server.url, body))
    assert isinstance(bad, redis.exceptions.ResponseError)
    assert [reply[0] for reply in good] == [b"created"] * 5


def test_reads_see_what_their_script_wrote(server):
    r = redis.Redis.from_url(server.url)
    number = our_number(r)

    async def body(scripts: AsyncScripts):
        calls = [create_args(number, i) for i in range(20)]
        return await asyncio.gather(
            *(
                scripts.run_then_read(
                    "create_session", c, (("HGET", f"orch:session:{c[5]}", "callSid"),)
                )
                for c in calls
            ),
            scripts.run_then_read("create_session", create_args(number, 99), (("LLEN", "x"),)),
        )

    *results, (reply, reads) = run(with_scripts(server.url, body))
    assert [(reply[0], reads) for reply, reads in results] == [
        (b"created", [f"CA{i:032d}".encode()]) for i in range(20)
    ]
    assert reply[0] == b"created" and reads == [0]


def test_calls_survive_a_flushed_script_cache(server):
    r = redis.Redis.from_url(server.url)
    number = our_number(r)

    async def body(scripts: AsyncScripts):
        first = await scripts.run("create_session", create_args(number, 1))
        r.script_flush()  # as after a Redis restart: EVALSHA now answers NOSCRIPT
        again = await asyncio.gather(
            *(scripts.run("create_session", create_args(number, i)) for i in range(2, 6))
        )
        return first, again

    first, again = run(with_scripts(server.url, body))
    assert first[0] == b"created"
    assert [reply[1].decode() for reply in again] == [f"ses_batch{i}" for i in range(2, 6)]


def test_a_cancelled_caller_disturbs_nobody(server):
    r = redis.Redis.from_url(server.url)
    number = our_number(r)

    async def body(scripts: AsyncScripts):
        futures = [scripts.run("create_session", create_args(number, i)) for i in range(6)]
        futures[2].cancel()
        return await asyncio.gather(*futures, return_exceptions=True)

    replies = run(with_scripts(server.url, body))
    assert isinstance(replies[2], asyncio.CancelledError)
    assert [replies[i][0] for i in (0, 1, 3, 4, 5)] == [b"created"] * 5
    assert r.exists("orch:session:ses_batch2") == 1  # sent before the cancel: it still ran


def test_a_lost_server_reaches_every_caller(server):
    number = our_number(redis.Redis.from_url(server.url))

    async def body(scripts: AsyncScripts):
        await scripts.run("create_session", create_args(number, 0))  # connected
        server.stop()
        return await asyncio.gather(
            *(scripts.run("create_session", create_args(number, i)) for i in range(1, 4)),
            return_exceptions=True,
        )

    errors = run(with_scripts(server.url, body))
    assert all(isinstance(e, redis.exceptions.ConnectionError) for e in errors), errors
    assert len({id(e) for e in errors}) == 3  # each caller its own exception and traceback
