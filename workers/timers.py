"""The ring queues' timers (docs/queues.md): each worker process sweeps them.

A timer (a ring round's end, a caller's longest wait, an agent's wrap-up) is an entry
in a Redis sorted set, due at its score; the sweep runs the due ones in one script
(timers.lua), which pops each before it acts, so every timer runs once whichever worker
pops it, and none is lost with a process: any live worker runs it. The same script then
looks at a few queues with calls waiting and offers them to free agents, so a call never
waits for an event a crash lost. A sweep every SWEEP_SECONDS keeps a timer's lateness
well under a second at the cost of one script call, a few microseconds when nothing is
due.
"""

from __future__ import annotations

import logging
import threading

from orchestrator import store
from orchestrator.redis_client import REDIS_ERRORS
from workers.context import context

log = logging.getLogger("orchestrator.timers")

SWEEP_SECONDS = 0.2


class TimerSweep(threading.Thread):
    """The sweep, in a thread of the worker process (the jobs run in its main thread)."""

    def __init__(self) -> None:
        super().__init__(name="timer-sweep", daemon=True)
        self._halt = threading.Event()

    def run(self) -> None:
        ctx = context()
        failing = False
        while not self._halt.wait(SWEEP_SECONDS):
            try:
                store.run_timers(ctx.redis, ctx.scripts)
            except REDIS_ERRORS as exc:
                if not failing:
                    log.warning("queue timers wait for Redis (%s)", exc)
                failing = True
                continue
            except Exception:
                log.exception("a queue timer sweep failed; the next one runs it again")
                continue
            if failing:
                log.info("queue timers run again")
                failing = False

    def stop(self) -> None:
        self._halt.set()
