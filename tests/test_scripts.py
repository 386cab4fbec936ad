"""AsyncScripts sends the script calls of concurrent requests as one pipeline. Batching must
be invisible to each caller: its own reply, its own error, nothing lost when Redis forgets
its scripts or goes away, and a caller that gives up disturbs nobody."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import redis
import redis.asyncio
import redis.exceptions

from orchestrator import keys, redis_client, redis_server
from orchestrator.scripts import HELPERS, NAMES, AsyncScripts, source
from tests.support.scripts import create_args, our_number, run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[redis_server.RedisServer]:
    """A private Redis: these tests flush its scripts and stop it."""
    srv = redis_server.start(tmp_path / "redis")
    yield srv
    srv.stop()


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
        bad = scripts.run("render", [keys.PREFIX])  # no session id: the script fails
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
                    "create_session", c, (("HGET", keys.session(c[5]), "callSid"),)
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
    assert r.exists(keys.session("ses_batch2")) == 1  # sent before the cancel: it still ran


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


# --- the scripts' shared helpers ----------------------------------------------------------

LUA = resources.files("orchestrator") / "lua"
# Each key function of lua/_keys.lua, called, and the key orchestrator/keys.py names.
LUA_KEYS = {
    "skey('S')": keys.session("S"),
    "mkey('S', 'M')": keys.member("S", "M"),
    "lkey('S')": keys.session_log("S"),
    "idskey('S')": keys.session_members("S"),
    "activekey('S')": keys.session_active("S"),
    "mjkey('S')": keys.members_json("S"),
    "mvkey('S')": keys.member_versions("S"),
    "callkey('CA1')": keys.call("CA1"),
    "pendingdialkey('S')": keys.pending_dial("S"),
    "usersessionskey('U')": keys.user_sessions("U"),
    "accountnumberskey('A')": keys.account_numbers("A"),
    "accountqueueskey('A')": keys.account_queues("A"),
    "queueskey()": keys.queues(),
    "queuekey('Q')": keys.queue("Q"),
    "queueagentskey('Q')": keys.queue_agents("Q"),
    "queuewaitingkey('Q')": keys.queue_waiting("Q"),
    "queuestatskey('Q')": keys.queue_stats("Q"),
    "queuefreekey('Q')": keys.queue_free("Q"),
    "numberqueuekey('+15550100')": keys.number_queue("+15550100"),
    "userqueueskey('U')": keys.user_queues("U"),
    "timerskey()": keys.timers(),
    "queueswaitingkey()": keys.queues_waiting(),
    "agentstateskey()": keys.agent_states(),
    "dialtemplatekey()": keys.dial_job_template(),
    "doorbellkey()": keys.job_doorbell(),
    "accountkey('A')": keys.account("A"),
    "sessionsidx('A')": keys.account_sessions("A"),
    "activeidx('A')": keys.account_active("A"),
    "endedidx('A')": keys.account_ended("A"),
    "eventskey('A')": keys.account_events("A"),
    "userrefkey('A', 'R')": keys.account_user("A", "R"),
    "userkey('U')": keys.user("U"),
    "numberkey('+15550100')": keys.number("+15550100"),
    "idemkey('T')": keys.idempotency("T"),
    "templatekey()": keys.control_job_template(),
    "templatekeyskey()": keys.control_job_keys(),
}


def test_the_scripts_spell_every_key_as_keys_py_does(server):
    """_keys.lua and keys.py name the same keys, or a script and the Python reading its
    writes would each see a key the other never touches."""
    text = (LUA / "_keys.lua").read_text()
    defined = set(re.findall(r"^local function (\w+)\(", text, re.M))
    assert defined == {call.split("(")[0] for call in LUA_KEYS}  # every one of them compared
    script = text + "return {" + ", ".join(LUA_KEYS) + "}"
    r = redis.Redis.from_url(server.url, decode_responses=True)
    assert r.eval(script, 0, keys.PREFIX) == list(LUA_KEYS.values())


def test_every_helper_file_is_part_of_every_script() -> None:
    """A helper file left out of HELPERS would be dead code that looks alive."""
    files = {p.name.removesuffix(".lua") for p in LUA.iterdir() if p.name.startswith("_")}
    assert files == set(HELPERS)
    assert HELPERS[0] == "_keys" and HELPERS[-1] == "_events"  # P first; flush_events last


def _top_level_names(code: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for match in re.finditer(r"^local (?:function )?([\w, ]+?)\s*[=(]", code, re.M):
        for name in match[1].split(","):
            assert name.strip() not in found, f"{name.strip()} is defined twice"
            found[name.strip()] = match.start()
    return found


@pytest.mark.parametrize("name", NAMES)
def test_each_helper_uses_only_what_comes_before_it(name: str) -> None:
    """A Lua local is visible only below its definition; above it the name is a global,
    which Redis refuses only when that line runs. So the helpers' declared order
    (orchestrator.scripts.HELPERS) must define everything before its first use."""
    text = source(name)
    helpers = text[: text.index("local function body()")]
    code = re.sub(r"--[^\n]*", "", helpers)  # comments
    code = re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", "''", code)  # strings
    defined = _top_level_names(code)
    assert {"P", "skey", "touched", "flush_events"} <= set(defined)
    early = [n for n, at in defined.items() if re.search(rf"\b{n}\b", code).start() < at]
    assert not early, f"used before they are defined: {early}"
