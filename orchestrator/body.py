"""Request bodies, read with a bound: shared by the API and the webhooks, so no
client can make a web process hold more than MAX_BODY of one request."""

from __future__ import annotations

from starlette.requests import Request

from orchestrator.errors import ApiError

MAX_BODY = 64 * 1024


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, refused with 413 past `limit` before it is all in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request bodies are limited to {limit} bytes")
