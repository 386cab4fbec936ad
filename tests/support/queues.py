"""The service's RQ queues and registries as RQ names them, for tests that look
at jobs waiting, running or done: RQ's keys belong to RQ, so tests ask it.

These are the evidence a test waits on to show that something did NOT happen:
once a job has run to its end and nothing is queued, running or scheduled, a
second dial or a late log line can no longer come from it. The clients given
here must not decode responses (RQ reads its jobs' data as bytes)."""

from __future__ import annotations

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.group import Group
from rq.job import Job, JobStatus
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from orchestrator import jobs
from orchestrator.launch import wait_until


def dial_queue(r: redis.Redis) -> Queue:
    """The queue of dial jobs (`dial-{member id}`)."""
    return Queue(jobs.DIAL_QUEUE, connection=r)


def control_queue(r: redis.Redis) -> Queue:
    """The queue of control jobs (`ctl-{session id}-{n}`)."""
    return Queue(jobs.CONTROL_QUEUE, connection=r)


def pending(queue: Queue) -> dict[str, list[str]]:
    """The jobs of `queue` not yet finished or failed, by where they wait: an empty
    dict when nothing is queued, running, scheduled for a retry or deferred."""
    r, name = queue.connection, queue.name
    where = {
        "queued": queue.get_job_ids(),
        "started": StartedJobRegistry(name, connection=r).get_job_ids(),
        "scheduled": ScheduledJobRegistry(name, connection=r).get_job_ids(),
        "deferred": DeferredJobRegistry(name, connection=r).get_job_ids(),
    }
    return {k: v for k, v in where.items() if v}


def finished(queue: Queue) -> list[str]:
    """The ids of the jobs of `queue` that succeeded and whose results RQ still keeps."""
    return FinishedJobRegistry(queue.name, connection=queue.connection).get_job_ids()


def failed(queue: Queue) -> list[str]:
    """The ids of the jobs of `queue` that failed for good."""
    return FailedJobRegistry(queue.name, connection=queue.connection).get_job_ids()


def queues(r: redis.Redis) -> list[Queue]:
    """Every queue the workers take jobs from."""
    return [dial_queue(r), control_queue(r)]


def all_idle(r: redis.Redis) -> bool:
    """Nothing queued, running, scheduled or deferred on any queue, and every worker
    idle between jobs: no job can change anything any more until a new one comes."""
    if any(pending(q) for q in queues(r)):
        return False
    return all(w.get_state() == "idle" for w in Worker.all(connection=r))


def job_over(r: redis.Redis, job_id: str) -> bool:
    """The job has run to its end (finished, or failed for good with no retry left,
    or already forgotten) and is nowhere a worker could take it again."""
    if any(job_id in ids for q in queues(r) for ids in pending(q).values()):
        return False
    try:
        status = Job.fetch(job_id, connection=r).get_status(refresh=True)
    except NoSuchJobError:
        return True
    return status in (JobStatus.FINISHED, JobStatus.FAILED)


def wait_maintenance(r: redis.Redis, runs: int = 2, timeout: float = 30) -> None:
    """Until RQ's registry maintenance has run `runs` more times. A worker's maintenance
    ends by taking RQ's group-cleaning lock, which then expires just before the next
    run; deleting it and seeing it taken again shows that one whole run happened since
    (two runs: one that began after this call)."""
    for n in range(runs):
        r.delete(Group.REDIS_GROUP_CLEANING_KEY)
        wait_until(
            lambda: r.exists(Group.REDIS_GROUP_CLEANING_KEY),
            timeout,
            f"RQ's registry maintenance to run ({n + 1} of {runs})",
            interval=0.1,
        )
