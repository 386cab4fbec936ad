"""Signed webhook delivery, ordered per call and concurrent across calls.

Twilio signs every webhook with ``X-Twilio-Signature`` (HMAC-SHA1 of the full URL plus the
sorted POST parameters, keyed by the auth token). The app under test validates it with
``twilio.request_validator.RequestValidator``, so the emulator signs with that very class:
a signature mismatch then means the app builds its URL wrongly, never that the two sides
disagree on the algorithm.

Ordering mirrors what an app may rely on from Twilio: callbacks about one call arrive one at a
time, in the order the events happened (each POST is awaited before the next), while different
calls progress independently. Each "lane" (normally a call sid) is a chain of asyncio tasks;
each task first waits for its predecessor. A conference-wide event can additionally wait for
the tails of other lanes (``after``), which is how ``conference-end`` is kept behind every
``participant-leave`` when a conference is torn down.

Delivery never raises: a dead or failing app must not take the emulator (or the other calls)
down. Retries follow Twilio's connection overrides (``emulator.overrides``): the URL's fragment
(``#rc=3&rp=5xx,ct``) says how often and on which failures to try again, every attempt carries
the same ``I-Twilio-Idempotency-Token``, and the fragment itself is never sent nor signed.
Without a fragment, Twilio's defaults hold: one retry, on a connection failure only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from emulator.overrides import OverrideError, Overrides, parse_url
from emulator.webhook_client import Answer, WebhookClient, WebhookError

logger = logging.getLogger(__name__)

#: Pause before the first retry; each later one waits twice as long as the one before.
RETRY_DELAY = 0.5
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"

ParamValue = str | Sequence[str]
Params = Mapping[str, ParamValue]


class _MultiParams(dict[str, list[str]]):
    """Params as the validator sees a multi-dict: ``getall`` yields every value of a key.

    ``RequestValidator.compute_signature`` asks the mapping for ``getall`` (Flask style) before
    falling back to ``params[key]``; exposing it is how repeated keys get signed with all of
    their values, as Twilio does.
    """

    def getall(self, key: str) -> list[str]:
        return self[key]


def _as_lists(params: Params) -> _MultiParams:
    multi = _MultiParams()
    for key, value in params.items():
        multi[key] = [value] if isinstance(value, str) else list(value)
    return multi


def sign(auth_token: str, url: str, params: Params) -> str:
    """Return the ``X-Twilio-Signature`` Twilio would send for a POST of ``params`` to ``url``.

    ``url`` must be the exact URL posted to, query string included (a fragment is dropped:
    Twilio signs what it requests). For a GET webhook pass the URL with the parameters already
    in its query string and ``params={}``.
    """
    url = url.partition("#")[0]
    return RequestValidator(auth_token).compute_signature(url, _as_lists(params))


def _pairs(params: Params) -> list[tuple[str, str]]:
    return [(key, value) for key, values in _as_lists(params).items() for value in values]


@dataclass(frozen=True)
class Attempt:
    """One HTTP request of a webhook: the status the app answered, or why none came."""

    status: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.status is not None:
            return {"status": self.status}
        return {"error": self.error}


@dataclass(frozen=True)
class Delivery:
    """One webhook as the app saw it (or failed to), after every attempt it was given.

    ``status``, ``error`` and ``body`` are the last attempt's; ``attempts`` lists them all.
    """

    url: str
    method: str
    params: dict[str, ParamValue]
    status: int | None = None
    error: str | None = None
    body: str = ""
    token: str = ""
    attempts: tuple[Attempt, ...] = ()

    @property
    def delivered(self) -> bool:
        """The app answered (with any HTTP status): the request reached it."""
        return self.status is not None

    def as_json(self) -> dict[str, Any]:
        """Inspection-endpoint view (``/_emulator/calls/{sid}``)."""
        data: dict[str, Any] = {"url": self.url, "method": self.method, "params": self.params}
        if self.status is not None:
            data["status"] = self.status
        if self.error is not None:
            data["error"] = self.error
        data["idempotencyToken"] = self.token
        data["attempts"] = [a.as_json() for a in self.attempts]
        return data


class CallbackDispatcher:
    """Sends signed webhooks from the server's event loop through one shared HTTP client
    (emulator.webhook_client: a webhook must cost the emulator little, or its webhooks would
    hold up the REST requests it serves on the same loop)."""

    def __init__(self, auth_token: str, retry_delay: float = RETRY_DELAY) -> None:
        self._auth_token = auth_token
        self._retry_delay = retry_delay
        self._client = WebhookClient()
        self._tails: dict[str, asyncio.Task[Delivery | None]] = {}
        self._tasks: set[asyncio.Task[Delivery | None]] = set()
        self._sending: dict[str, list[Attempt]] = {}
        #: Asked before each attempt: True makes it fail unsent, as a connection Twilio could
        #: not make (the ``callbacks`` fault, ``FaultInjector.refuse_callback``).
        self.refuse: Callable[[], bool] = lambda: False

    async def send(
        self,
        url: str,
        params: Params,
        method: str = "POST",
        attempts: list[Attempt] | None = None,
    ) -> Delivery:
        """Deliver one signed webhook now, retried as its URL's overrides ask; never raises.

        ``attempts``, if given, receives each attempt as it ends (to watch a webhook that is
        still being retried)."""
        method = "GET" if method.upper() == "GET" else "POST"
        snapshot = {k: (v if isinstance(v, str) else list(v)) for k, v in params.items()}
        token = str(uuid.uuid4())
        try:
            base, overrides = parse_url(url)
        except OverrideError as exc:
            # Twilio fails the request without sending it (error 11243 for a bad policy).
            logger.warning("callback %s %s not sent: %s", method, url, exc)
            return Delivery(url, method, snapshot, error=str(exc), token=token)
        if method == "GET":
            target = _with_query(base, params)
            signature = sign(self._auth_token, target, {})
            body: bytes | None = None
        else:
            target = base
            signature = sign(self._auth_token, base, params)
            body = urlencode(_pairs(params)).encode()
        headers = {
            "X-Twilio-Signature": signature,
            IDEMPOTENCY_HEADER: token,
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
        }
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        deadline = time.monotonic() + overrides.total
        attempts = [] if attempts is None else attempts
        response: Answer | None = None
        delay = self._retry_delay
        while True:
            response, failure, attempt = await self._attempt(
                method, target, headers, body, overrides, deadline
            )
            attempts.append(attempt)
            retries_left = len(attempts) <= overrides.retries
            if failure is None or not retries_left or failure not in overrides.policy:
                break
            if time.monotonic() + delay >= deadline:
                break  # the total time (tt) would run out before the retry could start
            await asyncio.sleep(delay)
            delay *= 2
        last = attempts[-1]
        if last.status is None:
            logger.warning("callback %s %s dropped: %s", method, target, last.error)
        elif last.status >= 400:
            logger.warning("callback %s %s answered HTTP %s", method, target, last.status)
        body = response.text if response is not None else ""
        return Delivery(
            target, method, snapshot, last.status, last.error, body, token, tuple(attempts)
        )

    async def _attempt(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
        overrides: Overrides,
        deadline: float,
    ) -> tuple[Answer | None, str | None, Attempt]:
        """One request: (response, failure class for the retry policy or None, attempt)."""
        if self.refuse():
            return None, "ct", Attempt(error="ConnectError: refused (emulator callbacks fault)")
        left = max(0.001, deadline - time.monotonic())
        try:
            response = await self._client.request(
                method,
                target,
                headers,
                body,
                connect_timeout=min(overrides.connect_timeout, left),
                read_timeout=min(overrides.read_timeout, left),
            )
        except WebhookError as exc:  # ct: no connection; rt: connected, no answer in time
            return None, exc.kind, Attempt(error=str(exc))
        except Exception as exc:
            return None, "other", Attempt(error=f"{type(exc).__name__}: {exc!r}")
        status = response.status
        failure = "5xx" if status >= 500 else "4xx" if status >= 400 else None
        return response, failure, Attempt(status=status)

    def enqueue(
        self,
        lane: str,
        url: str,
        params: Params,
        method: str = "POST",
        on_done: Callable[[Delivery], None] | None = None,
        after: Iterable[asyncio.Future[Any]] = (),
    ) -> asyncio.Task[Delivery | None]:
        """Queue a webhook behind everything already queued on ``lane``.

        ``after`` names extra tasks (other lanes' tails) that must finish first. ``on_done``
        receives the result in delivery order, which is how a call's history is recorded.
        Must be called from the event loop thread.
        """
        previous = self._tails.get(lane)
        waits = [t for t in (previous, *after) if t is not None and not t.done()]
        task = asyncio.get_running_loop().create_task(
            self._run(lane, waits, url, dict(params), method, on_done)
        )
        self._tails[lane] = task
        self._tasks.add(task)
        task.add_done_callback(self._forget(lane))
        return task

    def _forget(self, lane: str) -> Callable[[asyncio.Task[Delivery | None]], None]:
        def done(task: asyncio.Task[Delivery | None]) -> None:
            self._tasks.discard(task)
            if self._tails.get(lane) is task:
                del self._tails[lane]

        return done

    async def _run(
        self,
        lane: str,
        waits: list[asyncio.Future[Any]],
        url: str,
        params: dict[str, ParamValue],
        method: str,
        on_done: Callable[[Delivery], None] | None,
    ) -> Delivery | None:
        if waits:
            # asyncio.wait, not gather: a cancelled predecessor must not cancel this one.
            await asyncio.wait(waits)
        attempts: list[Attempt] = []
        self._sending[lane] = attempts  # one webhook of a lane is sent at a time
        try:
            delivery = await self.send(url, params, method, attempts)
        finally:
            if self._sending.get(lane) is attempts:
                del self._sending[lane]
        if on_done is not None:
            try:
                on_done(delivery)
            except Exception:
                logger.exception("recording callback result failed")
        return delivery

    def sending(self, lane: str) -> list[Attempt]:
        """The attempts so far of the webhook ``lane`` is sending now (empty if none)."""
        return list(self._sending.get(lane, ()))

    def tail(self, lane: str) -> asyncio.Task[Delivery | None] | None:
        """The last pending webhook on ``lane``, if any (to order other lanes behind it)."""
        return self._tails.get(lane)

    def cancel_all(self) -> None:
        """Drop every queued webhook (used by ``/_emulator/reset``)."""
        for task in list(self._tasks):
            task.cancel()
        self._tails.clear()

    async def aclose(self) -> None:
        """Cancel pending deliveries and close the HTTP client (server shutdown)."""
        tasks = list(self._tasks)
        self.cancel_all()
        if tasks:
            await asyncio.wait(tasks)
        await self._client.aclose()


def _with_query(url: str, params: Params) -> str:
    if not params:
        return url
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode(_pairs(params))
