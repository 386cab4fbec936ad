"""The long-lived RQ worker that runs dial and control jobs.

RQ's SimpleWorker runs every job in the worker's own process (no fork per
job, clients reused). Two RQ defaults are tuned for a live call, where a lost
dial is felt within seconds:

- A job's entry in the started registry lasts its timeout plus 2 s (RQ adds
  60 s). The death penalty stops a job at its timeout, so past that a job
  still "started" belonged to a worker that died, and RQ retries it.
- Registry maintenance (which finds those abandoned jobs) runs every 5 s, not
  every 10 minutes, on whichever worker holds RQ's maintenance lock.

And the process outlives a Redis outage: RQ's worker gives up when Redis
vanishes mid-job, so `run` waits for Redis to come back and starts a fresh
worker; the interrupted job is found abandoned and retried.

RQ logs its routine at INFO (registry clean-ups every 5 s, each job taken,
done and kept); its loggers are held at WARNING unless LOG_LEVEL is DEBUG, so
what remains is job failures and abandoned jobs, next to our own lines.
"""

from __future__ import annotations

import logging
import os
import time

import redis
import redis.exceptions
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.scheduler import RQScheduler

from orchestrator import metrics, redis_client
from orchestrator.jobs import (
    CONTROL_QUEUE,
    DIAL_QUEUE,
    configure_dial_template,
    install_control_template,
)
from orchestrator.redis_client import REDIS_ERRORS
from workers.context import context
from workers.timers import TimerSweep

log = logging.getLogger("orchestrator.worker")

MAINTENANCE_SECONDS = 5
# Also bounds how long an idle worker blocks on the queue between maintenance runs.
WORKER_TTL = MAINTENANCE_SECONDS + 15


class Scheduler(RQScheduler):
    """RQ's scheduler, which runs in a process of its own, rebuilds its client from the
    worker's connection pool settings; a Sentinel pool cannot be rebuilt that way (it needs
    its Sentinels), so this one connects through REDIS_URL, as every other client does."""

    redis_url = ""

    @property
    def connection(self) -> redis.Redis:
        if self._connection is None:
            self._connection = redis_client.connect_sync(self.redis_url)
        return self._connection


class JobWorker(SimpleWorker):
    """The worker of both queues, control and dial: RQ's SimpleWorker with a job's
    heartbeat bounded by its own timeout and our Scheduler."""

    redis_url = ""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        if job.timeout and job.timeout > 0:
            return int(job.timeout) + 2
        return super().get_heartbeat_ttl(job, working_time)

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own, with the Scheduler above."""
        self.scheduler = Scheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.redis_url = self.redis_url
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()


def rq_logging_level(level: str) -> str:
    """RQ's loggers: WARNING (failures only), or DEBUG when that is what is asked for."""
    number = logging.getLevelName(level)
    return level if number <= logging.DEBUG or number >= logging.WARNING else "WARNING"


def run(redis_url: str, logging_level: str = "INFO") -> None:
    """Work until stopped (SIGTERM/SIGINT), across Redis outages and failovers."""
    try:
        _run(redis_url, logging_level)
    finally:
        metrics.process_exited()


def _run(redis_url: str, logging_level: str) -> None:
    log.info("worker started (pid %d): queues %s, %s", os.getpid(), CONTROL_QUEUE, DIAL_QUEUE)
    connection = redis_client.connect_sync(redis_url)
    settings = context().settings
    configure_dial_template(settings.dial_retry_backoff, settings.dial_job_timeout)
    while True:
        _install_template(connection)
        # A fresh sweep for each worker: RQ forks its scheduler as the worker starts, and
        # a sweep caught mid-request by a Redis outage must not be what the fork copies.
        sweep = TimerSweep()
        sweep.start()
        worker = JobWorker(
            # Control first: ending a leg must not wait behind a burst of dials.
            [Queue(CONTROL_QUEUE, connection=connection), Queue(DIAL_QUEUE, connection=connection)],
            connection=connection,
            maintenance_interval=MAINTENANCE_SECONDS,
            worker_ttl=WORKER_TTL,
        )
        worker.redis_url = redis_url
        try:
            worker.work(with_scheduler=True, logging_level=rq_logging_level(logging_level))
        except REDIS_ERRORS as exc:
            log.warning("Redis unavailable (%s)", exc)
        # RQ's work() also returns, after logging, when an error ends its loop.
        sweep.stop()
        sweep.join(5)
        if worker._shutdown_requested_date is not None:
            return
        log.warning("the worker stopped without being asked to; restarting when Redis answers")
        _wait_for_redis(connection)


def _install_template(connection: redis.Redis) -> None:
    """The job templates the scripts copy; Redis may have lost them."""
    try:
        install_control_template(connection)
    except REDIS_ERRORS as exc:
        log.warning("Redis unavailable (%s)", exc)  # the scripts install it once it is back


def _wait_for_redis(connection: redis.Redis) -> None:
    delay = 0.2
    while True:
        time.sleep(delay)
        try:
            connection.ping()
            return
        except REDIS_ERRORS:
            delay = min(delay * 2, 5.0)
