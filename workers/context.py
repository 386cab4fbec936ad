"""The clients a worker process's jobs share: made once per process, reused by
every job it runs (no connection or client setup per job)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import redis
from twilio.rest import Client

from orchestrator import redis_client
from orchestrator.scripts import Scripts
from orchestrator.settings import Settings
from workers.ratelimit import DialRateLimiter
from workers.twilio_client import make_client

# Each Twilio request may take this share of a job's timeout (DIAL_JOB_TIMEOUT): a dial
# makes up to four (a retry's lookup: fetch, list, fetch; then the create) and waits for
# the rate limiter, and all must end before RQ's timeout kills the job mid-request.
HTTP_SHARE = 0.2


@dataclass(frozen=True)
class Context:
    settings: Settings
    redis: redis.Redis
    scripts: Scripts
    twilio: Client
    limiter: DialRateLimiter


@cache
def context() -> Context:
    settings = Settings.from_env()
    client = redis_client.connect_sync(
        settings.redis_url, socket_timeout=10, health_check_interval=30
    )
    return Context(
        settings=settings,
        redis=client,
        scripts=Scripts(client, settings.retention),
        twilio=make_client(settings, timeout=min(15.0, settings.dial_job_timeout * HTTP_SHARE)),
        limiter=DialRateLimiter(client, settings.twilio_cps),
    )
