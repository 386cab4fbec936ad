"""The live event streams (docs/events.md): W3C server-sent events, with the API's auth.

`GET /sessions/events` streams every session of the key's account;
`GET /sessions/{sessionId}/events` one session. A client that sends
`Last-Event-ID` first receives every kept event after it (or `Reset`, if some
are no longer kept), then the live ones; every event id it sees is newer than
the one before, so it resumes from its last id without gaps or repeats.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from orchestrator import apikeys, events, keys
from orchestrator.api.authn import authenticate
from orchestrator.api.hub import Hub, Subscription
from orchestrator.errors import ApiError, not_found
from orchestrator.redis_client import REDIS_ERRORS

OPENING = b"retry: 2000\n: connected\n\n"
KEEPALIVE = b": keep-alive\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStreamResponse(StreamingResponse):
    """Ends the subscription however the response ends, even if it never started."""

    def __init__(self, content: AsyncIterator[bytes], hub: Hub, sub: Subscription) -> None:
        super().__init__(content, media_type="text/event-stream", headers=HEADERS)
        self.hub, self.sub = hub, sub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.unsubscribe(self.sub)


async def account_events(request: Request) -> EventStreamResponse:
    principal = await authenticate(request)
    return await _open(request, principal, None)


async def session_events(request: Request) -> EventStreamResponse:
    principal = await authenticate(request)
    sid = request.path_params["sessionId"]
    owner = await request.app.state.redis.hget(keys.session(sid), "accountId")
    if owner is None or owner.decode() != principal.account_id:
        raise not_found(f"Session '{sid}' does not exist")
    return await _open(request, principal, sid)


async def _open(
    request: Request, principal: apikeys.Principal, sid: str | None
) -> EventStreamResponse:
    last = request.headers.get("last-event-id", "").strip() or None
    if last is not None and events.parse_id(last) is None:
        raise ApiError(
            400,
            "ArgumentException",
            "Last-Event-ID must be an event id this stream sent, e.g. 1733112345678-0",
        )
    hub: Hub = request.app.state.hub
    # Subscribed before answering: a Redis failure is a 503 now, not a broken stream later.
    sub = await hub.subscribe(principal.account_id, sid)
    body = _frames(request, hub, sub, last)
    return EventStreamResponse(body, hub, sub)


async def _frames(
    request: Request, hub: Hub, sub: Subscription, last: str | None
) -> AsyncIterator[bytes]:
    settings = request.app.state.settings
    client = request.app.state.redis
    yield OPENING
    newest = events.parse_id(last) if last else None
    if last is not None and newest is not None:
        if await events.lost_since(client, sub.account_id, last):
            yield events.message(
                "Reset",
                "Some events after Last-Event-ID are no longer kept; read the sessions again",
            )
        async for event in hub.renderer.since(sub.account_id, last, sub.session_id):
            newest = event.order
            yield event.frame
    heartbeat = settings.event_heartbeat_seconds
    while True:
        # Whatever is queued goes out in the same write: a busy stream costs one wake-up
        # and one send per batch, not per event.
        items = await sub.take(heartbeat)
        if not items:
            yield KEEPALIVE
            if not await _still_allowed(request):
                yield events.message("Dropped", "The API key is no longer valid")
                return
            continue
        out: list[bytes] = []
        for item in items:
            if isinstance(item, bytes):  # Dropped: the subscription has ended
                yield b"".join([*out, item])
                return
            if newest is None or item.order > newest:  # else sent already, from the kept ones
                newest = item.order
                out.append(item.frame)
        if out:
            yield out[0] if len(out) == 1 else b"".join(out)


async def _still_allowed(request: Request) -> bool:
    """A key revoked while its stream is open ends the stream at the next keep-alive."""
    try:
        await authenticate(request)
    except ApiError:
        return False
    except REDIS_ERRORS:
        return True  # Redis is away: the stream waits for it, as the reader does
    return True


routes = [
    Route("/sessions/events", account_events, methods=["GET"]),
    Route("/sessions/{sessionId}/events", session_events, methods=["GET"]),
]
