"""Twilio-shaped API errors.

Every REST failure Twilio returns has the same body: ``{code, message, more_info, status}``.
The official client reads ``code`` and ``message`` from it to build ``TwilioRestException``,
so callers branch on ``exc.code``; reproducing the body exactly is what makes error handling
code testable against the emulator.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

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
