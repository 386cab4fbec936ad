"""The dial-rate limiter, shared through a real Redis by several workers."""

from __future__ import annotations

import threading
import time

import redis

from orchestrator import keys
from workers.ratelimit import DialRateLimiter


def test_no_second_holds_more_than_the_limit_across_workers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(keys.dial_rate())
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        # Each thread has its own client, as each worker process does.
        limiter = DialRateLimiter(redis.Redis.from_url(redis_url), per_second=5)
        for _ in range(4):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times.sort()
    assert len(times) == 16
    # Any 6 consecutive dials span at least a second (small slack for the
    # distance between Redis' clock, which decides, and ours, which observes).
    assert min(b - a for a, b in zip(times, times[5:], strict=False)) > 0.95


def test_acquire_gives_up_at_its_deadline(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(keys.dial_rate())
    limiter = DialRateLimiter(client, per_second=1)
    assert limiter.acquire() is True
    assert limiter.acquire(deadline=time.monotonic() + 0.1) is False


def test_fractional_rates_space_dials_out(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(keys.dial_rate())
    limiter = DialRateLimiter(client, per_second=0.5)
    assert (limiter.limit, limiter.window_us) == (1, 2_240_000)
    assert limiter.acquire() is True
    assert limiter.acquire(deadline=time.monotonic() + 1.5) is False
