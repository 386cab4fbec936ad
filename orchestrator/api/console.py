"""The agent console (docs/events.md): one static page the web process serves at `/console`.

The page is plain HTML, CSS and JavaScript shipped in the package, so there is
nothing to build and nothing to fetch from anywhere else; it talks to this
same API with the key the agent pastes. Its files are read once per process
and answered from memory, with a Content-Security-Policy that lets the page
load and connect to this origin only: a page holding an API key must not be
able to send it, or anything it shows, anywhere else.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.errors import not_found

# What the page may load, each by its name under orchestrator/console/.
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
PAGE = "index.html"
PAGE_TYPE = "text/html; charset=utf-8"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    # Revalidated on every load (the ETag makes that a 304), so a new release shows at once.
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    """The file's bytes and its ETag, read from the package once per process."""
    body = resources.files("orchestrator").joinpath("console", name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _answer(request: Request, name: str, media_type: str) -> Response:
    body, etag = _asset(name)
    headers = {**HEADERS, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


async def page(request: Request) -> Response:
    return _answer(request, PAGE, PAGE_TYPE)


async def asset(request: Request) -> Response:
    name = request.path_params["asset"]
    media_type = ASSETS.get(name)
    if media_type is None:
        raise not_found(f"No console file '{name}'")
    return _answer(request, name, media_type)


routes = [
    Route("/console", page, methods=["GET"]),
    Route("/console/{asset}", asset, methods=["GET"]),
]
