"""Twilio-shaped API errors.

Every REST failure Twilio returns has the same body: ``{code, message, more_info, status}``.
The official client reads ``code`` and ``message`` from it to build ``TwilioRestException``,
so callers branch on ``exc.code``; reproducing the body exactly is what makes error handling
code testable against the emulator. That holds for failures outside any handler too (a path
or method no route takes, a crash): ``http_error`` and ``server_error`` render those.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


def error_body(status: int, code: int, message: str) -> dict[str, object]:
    """Return Twilio's JSON error body for ``code``."""
    return {
        "code": code,
        "message": message,
        "more_info": MORE_INFO.format(code=code),
        "status": status,
    }


class TwilioError(Exception):
    """An API failure that handlers raise and the routing layer renders as Twilio would."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        """Render the error with Twilio's body and HTTP status."""
        headers = {}
        if self.status == 401:
            # Twilio challenges like any Basic-auth API; curl and browsers rely on it.
            headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return JSONResponse(
            error_body(self.status, self.code, self.message), self.status, headers=headers
        )


def unauthorized() -> TwilioError:
    """Credentials missing or wrong (Twilio error 20003)."""
    return TwilioError(401, 20003, "Authenticate")


def not_found(path: str) -> TwilioError:
    """Unknown resource (Twilio error 20404); Twilio quotes the requested path."""
    return TwilioError(404, 20404, f"The requested resource {path} was not found")


def bad_request(code: int, message: str) -> TwilioError:
    """A 400 with a specific Twilio error code (21211 invalid To, 21604 missing To, ...)."""
    return TwilioError(400, code, message)


def method_not_allowed() -> TwilioError:
    """Twilio's answer to a method a path does not take, and to a participant operation
    addressed by conference friendly name (405 / 20004)."""
    return TwilioError(405, 20004, "Method not allowed")


async def http_error(request: Request, exc: Exception) -> Response:
    """404/405 outside any handler; Twilio-shaped under the REST prefix."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/2010-04-01/"):
        if exc.status_code == 404:
            return not_found(request.url.path).response()
        if exc.status_code == 405:
            return method_not_allowed().response()
        return JSONResponse(
            error_body(exc.status_code, exc.status_code, str(exc.detail)), exc.status_code
        )
    return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code)


async def server_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure, answered as Twilio answers its own (500 / 20500)."""
    return JSONResponse(error_body(500, 20500, "Internal Server Error"), status_code=500)
