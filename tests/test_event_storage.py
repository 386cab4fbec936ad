"""How the scripts keep what live events are made of: each member's JSON once per change
(its versions), the session's events naming the versions, and Redis forgetting both when
the retention settings say so. A session of fifty members costs a change no more than a
session of one, and a replayed event still renders the SessionInfo of its moment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from orchestrator import events, jobs, keys, redis_client, redis_server, store
from orchestrator.scripts import AsyncScripts, Retention
from tests.support.scripts import create_args, invite_numbers, our_number, run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[redis_server.RedisServer]:
    srv = redis_server.start(tmp_path / "redis")
    yield srv
    srv.stop()


def with_scripts(url: str, body, retention: Retention | None = None):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        client = redis_client.connect(url)
        scripts = AsyncScripts(client, retention=retention or Retention())
        try:
            await jobs.install_control_template(client)
            return await body(scripts, client)
        finally:
            await scripts.aclose()
            await client.aclose()

    return run(main())


def test_events_name_member_versions_and_replay_exactly(server):
    r = redis.Redis.from_url(server.url)
    number = our_number(r)
    account = r.get(keys.number(number)).decode()
    small, large = create_args(number, 1), create_args(number, 2)
    mid, call_sid = "mem_ses_batch2_7", "CA" + "7" * 32

    async def body(scripts: AsyncScripts, client: redis.asyncio.Redis):
        for args in (small, large):
            await scripts.run("create_session", args)
        await invite_numbers(scripts, small[5], account, 1)
        await invite_numbers(scripts, large[5], account, 50)
        last = {e[1][b"@sid"]: e[1] for e in r.xrange(keys.account_events(account))}
        # The caller and 50 members, each at its first version, named in a few bytes each.
        assert last[b"ses_batch2"][b"@members"] == b"000001" * 51
        assert last[b"ses_batch1"][b"@members"] == b"000001" * 2
        sizes = [sum(len(k) + len(v) for k, v in last[s].items()) for s in last]
        assert max(sizes) - min(sizes) < 400
        assert r.hlen(keys.member_versions("ses_batch2")) == 51

        # A change to one member (Twilio says its leg rings) writes that member's JSON only.
        args = [keys.PREFIX, "ses_batch2", mid, "ringing", call_sid, "1", store.now(), "t1"]
        await scripts.run("call_event", args)
        newest = r.xrevrange(keys.account_events(account), count=1)[0][1]
        versions = [newest[b"@members"][i : i + 6] for i in range(0, 51 * 6, 6)]
        assert versions[8] == b"000002" and versions.count(b"000001") == 50  # caller first
        assert r.hlen(keys.member_versions("ses_batch2")) == 52

        # Replayed by a renderer that has read nothing yet, the newest event is what GET
        # answers now, and the one before it is the session before the member rang.
        session = await store.get_session(scripts, "ses_batch2", account)
        replay = [e async for e in events.Renderer(client).since(account, "0-0", "ses_batch2")]
        assert session is not None
        assert replay[-1].frame.endswith(b',"session":' + session.to_json() + b"}\n\n")
        assert call_sid.encode() in replay[-1].frame
        assert call_sid.encode() not in replay[-2].frame

    with_scripts(server.url, body)


def test_retention_follows_the_settings(server):
    r = redis.Redis.from_url(server.url)
    number = our_number(r)
    account = r.get(keys.number(number)).decode()

    async def body(scripts: AsyncScripts, client: redis.asyncio.Redis):
        await scripts.run("create_session", create_args(number, 3))
        await invite_numbers(scripts, "ses_batch3", account, 2)
        actor = store.Actor("key_test")
        args = [keys.PREFIX, "ses_batch3", "mem_ses_batch3_1", "ringing", "CA" + "3" * 32]
        await scripts.run("call_event", [*args, "1", store.now(), "token-3"])
        await store.get_session(scripts, "ses_batch3", account)  # caches the members' JSON
        return await store.end_session(scripts, sid="ses_batch3", account_id=account, actor=actor)

    assert with_scripts(server.url, body, Retention(sessions=300, events=120)) == "ended-now"
    for key in ("", ":members", ":log", ":memberversions", ":member:mem_ses_batch3_1"):
        assert 200 < r.ttl(keys.session("ses_batch3") + key) <= 300, key
    assert 120 < r.ttl(keys.account_events(account)) <= 180
    # What only helps render or recognise a retried callback lasts as long as the events.
    assert 60 < r.ttl(keys.idempotency("token-3")) <= 120
    assert 60 < r.ttl(keys.members_json("ses_batch3")) <= 120


def test_renderer_forgets_sessions_that_stopped_changing(server):
    r = redis.Redis.from_url(server.url)
    number = our_number(r)
    account = r.get(keys.number(number)).decode()

    async def body(scripts: AsyncScripts, client: redis.asyncio.Redis):
        first, second = create_args(number, 4), create_args(number, 5)
        for args in (first, second):
            await scripts.run("create_session", args)
            await invite_numbers(scripts, args[5], account, 3)
        entries = r.xrange(keys.account_events(account))
        by_session = {
            sid: [e for e in entries if e[1][b"@sid"] == sid]
            for sid in (b"ses_batch4", b"ses_batch5")
        }
        kept = events.Renderer(client)
        idle = events.Renderer(client, idle_seconds=0.0)  # forgets whatever it did not just render
        small = events.Renderer(client, sessions=1)
        for renderer in (kept, idle, small):
            for sid in by_session:
                await renderer.render(by_session[sid])
        assert (len(kept), len(idle), len(small)) == (2, 1, 1)
        # Rendered again from nothing, a forgotten session's events read the same.
        again = await idle.render(by_session[b"ses_batch4"])
        assert [e.frame for e in again] == [
            e.frame for e in await kept.render(by_session[b"ses_batch4"])
        ]

    with_scripts(server.url, body)
