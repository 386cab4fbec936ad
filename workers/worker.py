"""The long-lived RQ worker that runs dial jobs.

RQ's SimpleWorker runs each job in its own process (no fork per job, clients
reused). Two RQ defaults are tuned for a live call, where a lost dial is felt
within seconds:

- A job's entry in the started registry lasts its timeout plus 2 s (RQ adds
  60 s). The death penalty stops a job at its timeout, so past that a job
  still "started" belonged to a worker that died, and RQ retries it.
- Registry maintenance (which finds those abandoned jobs) runs every 5 s, not
  every 10 minutes, on whichever worker holds RQ's maintenance lock.
"""

from __future__ import annotations

import redis
from rq import Queue, SimpleWorker
from rq.job import Job

from orchestrator.jobs import QUEUE

MAINTENANCE_SECONDS = 5
# Also bounds how long an idle worker blocks on the queue between maintenance runs.
WORKER_TTL = MAINTENANCE_SECONDS + 15


class DialWorker(SimpleWorker):
    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        if job.timeout and job.timeout > 0:
            return int(job.timeout) + 2
        return super().get_heartbeat_ttl(job, working_time)


def run(connection: redis.Redis, logging_level: str = "INFO") -> None:
    worker = DialWorker(
        [Queue(QUEUE, connection=connection)],
        connection=connection,
        maintenance_interval=MAINTENANCE_SECONDS,
        worker_ttl=WORKER_TTL,
    )
    worker.work(with_scheduler=True, logging_level=logging_level)
