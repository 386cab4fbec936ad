"""Serialising DTOs and errors in the format the client negotiated."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from orchestrator import jsv
from orchestrator.api.formats import JSV, response_format
from orchestrator.errors import ApiError

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def render(fmt: str, body: Any) -> tuple[bytes, str]:
    """`body` is a plain value, or a view with to_json() and to_dict() (SessionView)."""
    if fmt == JSV:
        data = body.to_dict() if hasattr(body, "to_dict") else body
        return jsv.dumps(data).encode(), jsv.CONTENT_TYPE
    if hasattr(body, "to_json"):
        return body.to_json(), JSON_CONTENT_TYPE
    return (
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        JSON_CONTENT_TYPE,
    )


def dto_response(request: Request, body: Any, status: int = 200) -> Response:
    content, media_type = render(response_format(request), body)
    return Response(content, status_code=status, media_type=media_type)


def error_response(request: Request, error: ApiError) -> Response:
    content, media_type = render(response_format(request), error.to_wire())
    return Response(content, status_code=error.status, media_type=media_type, headers=error.headers)
