"""The web process: the API and Twilio's webhooks in one Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio
import redis.exceptions
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from orchestrator import apikeys, dial_policy, jobs, metrics, queue_reads, redis_client
from orchestrator.api import console, metadata, operations, streams
from orchestrator.api.formats import FormatSuffixMiddleware
from orchestrator.api.hub import Hub
from orchestrator.api.responses import error_response
from orchestrator.errors import ApiError, unavailable
from orchestrator.redis_client import REDIS_ERRORS
from orchestrator.scripts import AsyncScripts
from orchestrator.settings import Settings
from webhooks import routes as webhook_routes

log = logging.getLogger("orchestrator.web")
# /ready answers within this, whatever Redis does; /metrics waits this long for the queues.
READY_SECONDS = 2.0
QUEUE_DEPTH_SECONDS = 1.0


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "NotFound", 405: "MethodNotAllowed"}
    # Starlette's headers kept: a 405 names the route's methods in `Allow` (RFC 9110).
    headers = dict(exc.headers or {})
    error = ApiError(
        exc.status_code, codes.get(exc.status_code, "Error"), str(exc.detail), headers=headers
    )
    return error_response(request, error)


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("Redis unavailable: %s", exc)
    return error_response(request, unavailable("State store unavailable; retry shortly"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, ApiError(500, "InternalServerError", "Internal error"))


async def health(request: Request) -> Response:
    """For load balancers and `orchestrator dev`: up, and Redis answers."""
    await request.app.state.redis.ping()
    return JSONResponse({"ok": True})


async def ready(request: Request) -> Response:
    """Ready to serve: Redis answers. 503 (a ResponseStatus) otherwise, within READY_SECONDS."""
    try:
        await asyncio.wait_for(request.app.state.redis.ping(), READY_SECONDS)
    except (*REDIS_ERRORS, TimeoutError) as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
        log.warning("not ready: Redis unavailable: %s", reason)
        return error_response(request, unavailable("State store unavailable; retry shortly"))
    return JSONResponse({"ok": True})


async def _or_none(read: Awaitable[Any]) -> Any:
    try:
        return await asyncio.wait_for(read, QUEUE_DEPTH_SECONDS)
    except (*REDIS_ERRORS, TimeoutError):
        return None


async def metrics_text(request: Request) -> Response:
    """Prometheus text format: this machine's web and worker processes (orchestrator.metrics),
    the job queues' depth and the ring queues' figures, read from Redis now in a few round
    trips (each left out if Redis is away)."""
    client = request.app.state.redis
    lengths, ring_queues = await asyncio.gather(
        _or_none(jobs.queue_lengths(client)),
        _or_none(queue_reads.run(client, queue_reads.snapshot())),
    )
    body = await run_in_threadpool(metrics.exposition, lengths, ring_queues)
    return Response(body, media_type=metrics.CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    settings = request.app.state.settings
    return JSONResponse(metadata.openapi(settings.public_base_url, settings.phone_region))


async def python_types(request: Request) -> Response:
    """Python DTOs for ServiceStack's Python client, as "Add ServiceStack Reference" makes them."""
    return PlainTextResponse(metadata.python_types(request.app.state.settings.public_base_url))


def redis_lifespan(
    settings: Settings,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """One Redis client (and its scripts) per web process, closed at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # What is alive at start (modules, the app, its tables) lives as long as the process.
        # Out of the collector's sight, it no longer makes each full collection a ~10 ms stop
        # of the event loop: that stop was most of every endpoint's p99 (bench/RESULTS.md).
        gc.freeze()
        client = redis_client.connect(settings.redis_url, socket_timeout=_socket_timeout(settings))
        scripts = AsyncScripts(
            client, settings.redis_min_replicas, settings.redis_wait_timeout_ms, settings.retention
        )
        jobs.configure_dial_template(settings.dial_retry_backoff, settings.dial_job_timeout)
        try:
            await jobs.install_control_template(client)
        except REDIS_ERRORS as exc:  # the scripts install it once Redis is back
            # The process starts anyway (as a worker waits): a platform that starts Redis
            # and the service together needs no start order.
            log.warning(
                "Redis at %s does not answer (%s); answering 503 with Retry-After until it does",
                redis_client.display_url(settings.redis_url),
                exc,
            )
        hub = Hub(settings.redis_url, client, settings.event_buffer)
        app.state.redis, app.state.scripts, app.state.hub = client, scripts, hub
        _end_streams_on_exit(hub)
        try:
            yield
        finally:
            await hub.aclose()
            await scripts.aclose()
            await client.aclose()
            metrics.process_exited()

    return lifespan


def _socket_timeout(settings: Settings) -> float:
    """How long the web's client waits for a Redis answer: a hung Redis is answered 503
    within it. A change that waits for replicas (Redis WAIT) is given its wait and a second."""
    if settings.redis_min_replicas:
        return max(redis_client.WEB_SOCKET_TIMEOUT, settings.redis_wait_timeout_ms / 1000 + 1)
    return redis_client.WEB_SOCKET_TIMEOUT


def _end_streams_on_exit(hub: Hub) -> None:
    """uvicorn waits for open responses before it stops, and a live event stream never
    ends by itself: on the signal that stops the server, end them all first."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals are the main thread's (a server run in a thread stops otherwise)
    loop = asyncio.get_running_loop()
    reason = "The server is stopping; reconnect with Last-Event-ID"
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            loop.call_soon_threadsafe(hub.end_all, reason)
            previous(signum, frame)

        signal.signal(sig, handler)


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app; `uvicorn --factory orchestrator.cli.app:create_app` reads the environment."""
    settings = settings or Settings.from_env()
    app = Starlette(
        routes=[  # Starlette tries them in order: the busiest first
            *webhook_routes.routes,
            *streams.routes,  # /sessions/events before /sessions/{sessionId}
            *operations.routes,
            *console.routes,
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics_text, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/types/python", python_types, methods=["GET"]),
        ],
        middleware=[Middleware(FormatSuffixMiddleware, prefixes=operations.API_PREFIXES)],
        lifespan=redis_lifespan(settings),
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            redis.exceptions.ConnectionError: _redis_down,
            redis.exceptions.TimeoutError: _redis_down,
            Exception: _unexpected,
        },
    )
    app.state.settings = settings
    app.state.validator = RequestValidator(settings.twilio_auth_token)
    app.state.keys = apikeys.KeyCache()
    app.state.dial_countries = dial_policy.CountryCache()
    return app
