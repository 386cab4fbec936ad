"""The dial job, built in-process so the invite script can enqueue it atomically.

RQ builds and serialises the job (its own format, whatever the RQ version);
we only hand the resulting hash to invite.lua, which writes it and pushes the
job id in the same step that adds the member. No member without its job, no
job without its member.

RQ builds one job per process and settings (`_template`); each invite copies
that hash and fills in only what is its own (times, arguments, jitter):
Job.create and to_dict for every invite cost more than the rest of the
invite's Python. tests/test_jobs.py holds the copy to what RQ itself writes.
"""

from __future__ import annotations

import json
import random
import zlib
from functools import cache
from typing import Any

import redis
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import now, utcformat

QUEUE = "dial"
DIAL_FUNCTION = "workers.dial.dial_member"
FAILED_CALLBACK = "workers.dial.dial_failed"
RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600

_offline = redis.Redis()  # never connected: Job.create only needs a Redis type


def jittered(backoff: tuple[int, ...]) -> list[int]:
    """Backoff for Twilio 429/5xx and lost workers: each job draws its own jitter
    (base to twice base), so a burst of failures does not return as a burst of retries."""
    return [b + int(random.random() * (b + 1)) for b in backoff]


def job_id(member_id: str) -> str:
    """One job per member: a retried invite can never enqueue a second dial."""
    return f"dial-{member_id}"


def create(session_id: str, member_id: str, backoff: tuple[int, ...], timeout: int) -> Job:
    """The dial job as RQ builds it."""
    job = Job.create(
        DIAL_FUNCTION,
        args=(session_id, member_id),
        connection=_offline,
        id=job_id(member_id),
        timeout=timeout,
        retry=Retry(max=len(backoff), interval=jittered(backoff)),
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        description=f"dial {member_id} into {session_id}",
        status=JobStatus.QUEUED,
        on_failure=Callback(FAILED_CALLBACK),
    )
    job.origin = QUEUE
    job.enqueued_at = now()
    return job


@cache
def _template(backoff: tuple[int, ...], timeout: int) -> tuple[dict[str, Any], Job]:
    job = create("", "", backoff, timeout)
    return job.to_dict(), job


def dial_job(
    session_id: str, member_id: str, backoff: tuple[int, ...], timeout: int
) -> tuple[str, str, str, str, list]:
    """(queue key, queues-set key, job key, job id, flat job hash) for invite.lua."""
    fields, template = _template(backoff, timeout)
    stamp = utcformat(now())
    call = (DIAL_FUNCTION, None, (session_id, member_id), {})  # what RQ's Job.data pickles
    fields = {
        **fields,
        "created_at": stamp,
        "enqueued_at": stamp,
        "data": zlib.compress(template.serializer.dumps(call)),
        "description": f"dial {member_id} into {session_id}",
        "retry_intervals": json.dumps(jittered(backoff)),
    }
    jid = job_id(member_id)
    return (
        Queue.redis_queue_namespace_prefix + QUEUE,
        Queue.redis_queues_keys,
        Job.redis_job_namespace_prefix + jid,
        jid,
        [item for pair in fields.items() for item in pair],
    )
