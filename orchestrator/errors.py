"""ServiceStack error bodies: every failure a client sees is a ResponseStatus.

Handlers raise ApiError; the app turns it (and anything unexpected) into
`{"responseStatus": {...}}` with the right status code and never a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field_name: str
    error_code: str
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {"errorCode": self.error_code, "fieldName": self.field_name, "message": self.message}


@dataclass
class ApiError(Exception):
    status: int
    error_code: str
    message: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "responseStatus": {
                "errorCode": self.error_code,
                "message": self.message,
                "errors": [e.to_wire() for e in self.errors],
            }
        }


def validation(errors: list[FieldError]) -> ApiError:
    """400 with one entry per bad field; the first names the error, as ServiceStack does."""
    first = errors[0]
    return ApiError(400, first.error_code, first.message, errors)


def unauthorized(message: str = "Not Authenticated") -> ApiError:
    return ApiError(
        401, "Unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="api"'}
    )


def forbidden(message: str = "Invalid Role") -> ApiError:
    return ApiError(403, "Forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "Conflict", message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message, headers={"Retry-After": "1"})
