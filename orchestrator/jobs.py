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

from orchestrator import keys

DIAL_QUEUE = "dial"
DIAL_FUNCTION = "workers.dial.dial_member"
FAILED_CALLBACK = "workers.dial.dial_failed"
# Twilio work other than dialling (end a leg, hold, mute, end a conference), on its own
# queue, which workers take before dials: a removal must not wait behind a burst of invites.
CONTROL_QUEUE = "control"
CONTROL_FUNCTION = "workers.control.settle"
CONTROL_FAILED_CALLBACK = "workers.control.settle_failed"
# A finished dial's result (what `rq info` and RQ's registries show) is kept as long as
# the live events that told of it: EVENT_RETENTION_SECONDS, whose default this is.
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


def create(
    session_id: str,
    member_id: str,
    backoff: tuple[int, ...],
    timeout: int,
    result_ttl: int = RESULT_TTL,
) -> Job:
    """The dial job as RQ builds it."""
    job = Job.create(
        DIAL_FUNCTION,
        args=(session_id, member_id),
        connection=_offline,
        id=job_id(member_id),
        timeout=timeout,
        retry=Retry(max=len(backoff), interval=jittered(backoff)),
        result_ttl=result_ttl,
        failure_ttl=FAILURE_TTL,
        description=f"dial {member_id} into {session_id}",
        status=JobStatus.QUEUED,
        on_failure=Callback(FAILED_CALLBACK),
    )
    job.origin = DIAL_QUEUE
    job.enqueued_at = now()
    return job


@cache
def _template(
    backoff: tuple[int, ...], timeout: int, result_ttl: int
) -> tuple[dict[str, Any], Job]:
    job = create("", "", backoff, timeout, result_ttl)
    return job.to_dict(), job


def dial_job(
    session_id: str,
    member_id: str,
    backoff: tuple[int, ...],
    timeout: int,
    result_ttl: int = RESULT_TTL,
) -> tuple[str, str, str, str, list]:
    """(queue key, queues-set key, job key, job id, flat job hash) for invite.lua."""
    fields, template = _template(backoff, timeout, result_ttl)
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
        Queue.redis_queue_namespace_prefix + DIAL_QUEUE,
        Queue.redis_queues_keys,
        Job.redis_job_namespace_prefix + jid,
        jid,
        [item for pair in fields.items() for item in pair],
    )


# Control jobs retry Twilio 429/5xx and lost workers on this schedule (seconds); the first
# retry is immediate, as a dial's, because it is what recovers a job whose worker died. A
# job may take CONTROL_TIMEOUT (a few Twilio requests per leg it ends); one whose worker
# died is noticed that long plus 2 s after it started, so it is short: a live call waits.
# A job cut short by it is retried, and picks up what is still to do.
CONTROL_BACKOFF = (0, 1, 2, 4, 8, 16)
CONTROL_TIMEOUT = 15


def control_template(
    backoff: tuple[int, ...] = CONTROL_BACKOFF, timeout: int = CONTROL_TIMEOUT
) -> dict[str, Any]:
    """The control job as RQ builds it, with no arguments: the scripts copy it for each
    change that needs Twilio work, under an id that names the session (`ctl-{sid}-{n}`).
    It keeps no result: the session's state is its outcome."""
    job = Job.create(
        CONTROL_FUNCTION,
        connection=_offline,
        id="ctl-template",
        timeout=timeout,
        retry=Retry(max=len(backoff), interval=list(backoff)),
        result_ttl=0,
        failure_ttl=FAILURE_TTL,
        description="settle",
        status=JobStatus.QUEUED,
        on_failure=Callback(CONTROL_FAILED_CALLBACK),
    )
    job.origin = CONTROL_QUEUE
    return {k: v.value if isinstance(v, JobStatus) else v for k, v in job.to_dict().items()}


# A ring queue's offer is a dial job the scripts write themselves, for a member they
# add (orchestrator/lua/_queues.lua): they copy this template and put the session and
# member ids in place of these, which have the same length as real ones. RQ reads a job's
# `data` uncompressed when it is not zlib's, so the pickle can be edited as text.
PLACEHOLDER_SESSION = "ses_" + "0" * 24
PLACEHOLDER_MEMBER = "mem_" + "0" * 24
_dial_settings: tuple[tuple[int, ...], int] = ((0, 2, 4, 8, 16, 30), 30)


def configure_dial_template(backoff: tuple[int, ...], timeout: int) -> None:
    """The dial settings (DIAL_RETRY_BACKOFF, DIAL_JOB_TIMEOUT) of the offers' template:
    each web and worker process sets its own before it installs the templates."""
    global _dial_settings
    _dial_settings = (tuple(backoff), int(timeout))
    _dial_fields.cache_clear()


@cache
def _dial_fields() -> dict[str, Any]:
    backoff, timeout = _dial_settings
    fields, template = _template(backoff, timeout, RESULT_TTL)
    call = (DIAL_FUNCTION, None, (PLACEHOLDER_SESSION, PLACEHOLDER_MEMBER), {})
    return {
        **fields,
        "data": template.serializer.dumps(call),
        "retry_intervals": json.dumps(list(backoff)),
    }


def install_control_template(r: Any) -> Any:
    """Write the templates the scripts copy, the control job's and the offers' dial job's
    (sync or asyncio client; await the result of the latter). Every web and worker
    process does so at start; a script that finds one missing (Redis lost its data)
    answers NOTEMPLATE and the caller installs them and tries again."""
    pipe = r.pipeline(transaction=True)
    pipe.delete(keys.control_job_template(), keys.dial_job_template())
    pipe.hset(keys.control_job_template(), mapping=_control_fields())
    pipe.hset(keys.dial_job_template(), mapping=_dial_fields())
    pipe.hset(
        keys.control_job_keys(),
        mapping={
            "queue": Queue.redis_queue_namespace_prefix + CONTROL_QUEUE,
            "dialqueue": Queue.redis_queue_namespace_prefix + DIAL_QUEUE,
            "queues": Queue.redis_queues_keys,
            "job": Job.redis_job_namespace_prefix,
        },
    )
    return pipe.execute()


@cache
def _control_fields() -> dict[str, Any]:
    return control_template()


def session_of_control_job(job_id: str) -> str:
    """`ctl-{sid}-{n}` -> sid."""
    return job_id.removeprefix("ctl-").rsplit("-", 1)[0]


QUEUES = (DIAL_QUEUE, CONTROL_QUEUE)


async def queue_lengths(r: Any) -> dict[str, int]:
    """Each queue's waiting jobs, in one round trip (an asyncio client)."""
    pipe = r.pipeline(transaction=False)
    for name in QUEUES:
        pipe.llen(Queue.redis_queue_namespace_prefix + name)
    return dict(zip(QUEUES, map(int, await pipe.execute()), strict=True))
