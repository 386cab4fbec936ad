"""Outbound dials per second, shared by every worker process through Redis.

A sliding window (a sorted set of dial times, Redis' own clock), so no second
anywhere holds more than TWILIO_CPS dials, whatever the number of workers. The
window is 12% longer than a second: a dial reaches Twilio a little after its
slot is granted, and that jitter must not push two seconds' dials into one.
"""

from __future__ import annotations

import time
import uuid

import redis

from orchestrator import keys

JITTER_MARGIN = 1.12

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return (tonumber(oldest[2]) + window) - now + 1
"""


class DialRateLimiter:
    def __init__(self, client: redis.Redis, per_second: float) -> None:
        # A fractional rate (0.5/s) is one dial per 2 s window.
        if per_second >= 1:
            self.limit, self.window_us = int(per_second), int(1_000_000 * JITTER_MARGIN)
        else:
            self.limit, self.window_us = 1, int(1_000_000 * JITTER_MARGIN / per_second)
        self._script = client.register_script(_ACQUIRE)

    def acquire(self, deadline: float | None = None) -> bool:
        """Block until a dial may go out; False if `deadline` (monotonic) passes first."""
        token = uuid.uuid4().hex
        while True:
            wait_us = int(
                self._script(keys=[keys.dial_rate()], args=[self.window_us, self.limit, token])
            )
            if wait_us <= 0:
                return True
            if deadline is not None and time.monotonic() + wait_us / 1e6 > deadline:
                return False
            time.sleep(wait_us / 1e6)
