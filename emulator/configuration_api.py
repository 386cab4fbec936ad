"""The REST handlers of the account's configuration: Keys, Applications, IncomingPhoneNumbers.

Authentication, errors, form parsing and paging are the ones the call handlers use
(``emulator.rest``, ``emulator.forms``, ``emulator.resources``): these resources follow the
same rules of Twilio's description (a ``{Sid}`` must match its pattern and name a resource
of the account, else 404 / 20404; a ``...Method`` is ``GET`` or ``POST``; a sid parameter
has its kind's pattern; list pages keep their filters). State is in ``Directory``.
"""

from __future__ import annotations

import random
import re

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import forms, numbers
from emulator.calls import utcnow
from emulator.configuration import (
    APPLICATION_SETTINGS,
    APPLICATION_SID_PARAMETERS,
    NUMBER_SETTINGS,
    Application,
    Directory,
    Key,
    PhoneNumber,
    read_settings,
)
from emulator.errors import bad_request, not_found
from emulator.resources import (
    application_json,
    incoming_phone_number_json,
    key_json,
)
from emulator.rest import API_PREFIX, TwilioApi, _twilio


class ConfigurationApi:
    """Keys, TwiML Apps and phone numbers of the account ``api`` authenticates."""

    def __init__(self, api: TwilioApi, directory: Directory) -> None:
        self.api = api
        self.account_sid = api.account_sid
        self.directory = directory

    def authorize(self, request: Request) -> None:
        """The REST API's own check (``TwilioApi.authorize``)."""
        self.api.authorize(request)

    @staticmethod
    def _lookup(request: Request, prefix: str, table: dict) -> object:
        """``{Sid}`` of kind ``prefix`` naming a resource of ``table``, else 404 / 20404."""
        sid = request.path_params["sid"]
        found = table.get(sid) if forms.is_sid(prefix, sid) else None
        if found is None:
            raise not_found(request.url.path)
        return found

    # ------------------------------------------------------------------ keys

    @_twilio
    async def create_key(self, request: Request) -> Response:
        form = await request.form()
        forms.check_parameters(form)
        key = self.directory.new_key(forms.text(form, "FriendlyName"))
        return JSONResponse(key_json(key, created=True), status_code=201)

    @_twilio
    async def list_keys(self, request: Request) -> Response:
        """The account's keys, newest first, never with a secret."""
        records = [key_json(k) for k in reversed(self.directory.keys.values())]
        return self.api.page(request, "keys", "Keys.json", records, [])

    @_twilio
    async def fetch_key(self, request: Request) -> Response:
        key = self._lookup(request, "SK", self.directory.keys)
        assert isinstance(key, Key)
        return JSONResponse(key_json(key))

    @_twilio
    async def update_key(self, request: Request) -> Response:
        key = self._lookup(request, "SK", self.directory.keys)
        assert isinstance(key, Key)
        form = await request.form()
        forms.check_parameters(form)
        if "FriendlyName" in form:
            key.friendly_name = forms.text(form, "FriendlyName")
            key.date_updated = utcnow()
        return JSONResponse(key_json(key))

    @_twilio
    async def delete_key(self, request: Request) -> Response:
        key = self._lookup(request, "SK", self.directory.keys)
        assert isinstance(key, Key)
        del self.directory.keys[key.sid]
        return Response(status_code=204)

    # ------------------------------------------------------------------ applications

    @_twilio
    async def create_application(self, request: Request) -> Response:
        form = await request.form()
        forms.check_parameters(form)
        application = self.directory.new_application(
            forms.text(form, "FriendlyName"), read_settings(form, APPLICATION_SETTINGS)
        )
        return JSONResponse(application_json(self.account_sid, application), status_code=201)

    @_twilio
    async def list_applications(self, request: Request) -> Response:
        """The account's TwiML Apps, newest first; ``FriendlyName`` matches exactly."""
        name = request.query_params.get("FriendlyName")
        records = [
            application_json(self.account_sid, a)
            for a in reversed(self.directory.applications.values())
            if name is None or a.friendly_name == name
        ]
        filters = [("FriendlyName", name)] if name is not None else []
        return self.api.page(request, "applications", "Applications.json", records, filters)

    @_twilio
    async def fetch_application(self, request: Request) -> Response:
        application = self._lookup(request, "AP", self.directory.applications)
        assert isinstance(application, Application)
        return JSONResponse(application_json(self.account_sid, application))

    @_twilio
    async def update_application(self, request: Request) -> Response:
        application = self._lookup(request, "AP", self.directory.applications)
        assert isinstance(application, Application)
        form = await request.form()
        forms.check_parameters(form)
        if "FriendlyName" in form:
            application.friendly_name = forms.text(form, "FriendlyName")
        application.settings.update(read_settings(form, APPLICATION_SETTINGS))
        application.date_updated = utcnow()
        return JSONResponse(application_json(self.account_sid, application))

    @_twilio
    async def delete_application(self, request: Request) -> Response:
        application = self._lookup(request, "AP", self.directory.applications)
        assert isinstance(application, Application)
        del self.directory.applications[application.sid]
        # Twilio's numbers forget a deleted App: their calls go to their own VoiceUrl again.
        for number in self.directory.numbers.values():
            for key in ("voice_application_sid", "sms_application_sid"):
                if number.settings.get(key) == application.sid:
                    number.settings[key] = None
        return Response(status_code=204)

    # ------------------------------------------------------------------ phone numbers

    def _number_settings(self, form: FormData) -> dict[str, str | bool | None]:
        """A number's settings from ``form``; an App sid must name one of the account's Apps
        (400 / 21218, Twilio's "Invalid ApplicationSid")."""
        forms.check_parameters(form)
        for parameter in APPLICATION_SID_PARAMETERS:
            sid = forms.text(form, parameter)
            if sid is not None and sid not in self.directory.applications:
                raise bad_request(21218, f"{parameter} {sid} is not an application of the account")
        account = forms.text(form, "AccountSid")
        if account is not None and account != self.account_sid:
            raise bad_request(20001, f"AccountSid {account} is not this account")
        return read_settings(form, NUMBER_SETTINGS)

    def _new_address(self, form: FormData) -> str:
        """The number a create buys: ``PhoneNumber`` (E.164, not already the account's), or
        a free one in ``AreaCode`` (a North American area code)."""
        wanted = forms.text(form, "PhoneNumber")
        if wanted is not None:
            if not numbers.is_e164(wanted):
                raise bad_request(21421, f"PhoneNumber {wanted} is invalid")
            if self.directory.number_for(wanted) is not None:
                raise bad_request(21422, f"PhoneNumber {wanted} is not available")
            return wanted
        area = forms.text(form, "AreaCode")
        if area is None:
            raise bad_request(forms.INVALID_PARAMETER, "PhoneNumber or AreaCode is required")
        if not re.fullmatch(r"[2-9][0-9]{2}", area):
            raise bad_request(21451, f"AreaCode {area} is invalid")
        for _ in range(1000):
            candidate = f"+1{area}555{random.randrange(10000):04d}"
            if self.directory.number_for(candidate) is None:
                return candidate
        raise bad_request(21452, f"No phone numbers found in area code {area}")

    @_twilio
    async def create_number(self, request: Request) -> Response:
        form = await request.form()
        settings = self._number_settings(form)
        address = self._new_address(form)
        number = self.directory.new_number(address, forms.text(form, "FriendlyName"), settings)
        return JSONResponse(incoming_phone_number_json(self.account_sid, number), status_code=201)

    @_twilio
    async def list_numbers(self, request: Request) -> Response:
        """The account's numbers, oldest first as Twilio lists them, narrowed by
        ``FriendlyName`` (exact), ``PhoneNumber`` (a part of the number, ``*`` any digit)
        and ``Origin``; ``Beta`` only widens Twilio's list, and no number here is beta."""
        query = request.query_params
        name, part, origin = (query.get(k) for k in ("FriendlyName", "PhoneNumber", "Origin"))
        pattern = re.compile(re.escape(part).replace(r"\*", "[0-9]")) if part is not None else None
        records = [
            incoming_phone_number_json(self.account_sid, n)
            for n in self.directory.numbers.values()
            if (name is None or n.friendly_name == name)
            and (pattern is None or pattern.search(n.phone_number))
            and (origin is None or origin == "twilio")
        ]
        filters = [
            (k, v)
            for k in ("Beta", "FriendlyName", "PhoneNumber", "Origin")
            if (v := query.get(k)) is not None
        ]
        return self.api.page(
            request, "incoming_phone_numbers", "IncomingPhoneNumbers.json", records, filters
        )

    @_twilio
    async def fetch_number(self, request: Request) -> Response:
        number = self._lookup(request, "PN", self.directory.numbers)
        assert isinstance(number, PhoneNumber)
        return JSONResponse(incoming_phone_number_json(self.account_sid, number))

    @_twilio
    async def update_number(self, request: Request) -> Response:
        number = self._lookup(request, "PN", self.directory.numbers)
        assert isinstance(number, PhoneNumber)
        form = await request.form()
        number.settings.update(self._number_settings(form))
        if "FriendlyName" in form:
            number.friendly_name = forms.text(form, "FriendlyName") or number.friendly_name
        number.date_updated = utcnow()
        return JSONResponse(incoming_phone_number_json(self.account_sid, number))

    @_twilio
    async def delete_number(self, request: Request) -> Response:
        number = self._lookup(request, "PN", self.directory.numbers)
        assert isinstance(number, PhoneNumber)
        del self.directory.numbers[number.sid]
        return Response(status_code=204)

    # ------------------------------------------------------------------ routing

    def routes(self) -> list[Route]:
        """The configuration resources' routes."""
        p = API_PREFIX
        routes = []
        for leaf, create, listing, fetch, update, delete in (
            ("Keys", self.create_key, self.list_keys, self.fetch_key, self.update_key,
             self.delete_key),
            ("Applications", self.create_application, self.list_applications,
             self.fetch_application, self.update_application, self.delete_application),
            ("IncomingPhoneNumbers", self.create_number, self.list_numbers, self.fetch_number,
             self.update_number, self.delete_number),
        ):  # fmt: skip
            one = f"{p}/{leaf}/{{sid}}.json"
            routes += [
                Route(f"{p}/{leaf}.json", create, methods=["POST"]),
                Route(f"{p}/{leaf}.json", listing, methods=["GET"]),
                Route(one, fetch, methods=["GET"]),
                Route(one, update, methods=["POST"]),
                Route(one, delete, methods=["DELETE"]),
            ]
        return routes
