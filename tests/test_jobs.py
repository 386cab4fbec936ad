"""The dial job's hash is copied from a template RQ built, not built by RQ per invite; it
must be exactly what RQ itself would write, and RQ must read it back as the job we meant."""

from __future__ import annotations

import zlib
from pathlib import Path

import redis
from rq.job import Job, JobStatus

from orchestrator import jobs, keys, redis_client, redis_server
from orchestrator.scripts import AsyncScripts
from orchestrator.store import new_id
from tests.support.scripts import create_args, invite_numbers, our_number, run
from workers.dial import dial_failed

BACKOFF = (0, 2, 4, 8)


def fields(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def test_same_fields_and_values_as_rq_writes():
    sid, mid = new_id("ses"), new_id("mem")
    ours = fields(jobs.dial_job(sid, mid, BACKOFF, 30)[4])
    theirs = jobs.create(sid, mid, BACKOFF, 30).to_dict()
    assert list(ours) == list(theirs)
    per_job = {"created_at", "enqueued_at", "retry_intervals"}  # times and jitter
    assert {k: v for k, v in ours.items() if k not in per_job} == {
        k: v for k, v in theirs.items() if k not in per_job
    } | {"data": ours["data"]}
    assert zlib.decompress(ours["data"]) == zlib.decompress(theirs["data"])


def test_rq_reads_the_job_back(redis_url: str):
    r = redis.Redis.from_url(redis_url)
    sid, mid = new_id("ses"), new_id("mem")
    _, _, key, jid, flat = jobs.dial_job(sid, mid, BACKOFF, 30)
    r.hset(key, mapping=fields(flat))  # as invite.lua writes it
    job = Job.fetch(jid, connection=r)
    assert (job.func_name, job.args, job.kwargs) == (jobs.DIAL_FUNCTION, (sid, mid), {})
    assert job.get_status() == JobStatus.QUEUED
    assert (job.origin, job.timeout, job.description) == ("dial", 30, f"dial {mid} into {sid}")
    assert (job.result_ttl, job.failure_ttl) == (jobs.RESULT_TTL, jobs.FAILURE_TTL)
    assert job.failure_callback is dial_failed
    assert job.retries_left == len(BACKOFF)
    assert all(b <= got <= 2 * b for b, got in zip(BACKOFF, job.retry_intervals, strict=True))
    r.delete(key)


def test_result_kept_as_long_as_asked(redis_url: str):
    r = redis.Redis.from_url(redis_url)
    _, _, key, jid, flat = jobs.dial_job(new_id("ses"), new_id("mem"), BACKOFF, 30, 120)
    r.hset(key, mapping=fields(flat))
    assert Job.fetch(jid, connection=r).result_ttl == 120
    r.delete(key)


def test_each_job_draws_its_own_jitter():
    draws = {tuple(jobs.jittered((10, 20))) for _ in range(50)}
    assert len(draws) > 1
    assert all(10 <= a <= 20 and 20 <= b <= 40 for a, b in draws)


def test_each_job_rings_the_doorbell_once_and_unclaimed_tokens_stay_bounded(
    tmp_path: Path,
) -> None:
    """With no worker to take them, the doorbell grows by one token a job, and is cut
    back to 64 once it holds 128: one command a job, plus one per 64 while nobody waits."""
    server = redis_server.start(tmp_path / "redis")
    r = redis.Redis.from_url(server.url)
    number = our_number(r)
    account = r.get(keys.number(number)).decode()
    sessions = [create_args(number, i) for i in range(4)]
    lengths: list[int] = []

    async def body() -> None:
        client = redis_client.connect(server.url)
        scripts = AsyncScripts(client)
        try:
            await jobs.install_control_template(client)
            for args in sessions:
                await scripts.run("create_session", args)
            for n in range(200):
                await invite_numbers(scripts, sessions[n % 4][5], account, 1, first=n)
                lengths.append(r.llen(keys.job_doorbell()))
        finally:
            await scripts.aclose()
            await client.aclose()

    try:
        run(body())
    finally:
        server.stop()
    assert lengths[:128] == list(range(1, 129))
    assert lengths[128] == 64 and max(lengths) == 128
    assert lengths[129:] == [*range(65, 129), *range(64, 71)]  # and again at 128
