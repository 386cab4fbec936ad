"""The ``/_emulator/softphones`` endpoints: a test or demo plays an agent's softphone.

A softphone registers with the Access Token the service gave it (checked as Twilio checks it:
``emulator.access_tokens``), says how it will answer the calls that ring it, and places calls
as ``device.connect({params})`` does: through the TwiML App its token names, whose voice URL
gets a signed request with Twilio's parameters and the custom ones, and whose TwiML the call
then follows (``Switchboard.client_call``). Like the other control endpoints they need no
auth and answer plain JSON; a refused token answers Twilio's error code with it. The README's
"Softphones" section is the contract.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import forms
from emulator.access_tokens import AccessTokenError, verify
from emulator.calls import IncomingCallError, Switchboard, call_progress_subscription
from emulator.configuration import Directory
from emulator.softphones import Answer, Softphone

#: Token refusals answered 403 (the token is genuine but grants too little); the rest 401.
FORBIDDEN_CODES = frozenset({20106})


def _refused(exc: AccessTokenError, status: int | None = None) -> JSONResponse:
    if status is None:
        status = 403 if exc.code in FORBIDDEN_CODES else 401
    return JSONResponse({"code": exc.code, "message": exc.message}, status_code=status)


def _message(message: str, status: int) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class SoftphonesApi:
    """Registration, listing and calls of the softphones of one account."""

    def __init__(self, account_sid: str, switchboard: Switchboard, directory: Directory) -> None:
        self.account_sid = account_sid
        self.switchboard = switchboard
        self.directory = directory

    def _secret(self, key_sid: str) -> str | None:
        key = self.directory.keys.get(key_sid)
        return key.secret if key is not None else None

    async def register(self, request: Request) -> Response:
        form = await request.form()
        token = forms.text(form, "AccessToken")
        if token is None:
            return _message("AccessToken is required", 400)
        answer_text = (forms.text(form, "Answer") or Answer.ANSWER.value).lower()
        try:
            answer = Answer(answer_text)
        except ValueError:
            modes = ", ".join(a.value for a in Answer)
            return _message(f"Answer must be one of {modes}, not {answer_text!r}", 400)
        try:
            grants = verify(token, self.account_sid, self._secret, time.time())
        except AccessTokenError as exc:
            return _refused(exc)
        softphone = Softphone(token, grants, answer)
        self.switchboard.softphones.register(softphone)
        return JSONResponse(softphone.as_json(), status_code=201)

    async def list_softphones(self, request: Request) -> Response:
        phones = self.switchboard.softphones.all()
        return JSONResponse({"softphones": [p.as_json() for p in phones]})

    async def unregister(self, request: Request) -> Response:
        identity = request.path_params["identity"]
        softphone = self.switchboard.softphones.unregister(identity)
        if softphone is None:
            return _message(f"no softphone registered as {identity!r}", 404)
        return JSONResponse(softphone.as_json())

    async def place_call(self, request: Request) -> Response:
        """``device.connect({params})``: every form field is a custom parameter; ``To`` is
        required (the number, user or address the agent dialled)."""
        identity = request.path_params["identity"]
        softphone = self.switchboard.softphones.get(identity)
        if softphone is None:
            return _message(f"no softphone registered as {identity!r}", 404)
        form = await request.form()
        to = forms.text(form, "To")
        if to is None:
            return _message("To is required", 400)
        try:
            # Twilio checks the token again on connect: expired, or its key deleted since.
            grants = verify(softphone.token, self.account_sid, self._secret, time.time())
        except AccessTokenError as exc:
            return _refused(exc, 403)
        application_sid = grants.application_sid
        if application_sid is None:
            return _message("the softphone's token grants no outgoing application_sid", 403)
        application = self.directory.applications.get(application_sid)
        if application is None:
            return JSONResponse(
                {
                    "code": 21218,
                    "message": f"Invalid ApplicationSid: {application_sid} is no "
                    "TwiML App of the account",
                },
                status_code=400,
            )
        voice_url = application.settings.get("voice_url")
        if not isinstance(voice_url, str) or not voice_url:
            return _message(f"TwiML App {application_sid} has no VoiceUrl", 400)
        method = application.settings.get("voice_method")
        callback = application.settings.get("status_callback")
        callback_method = application.settings.get("status_callback_method")
        custom = {key: str(value) for key, value in grants.outgoing_params.items()}
        custom.update({key: value for key, value in form.items() if isinstance(value, str)})
        try:
            call = await self.switchboard.client_call(
                identity,
                to,
                voice_url,
                method if isinstance(method, str) else "POST",
                application_sid,
                custom,
                call_progress_subscription(
                    callback if isinstance(callback, str) else None,
                    callback_method if isinstance(callback_method, str) else None,
                    [],
                ),
            )
        except IncomingCallError as exc:
            failed = exc.call
            body: dict[str, Any] = {"message": str(exc)}
            if failed is not None:
                body.update({"callSid": failed.sid, "status": failed.status})
            return JSONResponse(body, status_code=502)
        conference = call.conference
        return JSONResponse(
            {
                "callSid": call.sid,
                "status": call.status,
                "conferenceName": conference.friendly_name if conference is not None else None,
                "conferenceSid": conference.sid if conference is not None else None,
                "said": list(call.said),
            }
        )

    def routes(self) -> list[Route]:
        """The softphone endpoints' routes."""
        return [
            Route("/_emulator/softphones", self.register, methods=["POST"]),
            Route("/_emulator/softphones", self.list_softphones, methods=["GET"]),
            Route("/_emulator/softphones/{identity}", self.unregister, methods=["DELETE"]),
            Route("/_emulator/softphones/{identity}/calls", self.place_call, methods=["POST"]),
        ]
