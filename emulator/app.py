"""HTTP routes: the Twilio REST subset the orchestrator uses, plus ``/_emulator`` controls.

REST handlers do what api.twilio.com does synchronously (authenticate, validate, create or
look up, render JSON) and leave everything that unfolds over time to ``Switchboard``. A new
participant's call only starts playing once its 201 has been sent, so the app always knows
the call sid before the first webhook about it can arrive.

Path parameters are checked as Twilio's OpenAPI description declares them: every participant
operation but create needs the conference's ``CF`` sid (a friendly name there is refused with
405 / 20004, Twilio's answer), and conferences and calls are looked up by sid only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from emulator import numbers
from emulator.calls import (
    Call,
    CoachingError,
    Conference,
    IncomingCallError,
    ParticipantUpdate,
    Switchboard,
    call_progress_subscription,
    conference_subscription,
)
from emulator.errors import TwilioError, bad_request, error_body, not_found, unauthorized
from emulator.resources import (
    account_uri,
    call_json,
    conference_json,
    page_json,
    participant_json,
)

API_PREFIX = "/2010-04-01/Accounts/{account_sid}"

#: Start a new participant's call even if the response never finished sending.
PLAYBACK_FALLBACK_SECONDS = 1.0

#: Sid patterns of Twilio's description (``^CF[0-9a-fA-F]{32}$``, ...).
CONFERENCE_SID = re.compile(r"CF[0-9a-fA-F]{32}")
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")

#: Form parameters whose value must be a sid of one kind, with that kind's prefix.
SID_PARAMETERS = {"CallSidToCoach": "CA", "Byoc": "BY"}

#: Participant parameters stored as given (no audio here) and shown by ``/_emulator/calls``.
STORED_CREATE_PARAMETERS = ("WaitUrl", "WaitMethod", "Beep", "Timeout", "EarlyMedia")
STORED_UPDATE_PARAMETERS = (
    "HoldUrl",
    "HoldMethod",
    "AnnounceUrl",
    "AnnounceMethod",
    "WaitUrl",
    "WaitMethod",
    "BeepOnExit",
)

#: List filters of the Participants list, in the order Twilio's page URIs repeat them.
PARTICIPANT_FILTERS = (("Muted", "muted"), ("Hold", "hold"), ("Coaching", "coaching"))

#: The ``Status`` values an update may set (Twilio's update-status enums).
CALL_UPDATE_STATUSES = ("canceled", "completed")
CONFERENCE_UPDATE_STATUSES = ("completed",)

#: Twilio's error code for a parameter value outside what its description allows.
INVALID_PARAMETER = 20001

Handler = Callable[["TwilioApi", Request], Awaitable[Response]]


def _flag(form: ImmutableMultiDict, key: str, default: bool) -> bool:
    # Twilio reads "true" (any case) as true and every other value as false.
    value = form.get(key)
    if value is None or not isinstance(value, str):
        return default
    return value.strip().lower() == "true"


def _optional_flag(form: ImmutableMultiDict, key: str) -> bool | None:
    value = form.get(key)
    if value is None or not isinstance(value, str):
        return None
    return value.strip().lower() == "true"


def _text(form: FormData, key: str) -> str | None:
    value = form.get(key)
    if value is None or not isinstance(value, str) or value == "":
        return None
    return value


def _texts(form: FormData, key: str) -> list[str]:
    return [v for v in form.getlist(key) if isinstance(v, str)]


def _stored(form: FormData, keys: tuple[str, ...]) -> dict[str, str]:
    return {key: value for key in keys if (value := _text(form, key)) is not None}


def check_parameters(form: FormData) -> None:
    """Refuse values Twilio's description rules out, for every operation alike.

    Each ``...Method`` parameter is ``GET`` or ``POST`` (any case), and a sid parameter
    (``CallSidToCoach``, ``Byoc``) has its kind's prefix and 32 hex digits. Unknown
    parameters are ignored, as Twilio ignores them.
    """
    for key, value in form.multi_items():
        if not isinstance(value, str):
            continue
        if key.endswith("Method") and value.upper() not in ("GET", "POST"):
            raise bad_request(INVALID_PARAMETER, f"{key} must be GET or POST, not {value!r}")
        prefix = SID_PARAMETERS.get(key)
        if prefix is not None and not re.fullmatch(prefix + "[0-9a-fA-F]{32}", value):
            raise bad_request(INVALID_PARAMETER, f"{key} {value!r} is not a valid {prefix} sid")


def _status(form: FormData, allowed: tuple[str, ...]) -> str | None:
    """An update's ``Status``, which must be one of ``allowed`` when given."""
    status = _text(form, "Status")
    if status is not None and status not in allowed:
        raise bad_request(
            INVALID_PARAMETER,
            f"Invalid Status {status!r}: must be one of {', '.join(allowed)}",
        )
    return status


def method_not_allowed() -> TwilioError:
    """Twilio's answer to a participant operation addressed by conference friendly name."""
    return TwilioError(405, 20004, "Method not allowed")


def _twilio(handler: Handler) -> Callable[[TwilioApi, Request], Awaitable[Response]]:
    """Authenticate like Twilio, then render any ``TwilioError`` as Twilio's error body."""

    @functools.wraps(handler)
    async def endpoint(self: TwilioApi, request: Request) -> Response:
        request.state.received = time.time()  # for the call's record (``Call.requests``)
        try:
            self.authorize(request)
            return await handler(self, request)
        except TwilioError as exc:
            return exc.response()

    return endpoint


# Twilio's bodies for the failures a client must retry.
FAULT_BODIES = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}
FAULT_MODES = ("status", "delay", "reset")
#: The REST operations a fault can be armed for (form field ``operation``).
FAULT_OPERATIONS = (
    "participant-create",
    "participant-update",
    "participant-delete",
    "calls-update",
    "conference-update",
)

#: The 502 body ``mode=reset`` falls back to when no TCP front can reset the connection.
NO_FRONT_MESSAGE = (
    "emulator fault mode=reset: this server has no TCP front to reset the connection "
    "(run `python -m emulator` without --no-front), so it answers 502 instead"
)


@dataclass
class Fault:
    """What happens to requests of ``operation`` (participant creates unless armed for
    another), for the next ``count`` or until ``until``.

    ``until`` is a ``time.monotonic()`` deadline; when set, ``count`` is unused.
    """

    mode: str = "status"
    operation: str = "participant-create"
    status: int = 503  # mode=status: the HTTP status to answer
    seconds: float = 0.0  # mode=delay: how long to hold the response
    count: int = 0
    until: float | None = None

    def take(self, now: float, operation: str = "participant-create") -> bool:
        """Whether this request gets the fault (and use up one of ``count``)."""
        if operation != self.operation:
            return False
        if self.until is not None:
            return now < self.until
        if self.count > 0:
            self.count -= 1
            return True
        return False

    def state(self, served: int, now: float) -> dict[str, Any]:
        """``{remaining, served}``, plus ``mode`` unless it is ``status`` (the original shape).

        Delay faults add ``seconds``; time windows add ``secondsLeft`` and report
        ``remaining`` as null while the window is open (0 once it has closed).
        """
        body: dict[str, Any] = {"remaining": self.count, "served": served}
        if self.operation != "participant-create":
            body["operation"] = self.operation
        if self.mode != "status":
            body["mode"] = self.mode
        if self.mode == "delay":
            body["seconds"] = self.seconds
        if self.until is not None:
            left = max(0.0, self.until - now)
            body["remaining"] = None if left > 0 else 0
            body["secondsLeft"] = round(left, 3)
        return body


def _number(form: FormData, key: str, kind: type[int] | type[float]) -> Any:
    value = form.get(key)
    try:
        number = kind(str(value))
    except ValueError:
        raise ValueError(f"{key} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{key} must be a finite number >= 0, not {value!r}")
    return number


def parse_fault(form: FormData, now: float) -> Fault:
    """Read a ``POST /_emulator/faults`` form; ``ValueError`` explains what is wrong."""
    mode = str(form.get("mode", "status"))
    if mode not in FAULT_MODES:
        raise ValueError(f"mode must be one of {list(FAULT_MODES)}, not {mode!r}")
    operation = str(form.get("operation", "participant-create"))
    if operation not in FAULT_OPERATIONS:
        raise ValueError(f"operation must be one of {list(FAULT_OPERATIONS)}, not {operation!r}")
    if "count" in form and "for_seconds" in form:
        raise ValueError("give count or for_seconds, not both")
    if "for_seconds" in form:
        window = _number(form, "for_seconds", float)
        fault = Fault(mode, until=now + window if window > 0 else None)
    else:
        fault = Fault(mode, count=_number(form, "count", int) if "count" in form else 1)
    if not fault.count and fault.until is None:
        return Fault()  # count=0 / for_seconds=0: nothing armed
    fault.operation = operation
    if mode == "status":
        fault.status = _number(form, "status", int) if "status" in form else 503
        if fault.status not in FAULT_BODIES:
            raise ValueError(f"status must be one of {sorted(FAULT_BODIES)}")
    elif "status" in form:
        raise ValueError("status only applies to mode=status")
    if mode == "delay":
        if "seconds" not in form:
            raise ValueError("mode=delay needs seconds")
        fault.seconds = _number(form, "seconds", float)
    elif "seconds" in form:
        raise ValueError("seconds only applies to mode=delay")
    return fault


class TwilioApi:
    """Route handlers bound to one account and one ``Switchboard``."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        switchboard: Switchboard,
        reset_connection: Callable[[Any], bool] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.switchboard = switchboard
        # Resets the client connection behind an ASGI scope's "client" (see emulator.front).
        self.reset_connection = reset_connection
        # Injected fault for participant creates, and how many creates got one.
        self.fault = Fault()
        self.faults_served = 0
        # Participant creates that passed auth, faulted or not.
        self.create_attempts = 0

    # ------------------------------------------------------------------ plumbing

    def authorize(self, request: Request) -> None:
        """Basic auth must be ``AccountSid:AuthToken``; the path's account must be that one."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise unauthorized()
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized() from None
        ok_user = hmac.compare_digest(username.encode(), self.account_sid.encode())
        ok_pass = hmac.compare_digest(password.encode(), self.auth_token.encode())
        if not (ok_user and ok_pass):
            raise unauthorized()
        if request.path_params.get("account_sid") != self.account_sid:
            raise not_found(request.url.path)

    def _conference(self, request: Request) -> Conference:
        """Conferences fetch/update: ``{Sid}`` is a ``CF`` sid; anything else is 404."""
        sid = request.path_params["conference"]
        conference = None
        if CONFERENCE_SID.fullmatch(sid):
            conference = self.switchboard.conference_by_sid(sid)
        if conference is None:
            raise not_found(request.url.path)
        return conference

    def _participants_conference(self, request: Request) -> Conference:
        """Participant list/fetch/update/delete: ``{ConferenceSid}`` must be a ``CF`` sid.

        Twilio refuses a friendly name there with 405 / 20004; only create takes one.
        """
        sid = request.path_params["conference"]
        if not CONFERENCE_SID.fullmatch(sid):
            raise method_not_allowed()
        conference = self.switchboard.conference_by_sid(sid)
        if conference is None:
            raise not_found(request.url.path)
        return conference

    def _participant(self, request: Request) -> Call:
        """A current participant by call sid or label; an ended one is 404, as on Twilio."""
        conference = self._participants_conference(request)
        call = self.switchboard.find_participant(conference, request.path_params["participant"])
        if call is None:
            raise not_found(request.url.path)
        return call

    def _call(self, request: Request) -> Call:
        sid = request.path_params["call_sid"]
        call = self.switchboard.calls.get(sid) if CALL_SID.fullmatch(sid) else None
        if call is None:
            raise not_found(request.url.path)
        return call

    @staticmethod
    def _record(call: Call, operation: str, request: Request, form: FormData | None) -> None:
        """Note a REST request about ``call`` (shown by ``GET /_emulator/calls/{sid}``)."""
        params: dict[str, str | list[str]] = {}
        for key in dict.fromkeys(form.keys()) if form is not None else ():
            values = _texts(form, key)
            params[key] = values[0] if len(values) == 1 else values  # repeated: a list
        entry = {"operation": operation, "time": request.state.received, "params": params}
        call.requests.append(entry)

    @staticmethod
    def _paging(request: Request) -> tuple[int, int]:
        """``Page`` (>= 0) and ``PageSize`` (1 to 1000), as Twilio's description bounds them."""
        try:
            page_size = int(request.query_params.get("PageSize", "50"))
            page = int(request.query_params.get("Page", "0"))
        except ValueError:
            raise bad_request(INVALID_PARAMETER, "Invalid paging parameters") from None
        if not 1 <= page_size <= 1000 or page < 0:
            raise bad_request(
                INVALID_PARAMETER, "Page must be >= 0 and PageSize between 1 and 1000"
            )
        return page, page_size

    async def _faulty(
        self, operation: str, request: Request, act: Callable[[], Awaitable[Response]]
    ) -> Response:
        """``act()`` (the request's work and answer), or the fault armed for ``operation``.

        Requests other than creates get it once they have been read and have found what
        they name (an unknown sid stays a 404), so the call's ``requests`` list them.
        """
        fault = self.fault
        if not fault.take(time.monotonic(), operation):
            return await act()
        self.faults_served += 1
        if fault.mode == "status":
            raise TwilioError(fault.status, *FAULT_BODIES[fault.status])
        if fault.mode == "reset":
            if self.reset_connection is not None and self.reset_connection(
                request.scope.get("client")
            ):
                return Response(status_code=502)  # the connection is gone: nobody reads this
            return JSONResponse({"message": NO_FRONT_MESSAGE, "status": 502}, status_code=502)
        try:  # mode=delay: done now, answered late
            response = await act()
        except TwilioError as exc:
            response = exc.response()
        await asyncio.sleep(fault.seconds)
        return response

    # ------------------------------------------------------------------ participants

    @_twilio
    async def create_participant(self, request: Request) -> Response:
        self.create_attempts += 1
        fault = self.fault
        if not fault.take(time.monotonic(), "participant-create"):
            return await self._create_participant(request)
        self.faults_served += 1
        if fault.mode == "status":
            raise TwilioError(fault.status, *FAULT_BODIES[fault.status])
        if fault.mode == "reset":
            # Take the whole request first, so the client is waiting for its response when
            # the RST comes (and its read, not a send of the body, fails with ECONNRESET).
            await request.body()
            if self.reset_connection is not None and self.reset_connection(
                request.scope.get("client")
            ):
                return Response(status_code=502)  # the connection is gone: nobody reads this
            return JSONResponse({"message": NO_FRONT_MESSAGE, "status": 502}, status_code=502)
        # mode=delay: do the work now (the participant exists at once), answer late.
        seconds = fault.seconds
        try:
            response = await self._create_participant(request, playback_after=seconds)
        except TwilioError as exc:
            response = exc.response()
        await asyncio.sleep(seconds)
        return response

    def _conference_for_create(self, request: Request) -> Conference | str:
        """Create takes a live conference's ``CF`` sid or a friendly name (joined or started).

        A ``CF`` sid must name a conference of this account that has not ended: Twilio looks
        it up, it cannot start a conference with a sid of the caller's choosing.
        """
        ref = request.path_params["conference"]
        if not CONFERENCE_SID.fullmatch(ref):
            return ref
        conference = self.switchboard.conference_by_sid(ref)
        if conference is None or not conference.live:
            raise not_found(request.url.path)
        return conference

    async def _create_participant(self, request: Request, playback_after: float = 0.0) -> Response:
        conference = self._conference_for_create(request)
        form = await request.form()
        to = _text(form, "To")
        from_ = _text(form, "From")
        if to is None:
            raise bad_request(21604, "'To' is required")
        if from_ is None:
            raise bad_request(21603, "'From' is required")
        if not numbers.valid_to(to):
            raise bad_request(21211, f"The 'To' number {to} is not a valid phone number.")
        if not numbers.valid_from(from_):
            raise bad_request(
                21212,
                f"The 'From' number {from_} is not a valid phone number, shortcode, "
                "or alphanumeric sender ID.",
            )
        check_parameters(form)
        try:
            call = self._dial(form, conference, to, from_)
        except CoachingError as exc:
            raise bad_request(INVALID_PARAMETER, str(exc)) from None
        self._record(call, "CreateParticipant", request, form)
        # Normally the call starts right after the 201 is sent; the timer is a fallback for a
        # client that vanished mid-response (Twilio would still place the call).
        asyncio.get_running_loop().call_later(
            playback_after + PLAYBACK_FALLBACK_SECONDS, self.switchboard.start_playback, call
        )
        return JSONResponse(
            participant_json(self.account_sid, call, created=True),
            status_code=201,
            background=BackgroundTask(self._start_playback, call),
        )

    def _dial(self, form: FormData, conference: Conference | str, to: str, from_: str) -> Call:
        return self.switchboard.dial(
            conference,
            to=to,
            from_=from_,
            label=_text(form, "Label"),
            status_callback=call_progress_subscription(
                _text(form, "StatusCallback"),
                _text(form, "StatusCallbackMethod"),
                _texts(form, "StatusCallbackEvent"),
            ),
            conference_callback=conference_subscription(
                _text(form, "ConferenceStatusCallback"),
                _text(form, "ConferenceStatusCallbackMethod"),
                _texts(form, "ConferenceStatusCallbackEvent"),
            ),
            muted=_flag(form, "Muted", False),
            start_conference_on_enter=_flag(form, "StartConferenceOnEnter", True),
            end_conference_on_exit=_flag(form, "EndConferenceOnExit", False),
            coaching=_optional_flag(form, "Coaching"),
            call_sid_to_coach=_text(form, "CallSidToCoach"),
            settings=_stored(form, STORED_CREATE_PARAMETERS),
        )

    async def _start_playback(self, call: Call) -> None:
        self.switchboard.start_playback(call)

    @_twilio
    async def list_participants(self, request: Request) -> Response:
        """Current participants, filtered by ``Muted``/``Hold``/``Coaching`` when given."""
        conference = self._participants_conference(request)
        page, page_size = self._paging(request)
        wanted = [
            (key, attribute, value)
            for key, attribute in PARTICIPANT_FILTERS
            if (value := _optional_flag(request.query_params, key)) is not None
        ]
        records = [
            participant_json(self.account_sid, call)
            for call in conference.participants()
            if all(getattr(call, attribute) == value for _, attribute, value in wanted)
        ]
        uri = f"{account_uri(self.account_sid)}/Conferences/{conference.sid}/Participants.json"
        body = page_json(
            "participants",
            records,
            uri,
            page,
            page_size,
            filters=[(key, "true" if value else "false") for key, _, value in wanted],
            page_token=request.query_params.get("PageToken"),
            sid_key="call_sid",
        )
        return JSONResponse(body)

    @_twilio
    async def fetch_participant(self, request: Request) -> Response:
        call = self._participant(request)
        self._record(call, "FetchParticipant", request, None)
        return JSONResponse(participant_json(self.account_sid, call))

    @_twilio
    async def update_participant(self, request: Request) -> Response:
        call = self._participant(request)
        form = await request.form()
        self._record(call, "UpdateParticipant", request, form)

        async def update_it() -> Response:
            check_parameters(form)
            update = ParticipantUpdate(
                muted=_optional_flag(form, "Muted"),
                hold=_optional_flag(form, "Hold"),
                end_conference_on_exit=_optional_flag(form, "EndConferenceOnExit"),
                coaching=_optional_flag(form, "Coaching"),
                call_sid_to_coach=_text(form, "CallSidToCoach"),
                settings=_stored(form, STORED_UPDATE_PARAMETERS),
            )
            try:
                self.switchboard.update_participant(call, update)
            except CoachingError as exc:
                raise bad_request(INVALID_PARAMETER, str(exc)) from None
            return JSONResponse(participant_json(self.account_sid, call))

        return await self._faulty("participant-update", request, update_it)

    @_twilio
    async def delete_participant(self, request: Request) -> Response:
        call = self._participant(request)
        self._record(call, "DeleteParticipant", request, None)

        async def delete_it() -> Response:
            self.switchboard.hang_up_via_api(call)
            return Response(status_code=204)

        return await self._faulty("participant-delete", request, delete_it)

    # ------------------------------------------------------------------ conferences

    @_twilio
    async def list_conferences(self, request: Request) -> Response:
        page, page_size = self._paging(request)
        name = request.query_params.get("FriendlyName")
        status = request.query_params.get("Status")
        records = [
            conference_json(self.account_sid, c)
            for c in reversed(self.switchboard.conferences.values())
            if (name is None or c.friendly_name == name) and (status is None or c.status == status)
        ]
        filters = [(k, v) for k, v in (("FriendlyName", name), ("Status", status)) if v is not None]
        uri = f"{account_uri(self.account_sid)}/Conferences.json"
        body = page_json(
            "conferences",
            records,
            uri,
            page,
            page_size,
            filters=filters,
            page_token=request.query_params.get("PageToken"),
        )
        return JSONResponse(body)

    @_twilio
    async def fetch_conference(self, request: Request) -> Response:
        return JSONResponse(conference_json(self.account_sid, self._conference(request)))

    @_twilio
    async def update_conference(self, request: Request) -> Response:
        """``Status=completed`` ends the conference (a no-op once it has ended)."""
        conference = self._conference(request)
        form = await request.form()

        async def update_it() -> Response:
            check_parameters(form)
            if _status(form, CONFERENCE_UPDATE_STATUSES) == "completed":
                self.switchboard.end_conference_via_api(conference)
            return JSONResponse(conference_json(self.account_sid, conference))

        return await self._faulty("conference-update", request, update_it)

    # ------------------------------------------------------------------ calls

    @_twilio
    async def fetch_call(self, request: Request) -> Response:
        call = self._call(request)
        self._record(call, "FetchCall", request, None)
        return JSONResponse(call_json(self.account_sid, call))

    @_twilio
    async def update_call(self, request: Request) -> Response:
        """``completed`` hangs up a live call; ``canceled`` only a queued or ringing one.

        Either way the answer is 200 with the call as it now is: cancelling an answered or
        ended call, or hanging up an ended one, leaves it untouched. ``Url``/``Twiml``
        (redirects) are accepted and ignored: the emulator plays no TwiML on dialled legs.
        """
        call = self._call(request)
        form = await request.form()
        self._record(call, "UpdateCall", request, form)

        async def update_it() -> Response:
            check_parameters(form)
            status = _status(form, CALL_UPDATE_STATUSES)
            if status == "completed":
                self.switchboard.hang_up_via_api(call)
            elif status == "canceled":
                self.switchboard.cancel_via_api(call)
            return JSONResponse(call_json(self.account_sid, call))

        return await self._faulty("calls-update", request, update_it)

    # ------------------------------------------------------------------ /_emulator

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def creates(self, request: Request) -> Response:
        return JSONResponse(
            {
                "total": self.switchboard.creates_total,
                "byLabel": dict(self.switchboard.creates_by_label),
                "times": list(self.switchboard.create_times),
                "attempts": self.create_attempts,
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
        from_ = _text(form, "From")
        to = _text(form, "To")
        if from_ is None or to is None:
            return JSONResponse({"message": "From and To are required"}, status_code=400)
        voice_url = _text(form, "VoiceUrl") or self.switchboard.voice_url
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
            self.fault = parse_fault(form, time.monotonic())
        except ValueError as exc:
            return JSONResponse({"message": str(exc)}, 400)
        return self.faults_state(request)

    def faults_state(self, request: Request) -> Response:
        return JSONResponse(self.fault.state(self.faults_served, time.monotonic()))

    async def get_faults(self, request: Request) -> Response:
        return self.faults_state(request)

    async def reset(self, request: Request) -> Response:
        self.fault, self.faults_served, self.create_attempts = Fault(), 0, 0
        self.switchboard.reset()
        return JSONResponse({"ok": True})

    # ------------------------------------------------------------------ routing

    def routes(self) -> list[Route]:
        """All routes, REST API first."""
        p = API_PREFIX
        conference = p + "/Conferences/{conference}"
        participant = conference + "/Participants/{participant}.json"
        return [
            Route(p + "/Conferences.json", self.list_conferences, methods=["GET"]),
            Route(conference + ".json", self.fetch_conference, methods=["GET"]),
            Route(conference + ".json", self.update_conference, methods=["POST"]),
            Route(conference + "/Participants.json", self.list_participants, methods=["GET"]),
            Route(conference + "/Participants.json", self.create_participant, methods=["POST"]),
            Route(participant, self.fetch_participant, methods=["GET"]),
            Route(participant, self.update_participant, methods=["POST"]),
            Route(participant, self.delete_participant, methods=["DELETE"]),
            Route(p + "/Calls/{call_sid}.json", self.fetch_call, methods=["GET"]),
            Route(p + "/Calls/{call_sid}.json", self.update_call, methods=["POST"]),
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


async def _http_error(request: Request, exc: Exception) -> Response:
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


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body(500, 20500, "Internal Server Error"), status_code=500)


def create_app(
    account_sid: str,
    auth_token: str,
    voice_url: str | None = None,
    ring_seconds: float = 0.2,
    no_answer_seconds: float = 1.0,
    reset_connection: Callable[[Any], bool] | None = None,
) -> Starlette:
    """Build the emulator for one account.

    ``voice_url`` answers ``/_emulator/incoming`` calls (overridable per request);
    ``ring_seconds`` is how long a callee rings before answering or being busy, and
    ``no_answer_seconds`` how long an unanswered callee rings before ``no-answer``.
    ``reset_connection(scope["client"])`` resets a request's TCP connection and returns
    True (``emulator.front.ResetFront.reset``); without it, fault ``mode=reset`` answers 502.
    The ``Switchboard`` holding all state is exposed as ``app.state.switchboard``.
    """
    switchboard = Switchboard(
        account_sid,
        auth_token,
        voice_url=voice_url,
        ring_seconds=ring_seconds,
        no_answer_seconds=no_answer_seconds,
    )
    api = TwilioApi(account_sid, auth_token, switchboard, reset_connection)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await switchboard.aclose()

    app = Starlette(
        routes=api.routes(),
        exception_handlers={404: _http_error, 405: _http_error, 500: _server_error},
        lifespan=lifespan,
    )
    app.state.switchboard = switchboard
    return app
