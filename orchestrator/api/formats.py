"""Which wire format a client speaks and wants, decided as ServiceStack does.

Response format, first match wins: `?format=json|jsv`; the predefined route
prefix (`/json/reply/...`, `/jsv/reply/...`); a `.json`/`.jsv` suffix on the
route; the Accept header; JSON.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

JSON, JSV = "json", "jsv"

MEDIA_TYPES = {
    "application/json": JSON,
    "text/json": JSON,
    "text/jsv": JSV,
    "application/jsv": JSV,
}
SUFFIXES = {".json": JSON, ".jsv": JSV}
_SCOPE_KEY = "orchestrator.format"


class FormatSuffixMiddleware:
    """Strips a `.json`/`.jsv` suffix off API paths before routing and remembers it.

    Only API routes: Twilio's webhooks are signed over their exact path, and
    `/openapi.json` is a name, not a format.
    """

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            path: str = scope["path"]
            for suffix, fmt in SUFFIXES.items():
                if path.endswith(suffix) and len(path) > len(suffix) + 1:
                    scope = {**scope, "path": path[: -len(suffix)], _SCOPE_KEY: fmt}
                    if scope.get("raw_path"):
                        scope["raw_path"] = scope["raw_path"][: -len(suffix)]
                    break
        await self.app(scope, receive, send)


def from_accept(header: str) -> str | None:
    """The supported format the Accept header prefers, by q-value then order."""
    best, best_q = None, 0.0
    for part in header.split(","):
        media, *params = part.split(";")
        fmt = MEDIA_TYPES.get(media.strip().lower())
        if fmt is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = fmt, q
    return best


def response_format(request: Request) -> str:
    asked = request.query_params.get("format", "").strip().lower()
    if asked in (JSON, JSV):
        return asked
    path = request.scope["path"]
    if path.startswith("/jsv/reply/"):
        return JSV
    if path.startswith("/json/reply/"):
        return JSON
    suffix = request.scope.get(_SCOPE_KEY)
    if suffix:
        return suffix
    return from_accept(request.headers.get("accept", "")) or JSON


def request_format(media_type: str) -> str | None:
    """JSON or JSV for a body's Content-Type; None for anything else."""
    return MEDIA_TYPES.get(media_type)
