"""The Twilio REST subset the orchestrator uses: participants, conferences and calls
(the account's keys, TwiML Apps and numbers are ``emulator.configuration_api``'s).

REST handlers do what api.twilio.com does synchronously (authenticate, validate, create or
look up, render JSON) and leave everything that unfolds over time to ``Switchboard``. A new
participant's call only starts playing once its 201 has been sent, so the app always knows
the call sid before the first webhook about it can arrive.

Path parameters are checked as Twilio's OpenAPI description declares them: every participant
operation but create needs the conference's ``CF`` sid (a friendly name there is refused with
405 / 20004, Twilio's answer), and conferences and calls are looked up by sid only. Form and
query parameters are read by ``emulator.forms``; an armed fault (``emulator.faults``) can
stand in for a request's answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import time
from collections.abc import Awaitable, Callable

from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import forms
from emulator.calls import (
    Call,
    CoachingError,
    Conference,
    ParticipantUpdate,
    Switchboard,
    call_progress_subscription,
    conference_subscription,
)
from emulator.errors import (
    TwilioError,
    bad_request,
    method_not_allowed,
    not_found,
    unauthorized,
)
from emulator.faults import FaultInjector
from emulator.forms import CALL_SID, CONFERENCE_SID, INVALID_PARAMETER
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

Handler = Callable[["TwilioApi", Request], Awaitable[Response]]


def _twilio(handler: Handler) -> Handler:
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


class TwilioApi:
    """Route handlers bound to one account, one ``Switchboard`` and its fault injector."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        switchboard: Switchboard,
        faults: FaultInjector,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.switchboard = switchboard
        self.faults = faults

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

    def page(
        self,
        request: Request,
        key: str,
        leaf: str,
        records: list,
        filters: list[tuple[str, str]],
        sid_key: str = "sid",
    ) -> Response:
        """One page of a list answer, as every Twilio list pages: the `PageSize`/`Page`/
        `PageToken` of the request, its filters kept in every page URI."""
        page, page_size = forms.paging(request.query_params)
        body = page_json(
            key,
            records,
            f"{account_uri(self.account_sid)}/{leaf}",
            page,
            page_size,
            filters=filters,
            page_token=request.query_params.get("PageToken"),
            sid_key=sid_key,
        )
        return JSONResponse(body)

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
        entry = {
            "operation": operation,
            "time": request.state.received,
            "params": forms.as_params(form),
        }
        call.requests.append(entry)

    # ------------------------------------------------------------------ participants

    @_twilio
    async def create_participant(self, request: Request) -> Response:
        self.switchboard.create_attempts += 1
        # A fault applies before the parameters are validated: a faulted create that would
        # have been a 400 is faulted too (a delayed one is a late 400).
        return await self.faults.apply(
            "participant-create",
            request,
            lambda held: self._create_participant(request, playback_after=held),
            read_before_reset=True,
        )

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
        to, from_ = forms.addresses(form)
        forms.check_parameters(form)
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
            label=forms.text(form, "Label"),
            status_callback=call_progress_subscription(
                forms.text(form, "StatusCallback"),
                forms.text(form, "StatusCallbackMethod"),
                forms.texts(form, "StatusCallbackEvent"),
            ),
            conference_callback=conference_subscription(
                forms.text(form, "ConferenceStatusCallback"),
                forms.text(form, "ConferenceStatusCallbackMethod"),
                forms.texts(form, "ConferenceStatusCallbackEvent"),
            ),
            muted=forms.flag(form, "Muted", False),
            start_conference_on_enter=forms.flag(form, "StartConferenceOnEnter", True),
            end_conference_on_exit=forms.flag(form, "EndConferenceOnExit", False),
            coaching=forms.optional_flag(form, "Coaching"),
            call_sid_to_coach=forms.text(form, "CallSidToCoach"),
            settings=forms.stored(form, forms.STORED_CREATE_PARAMETERS),
        )

    async def _start_playback(self, call: Call) -> None:
        self.switchboard.start_playback(call)

    @_twilio
    async def list_participants(self, request: Request) -> Response:
        """Current participants, filtered by ``Muted``/``Hold``/``Coaching`` when given."""
        conference = self._participants_conference(request)
        wanted = forms.participant_filters(request.query_params)
        records = [
            participant_json(self.account_sid, call)
            for call in conference.participants()
            if all(getattr(call, attribute) == value for _, attribute, value in wanted)
        ]
        return self.page(
            request,
            "participants",
            f"Conferences/{conference.sid}/Participants.json",
            records,
            [(key, "true" if value else "false") for key, _, value in wanted],
            sid_key="call_sid",
        )

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

        async def update_it(held: float) -> Response:
            forms.check_parameters(form)
            update = ParticipantUpdate(
                muted=forms.optional_flag(form, "Muted"),
                hold=forms.optional_flag(form, "Hold"),
                end_conference_on_exit=forms.optional_flag(form, "EndConferenceOnExit"),
                coaching=forms.optional_flag(form, "Coaching"),
                call_sid_to_coach=forms.text(form, "CallSidToCoach"),
                settings=forms.stored(form, forms.STORED_UPDATE_PARAMETERS),
            )
            try:
                self.switchboard.update_participant(call, update)
            except CoachingError as exc:
                raise bad_request(INVALID_PARAMETER, str(exc)) from None
            return JSONResponse(participant_json(self.account_sid, call))

        return await self.faults.apply("participant-update", request, update_it)

    @_twilio
    async def delete_participant(self, request: Request) -> Response:
        call = self._participant(request)
        self._record(call, "DeleteParticipant", request, None)

        async def delete_it(held: float) -> Response:
            self.switchboard.hang_up_via_api(call)
            return Response(status_code=204)

        return await self.faults.apply("participant-delete", request, delete_it)

    # ------------------------------------------------------------------ conferences

    @_twilio
    async def list_conferences(self, request: Request) -> Response:
        name = request.query_params.get("FriendlyName")
        status = request.query_params.get("Status")
        records = [
            conference_json(self.account_sid, c)
            for c in reversed(self.switchboard.conferences.values())
            if (name is None or c.friendly_name == name) and (status is None or c.status == status)
        ]
        filters = [(k, v) for k, v in (("FriendlyName", name), ("Status", status)) if v is not None]
        return self.page(request, "conferences", "Conferences.json", records, filters)

    @_twilio
    async def fetch_conference(self, request: Request) -> Response:
        return JSONResponse(conference_json(self.account_sid, self._conference(request)))

    @_twilio
    async def update_conference(self, request: Request) -> Response:
        """``Status=completed`` ends the conference (a no-op once it has ended)."""
        conference = self._conference(request)
        form = await request.form()

        async def update_it(held: float) -> Response:
            forms.check_parameters(form)
            if forms.update_status(form, forms.CONFERENCE_UPDATE_STATUSES) == "completed":
                self.switchboard.end_conference_via_api(conference)
            return JSONResponse(conference_json(self.account_sid, conference))

        return await self.faults.apply("conference-update", request, update_it)

    # ------------------------------------------------------------------ calls

    @_twilio
    async def list_calls(self, request: Request) -> Response:
        """Every call of the account, newest first, ended ones included (unlike participants,
        Twilio keeps a call's record), narrowed by ``To``, ``From``, ``ParentCallSid``,
        ``Status`` and the ``StartTime``/``EndTime`` filters (``forms.call_list_filters``)."""
        exact, times, given = forms.call_list_filters(request.query_params)
        records = [
            call_json(self.account_sid, call)
            for call in reversed(self.switchboard.calls.values())
            if exact.get("To", call.to) == call.to
            and exact.get("From", call.from_) == call.from_
            and "ParentCallSid" not in exact  # no call of the emulator has a parent
            and exact.get("Status", call.status) == call.status
            and all(
                f.admits(call.started_at if f.parameter.startswith("Start") else call.ended_at)
                for f in times
            )
        ]
        return self.page(request, "calls", "Calls.json", records, given)

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

        async def update_it(held: float) -> Response:
            forms.check_parameters(form)
            status = forms.update_status(form, forms.CALL_UPDATE_STATUSES)
            if status == "completed":
                self.switchboard.hang_up_via_api(call)
            elif status == "canceled":
                self.switchboard.cancel_via_api(call)
            return JSONResponse(call_json(self.account_sid, call))

        return await self.faults.apply("calls-update", request, update_it)

    # ------------------------------------------------------------------ routing

    def routes(self) -> list[Route]:
        """The REST API's routes."""
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
            Route(p + "/Calls.json", self.list_calls, methods=["GET"]),
            Route(p + "/Calls/{call_sid}.json", self.fetch_call, methods=["GET"]),
            Route(p + "/Calls/{call_sid}.json", self.update_call, methods=["POST"]),
        ]
