"""The ``/_emulator`` endpoints: what a test or an operator asks of the emulator itself.

They are not Twilio's (no auth, plain ``{"message": ...}`` errors): they show what happened
(creates counted, each call with its requests and webhooks), play the other side of a call
(a callee hanging up, a customer calling in), and arm faults or forget everything. The
README's "Control endpoints" section is the contract.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from emulator import forms
from emulator.calls import Call, IncomingCallError, Switchboard
from emulator.configuration import Directory
from emulator.faults import FaultInjector


class ControlApi:
    """The control endpoints over one ``Switchboard`` and its fault injector."""

    def __init__(
        self, switchboard: Switchboard, faults: FaultInjector, directory: Directory | None = None
    ) -> None:
        self.switchboard = switchboard
        self.faults = faults
        self.directory = directory or Directory()

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def creates(self, request: Request) -> Response:
        return JSONResponse(
            {
                "total": self.switchboard.creates_total,
                "byLabel": dict(self.switchboard.creates_by_label),
                "times": list(self.switchboard.create_times),
                "attempts": self.switchboard.create_attempts,
            }
        )

    def _inspect(self, call: Call) -> dict[str, Any]:
        conference = call.conference
        return {
            "sid": call.sid,
            "to": call.to,
            "from": call.from_,
            "status": call.status,
            "direction": call.direction,
            "label": call.label,
            "conferenceName": conference.friendly_name if conference is not None else None,
            "conferenceSid": conference.sid if conference is not None else None,
            "settings": dict(call.settings),
            "said": list(call.said),
            "requests": list(call.requests),
            "callbacks": [d.as_json() for d in call.history if d.delivered],
            "failedCallbacks": [d.as_json() for d in call.history if not d.delivered],
            # The webhook being sent now, while Twilio's retries of it are still under way.
            "sending": [a.as_json() for a in self.switchboard.dispatcher.sending(call.sid)],
        }

    async def list_calls(self, request: Request) -> Response:
        return JSONResponse({"calls": [self._inspect(c) for c in self.switchboard.calls.values()]})

    async def inspect_call(self, request: Request) -> Response:
        call = self.switchboard.calls.get(request.path_params["call_sid"])
        if call is None:
            return JSONResponse({"message": "no such call"}, status_code=404)
        return JSONResponse(self._inspect(call))

    async def hangup(self, request: Request) -> Response:
        call = self.switchboard.calls.get(request.path_params["call_sid"])
        if call is None:
            return JSONResponse({"message": "no such call"}, status_code=404)
        self.switchboard.callee_hangs_up(call)
        return JSONResponse(self._inspect(call))

    async def incoming(self, request: Request) -> Response:
        form = await request.form()
        from_ = forms.text(form, "From")
        to = forms.text(form, "To")
        if from_ is None or to is None:
            return JSONResponse({"message": "From and To are required"}, status_code=400)
        # As Twilio routes a call to one of the account's numbers: its TwiML App's VoiceUrl,
        # else its own; a number the account does not have goes to --voice-url.
        voice_url = (
            forms.text(form, "VoiceUrl")
            or self.directory.voice_url_for(to)
            or self.switchboard.voice_url
        )
        if voice_url is None:
            return JSONResponse(
                {"message": "no voice URL: start with --voice-url or post VoiceUrl"},
                status_code=502,
            )
        try:
            call = await self.switchboard.incoming(from_, to, voice_url)
        except IncomingCallError as exc:
            return JSONResponse({"message": str(exc)}, status_code=502)
        conference = call.conference
        assert conference is not None
        accept = request.headers.get("accept", "")
        if "text/plain" in accept and "json" not in accept:
            return PlainTextResponse(conference.friendly_name)
        return JSONResponse(
            {
                "callSid": call.sid,
                "conferenceName": conference.friendly_name,
                "conferenceSid": conference.sid,
            }
        )

    async def set_faults(self, request: Request) -> Response:
        """Arm a fault for the next ``count`` requests of an operation (participant creates
        by default) or for ``for_seconds`` (README)."""
        form = await request.form()
        try:
            self.faults.arm(form)
        except ValueError as exc:
            return JSONResponse({"message": str(exc)}, 400)
        return JSONResponse(self.faults.state())

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(self.faults.state())

    async def reset(self, request: Request) -> Response:
        self.faults.reset()
        self.switchboard.reset()
        self.directory.reset()
        return JSONResponse({"ok": True})

    def routes(self) -> list[Route]:
        """The control endpoints' routes."""
        return [
            Route("/_emulator/health", self.health, methods=["GET"]),
            Route("/_emulator/creates", self.creates, methods=["GET"]),
            Route("/_emulator/calls", self.list_calls, methods=["GET"]),
            Route("/_emulator/calls/{call_sid}", self.inspect_call, methods=["GET"]),
            Route("/_emulator/calls/{call_sid}/hangup", self.hangup, methods=["POST"]),
            Route("/_emulator/incoming", self.incoming, methods=["POST"]),
            Route("/_emulator/reset", self.reset, methods=["POST"]),
            Route("/_emulator/faults", self.set_faults, methods=["POST"]),
            Route("/_emulator/faults", self.get_faults, methods=["GET"]),
        ]
