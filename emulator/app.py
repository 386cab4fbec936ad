"""The emulator as one Starlette app: the Twilio REST subset plus the ``/_emulator`` controls.

Each part owns one idea: ``emulator.rest`` the Twilio REST handlers, ``emulator.forms`` how
their parameters are read and checked against Twilio's rules, ``emulator.faults`` the
failures injected on demand, ``emulator.control`` the ``/_emulator`` endpoints,
``emulator.softphones_api`` the agents' softphones, and ``emulator.calls`` (the
``Switchboard``) everything that happens to a call over time. This module only puts them
together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from emulator.calls import Switchboard
from emulator.configuration import Directory
from emulator.configuration_api import ConfigurationApi
from emulator.control import ControlApi
from emulator.errors import http_error, server_error
from emulator.faults import FaultInjector
from emulator.rest import TwilioApi
from emulator.softphones_api import SoftphonesApi


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
    The ``Switchboard`` holding all call state is exposed as ``app.state.switchboard``, the
    account's keys, TwiML Apps and numbers (``Directory``) as ``app.state.directory``.
    """
    switchboard = Switchboard(
        account_sid,
        auth_token,
        voice_url=voice_url,
        ring_seconds=ring_seconds,
        no_answer_seconds=no_answer_seconds,
    )
    faults = FaultInjector(reset_connection)
    # A callback fault makes the app unreachable for the callbacks it covers.
    switchboard.dispatcher.refuse = faults.refuse_callback
    directory = Directory()
    rest = TwilioApi(account_sid, auth_token, switchboard, faults)
    configuration = ConfigurationApi(rest, directory)
    control = ControlApi(switchboard, faults, directory)
    softphones = SoftphonesApi(account_sid, switchboard, directory)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await switchboard.aclose()

    app = Starlette(
        # REST API first
        routes=[*rest.routes(), *configuration.routes(), *control.routes(), *softphones.routes()],
        exception_handlers={404: http_error, 405: http_error, 500: server_error},
        lifespan=lifespan,
    )
    app.state.switchboard = switchboard
    app.state.directory = directory
    return app
