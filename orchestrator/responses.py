"""Serialising DTOs and errors for the client.

One place decides the wire format, so the JSV work (issue 3) plugs in here.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.errors import ApiError

JSON = "application/json; charset=utf-8"


def _dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def dto_response(request: Request, body: Any, status: int = 200) -> Response:
    return Response(_dumps(body), status_code=status, media_type=JSON)


def error_response(request: Request, error: ApiError) -> Response:
    return Response(
        _dumps(error.to_wire()), status_code=error.status, media_type=JSON, headers=error.headers
    )
