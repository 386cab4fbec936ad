"""The dial job, built in-process so the invite script can enqueue it atomically.

RQ builds and serialises the job (its own format, whatever the RQ version);
we only hand the resulting hash to invite.lua, which writes it and pushes the
job id in the same step that adds the member. No member without its job, no
job without its member.
"""

from __future__ import annotations

import random

import redis
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import now

QUEUE = "dial"
DIAL_FUNCTION = "workers.dial.dial_member"
FAILED_CALLBACK = "workers.dial.dial_failed"

_offline = redis.Redis()  # never connected: Job.create only needs a Redis type


def retry_policy(backoff: tuple[int, ...]) -> Retry:
    """Backoff for Twilio 429/5xx and lost workers: each job draws its own jitter
    (base to twice base), so a burst of failures does not return as a burst of retries."""
    return Retry(max=len(backoff), interval=[random.randint(b, 2 * b) for b in backoff])


def job_id(member_id: str) -> str:
    """One job per member: a retried invite can never enqueue a second dial."""
    return f"dial-{member_id}"


def dial_job(
    session_id: str, member_id: str, backoff: tuple[int, ...], timeout: int
) -> tuple[str, str, str, str, list]:
    """(queue key, queues-set key, job key, job id, flat job hash) for invite.lua."""
    job = Job.create(
        DIAL_FUNCTION,
        args=(session_id, member_id),
        connection=_offline,
        id=job_id(member_id),
        timeout=timeout,
        retry=retry_policy(backoff),
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        description=f"dial {member_id} into {session_id}",
        status=JobStatus.QUEUED,
        on_failure=Callback(FAILED_CALLBACK),
    )
    job.origin = QUEUE
    job.enqueued_at = now()
    flat = [item for pair in job.to_dict().items() for item in pair]
    return (
        Queue.redis_queue_namespace_prefix + QUEUE,
        Queue.redis_queues_keys,
        job.key.decode() if isinstance(job.key, bytes) else job.key,
        job.id,
        flat,
    )
