"""Fault injection: the failures a client of Twilio must survive, on demand.

``POST /_emulator/faults`` arms one ``Fault`` for one REST operation: an error status Twilio
answers when it is overloaded or failing (429, 500, 503), an answer held back past the
client's timeout although the work was done (``delay``), or a connection reset with no answer
at all (``reset``). ``FaultInjector.apply`` wraps a REST handler's work with whatever fault is
armed for its operation; the README's "Faults" section is the contract.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator.errors import TwilioError

# Twilio's bodies for the failures a client must retry.
FAULT_BODIES = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}
FAULT_MODES = ("status", "delay", "reset")
#: The REST operations a fault can be armed for (form field ``operation``).
FAULT_OPERATIONS = (
    "participant-create",
    "participant-update",
    "participant-delete",
    "calls-update",
    "conference-update",
    "callbacks",
)

#: The 502 body ``mode=reset`` falls back to when no TCP front can reset the connection.
NO_FRONT_MESSAGE = (
    "emulator fault mode=reset: this server has no TCP front to reset the connection "
    "(run `python -m emulator` without --no-front), so it answers 502 instead"
)

#: A request's work: given how long its answer will be held back, it does what the request
#: asks and returns the answer (a create starts its call only once that answer has gone out).
Work = Callable[[float], Awaitable[Response]]


@dataclass
class Fault:
    """What happens to requests of ``operation`` (participant creates unless armed for
    another), for the next ``count`` or until ``until``.

    ``until`` is a ``time.monotonic()`` deadline; when set, ``count`` is unused.
    """

    mode: str = "status"
    operation: str = "participant-create"
    status: int = 503  # mode=status: the HTTP status to answer
    seconds: float = 0.0  # mode=delay: how long to hold the response
    count: int = 0
    until: float | None = None

    def take(self, now: float, operation: str = "participant-create") -> bool:
        """Whether this request gets the fault (and use up one of ``count``)."""
        if operation != self.operation:
            return False
        if self.until is not None:
            return now < self.until
        if self.count > 0:
            self.count -= 1
            return True
        return False

    def state(self, served: int, now: float) -> dict[str, Any]:
        """``{remaining, served}``, plus ``mode`` unless it is ``status`` (the original shape).

        Delay faults add ``seconds``; time windows add ``secondsLeft`` and report
        ``remaining`` as null while the window is open (0 once it has closed).
        """
        body: dict[str, Any] = {"remaining": self.count, "served": served}
        if self.operation != "participant-create":
            body["operation"] = self.operation
        if self.mode != "status":
            body["mode"] = self.mode
        if self.mode == "delay":
            body["seconds"] = self.seconds
        if self.until is not None:
            left = max(0.0, self.until - now)
            body["remaining"] = None if left > 0 else 0
            body["secondsLeft"] = round(left, 3)
        return body


def _number(form: FormData, key: str, kind: type[int] | type[float]) -> Any:
    value = form.get(key)
    try:
        number = kind(str(value))
    except ValueError:
        raise ValueError(f"{key} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{key} must be a finite number >= 0, not {value!r}")
    return number


def parse_fault(form: FormData, now: float) -> Fault:
    """Read a ``POST /_emulator/faults`` form; ``ValueError`` explains what is wrong."""
    mode = str(form.get("mode", "status"))
    if mode not in FAULT_MODES:
        raise ValueError(f"mode must be one of {list(FAULT_MODES)}, not {mode!r}")
    operation = str(form.get("operation", "participant-create"))
    if operation not in FAULT_OPERATIONS:
        raise ValueError(f"operation must be one of {list(FAULT_OPERATIONS)}, not {operation!r}")
    if "count" in form and "for_seconds" in form:
        raise ValueError("give count or for_seconds, not both")
    if "for_seconds" in form:
        window = _number(form, "for_seconds", float)
        fault = Fault(mode, until=now + window if window > 0 else None)
    else:
        fault = Fault(mode, count=_number(form, "count", int) if "count" in form else 1)
    if not fault.count and fault.until is None:
        return Fault()  # count=0 / for_seconds=0: nothing armed
    fault.operation = operation
    if operation == "callbacks" and mode != "reset":
        raise ValueError("operation=callbacks takes mode=reset (the app is unreachable)")
    if mode == "status":
        fault.status = _number(form, "status", int) if "status" in form else 503
        if fault.status not in FAULT_BODIES:
            raise ValueError(f"status must be one of {sorted(FAULT_BODIES)}")
    elif "status" in form:
        raise ValueError("status only applies to mode=status")
    if mode == "delay":
        if "seconds" not in form:
            raise ValueError("mode=delay needs seconds")
        fault.seconds = _number(form, "seconds", float)
    elif "seconds" in form:
        raise ValueError("seconds only applies to mode=delay")
    return fault


class FaultInjector:
    """The armed fault, how many requests got one, and how a faulted request is answered."""

    def __init__(self, reset_connection: Callable[[Any], bool] | None = None) -> None:
        # Resets the client connection behind an ASGI scope's "client" (see emulator.front).
        self.reset_connection = reset_connection
        self.fault = Fault()
        self.served = 0  # requests faulted since the last reset, of any operation

    def arm(self, form: FormData) -> None:
        """Replace the armed fault with the one ``form`` describes (``ValueError`` if bad)."""
        self.fault = parse_fault(form, time.monotonic())

    def refuse_callback(self) -> bool:
        """Whether the callback attempt about to be made gets the armed ``callbacks`` fault:
        it is then not sent, and counts as a connection Twilio could not make (``ct``), so
        Twilio's retries follow as the callback URL's overrides ask."""
        if not self.fault.take(time.monotonic(), "callbacks"):
            return False
        self.served += 1
        return True

    def state(self) -> dict[str, Any]:
        """What ``/_emulator/faults`` answers."""
        return self.fault.state(self.served, time.monotonic())

    def reset(self) -> None:
        """Disarm, and forget how many were served (``/_emulator/reset``)."""
        self.fault, self.served = Fault(), 0

    async def apply(
        self, operation: str, request: Request, work: Work, *, read_before_reset: bool = False
    ) -> Response:
        """``work(0)`` (the request's work and answer), or the fault armed for ``operation``.

        ``read_before_reset``: take the whole request body before a reset, for a handler
        that has not read it yet, so the client is waiting for its response when the RST
        comes (its read, not a send of the body, fails with ``ECONNRESET``).
        """
        fault = self.fault
        if not fault.take(time.monotonic(), operation):
            return await work(0.0)
        self.served += 1
        if fault.mode == "status":
            raise TwilioError(fault.status, *FAULT_BODIES[fault.status])
        if fault.mode == "reset":
            if read_before_reset:
                await request.body()
            if self.reset_connection is not None and self.reset_connection(
                request.scope.get("client")
            ):
                return Response(status_code=502)  # the connection is gone: nobody reads this
            return JSONResponse({"message": NO_FRONT_MESSAGE, "status": 502}, status_code=502)
        # mode=delay: do the work now (a participant exists at once), answer late.
        seconds = fault.seconds
        try:
            response = await work(seconds)
        except TwilioError as exc:
            response = exc.response()
        await asyncio.sleep(seconds)
        return response
