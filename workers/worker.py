"""The long-lived RQ worker that runs dial and control jobs.

RQ's SimpleWorker runs every job in the worker's own process (no fork per
job, clients reused). Two RQ defaults are tuned for a live call, where a lost
dial is felt within seconds:

- A job's entry in the started registry lasts its timeout plus 2 s (RQ adds
  60 s). The death penalty stops a job at its timeout, so past that a job
  still "started" belonged to a worker that died, and RQ retries it.
- Registry maintenance (which finds those abandoned jobs) runs every 5 s, not
  every 10 minutes, on whichever worker holds RQ's maintenance lock.

A job is taken from its queue in one Redis step that also records it as claimed
(`ClaimingQueue`), never popped into this process alone. RQ pops a worker of two
queues with BLPOP, and a job popped as Redis went away (a restart, a failover, a
worker killed) was in no queue and no registry: lost, its member never dialled.
A claimed job leaves its claim list in the step that puts it in RQ's started
registry; one still claimed after CLAIM_GRACE_SECONDS (its worker died, or lost
Redis, before starting it) goes back to the front of its queue.

And the process outlives a Redis outage: RQ's worker gives up when Redis
vanishes mid-job, so `run` waits for Redis to come back and starts a fresh
worker; the interrupted job is found abandoned (or still claimed) and retried.

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
from rq.exceptions import DequeueTimeout
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.utils import as_text

from orchestrator import keys, metrics, redis_client
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
# A claimed job is started within milliseconds; one claimed this long ago lost its worker.
# Found by the next maintenance run past it: back in its queue 5 to 10 s after the claim.
CLAIM_GRACE_SECONDS = MAINTENANCE_SECONDS
# An idle worker waits on the scripts' doorbell (a token for each job they enqueue), and
# looks at its queues at least this often for the jobs RQ enqueues itself (retries).
IDLE_LOOK_SECONDS = 0.5
# RQ holds a queue's maintenance lock while it cleans (milliseconds) and deletes it after;
# one left by a worker that died or lost Redis mid-clean (a worker stopped as it starts
# does: it cleans first) expires within this, not RQ's 15 minutes.
MAINTENANCE_LOCK_SECONDS = 3 * MAINTENANCE_SECONDS

# KEYS: (queue, its claim list, its claim times) for each queue, first served first;
# ARGV: none. The first job found moves to its claim list, stamped with Redis's clock.
_CLAIM = """
local now = redis.call('TIME')
for i = 1, #KEYS, 3 do
  local id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
  if id then
    redis.call('HSET', KEYS[i + 2], id, now[1])
    return {KEYS[i], id}
  end
end
return false
"""

# KEYS: a queue, its claim list, its claim times; ARGV: the grace, the job key prefix.
# A job claimed `grace` seconds ago and not started goes back to the front of the queue
# (one that is no longer queued, say cancelled, is only dropped); times of jobs no longer
# claimed are forgotten. Returns the ids requeued.
_RECLAIM = """
local now = tonumber(redis.call('TIME')[1])
local grace = tonumber(ARGV[1])
local claimed, requeued = {}, {}
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  claimed[id] = true
  local at = tonumber(redis.call('HGET', KEYS[3], id))
  if not at then
    redis.call('HSET', KEYS[3], id, now)
  elseif now - at >= grace then
    redis.call('LREM', KEYS[2], 0, id)
    redis.call('HDEL', KEYS[3], id)
    claimed[id] = nil
    if redis.call('HGET', ARGV[2] .. id, 'status') == 'queued' then
      redis.call('LPUSH', KEYS[1], id)
      table.insert(requeued, id)
    end
  end
end
for _, id in ipairs(redis.call('HKEYS', KEYS[3])) do
  if not claimed[id] then
    redis.call('HDEL', KEYS[3], id)
  end
end
return requeued
"""


def _claim_times_key(claim_list_key: str) -> str:
    return f"{claim_list_key}:claimed_at"


class ClaimList(IntermediateQueue):
    """A queue's claimed jobs: RQ's intermediate list (which RQ's started-registry step
    already empties when told to) with the time of each claim beside it. RQ's own clean-up
    of that list fails a job after a minute; this one puts it back in its queue."""

    def cleanup(self, worker: object, queue: Queue) -> None:
        script = self.connection.register_script(_RECLAIM)
        requeued = script(
            keys=[self.queue_key, self.key, _claim_times_key(self.key)],
            args=[CLAIM_GRACE_SECONDS, Job.redis_job_namespace_prefix],
        )
        for job_id in requeued:
            log.warning(
                "job %s was claimed but never started; back in %s", as_text(job_id), queue.name
            )


class ClaimingQueue(Queue):
    """RQ's Queue, whose worker claims a job (moves it to the queue's claim list, in one
    Redis step) instead of popping it with BLPOP, the only way RQ waits on two queues."""

    @property
    def intermediate_queue(self) -> ClaimList:
        return ClaimList(self.key, connection=self.connection)

    def acquire_maintenance_lock(self) -> bool:
        return bool(
            self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=MAINTENANCE_LOCK_SECONDS)
        )

    @classmethod
    def dequeue_any(  # type: ignore[override]
        cls,
        queues: list[Queue],
        timeout: int | None,
        connection: redis.Redis,
        job_class: type[Job] | None = None,
        serializer: object = None,
        death_penalty_class: object = None,
    ) -> tuple[Job, Queue] | None:
        """The first job of the first queue that has one, claimed; else wait for one up to
        `timeout` seconds (DequeueTimeout), or return None at once if `timeout` is None."""
        claim = connection.register_script(_CLAIM)
        claim_keys: list[str] = []
        for queue in queues:
            claim_list = IntermediateQueue.get_intermediate_queue_key(queue.key)
            claim_keys += [queue.key, claim_list, _claim_times_key(claim_list)]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            claimed = claim(keys=claim_keys)
            if claimed:
                queue_key, job_id = (as_text(v) for v in claimed)
                found = cls._fetch_dequeued_job(
                    connection, queue_key, job_id, job_class, serializer, death_penalty_class
                )
                if found is not None:
                    return found
                continue  # the job is gone; its claim is dropped by the clean-up
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, claim_keys[::3])
            # Redis blocks a client on one list only where the job must move, not be
            # popped: wait for a token of the doorbell the scripts ring with each job.
            connection.blpop([keys.job_doorbell()], min(left, IDLE_LOOK_SECONDS))


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
    heartbeat bounded by its own timeout, jobs claimed (ClaimingQueue), and our Scheduler."""

    redis_url = ""
    queue_class = ClaimingQueue

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's, ending the job's claim in the step that starts it (RQ does so only for a
        worker of one queue, the only one it lets claim)."""
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

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
    sweep = TimerSweep()
    sweep.start()
    while True:
        _install_template(connection)
        worker = JobWorker(
            # Control first: ending a leg must not wait behind a burst of dials.
            [
                ClaimingQueue(CONTROL_QUEUE, connection=connection),
                ClaimingQueue(DIAL_QUEUE, connection=connection),
            ],
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
        if worker._shutdown_requested_date is not None:
            sweep.stop()
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
