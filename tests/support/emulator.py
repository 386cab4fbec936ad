"""Shared harness for the emulator's tests: the emulator and a webhook receiver in-process.

The emulator and a small webhook receiver both run under uvicorn in background threads. The
receiver records every webhook and checks its ``X-Twilio-Signature`` with the twilio library's
own ``RequestValidator``, exactly as the orchestrator's webhooks do. Each test gets its own URL
namespace on the receiver, so its webhooks never mix with another test's stragglers.

Test modules load the fixtures with ``pytest_plugins = ("tests.support.emulator",)``; each
module gets its own emulator and receiver (module scope). ``emu_cli_url`` is the other way to
run it: ``python -m emulator`` in its own process, behind its TCP front (the only way to get
real connection resets), started once per module that asks for it.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from emulator.app import create_app
from orchestrator.launch import Process, free_port, python, wait_http, wait_until
from tests.support import net

ACCOUNT_SID = "AC" + "5e" * 16
AUTH_TOKEN = "emulator-test-token"
CALLER_ID = "+15005550006"
ALL_CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]
ALL_CONFERENCE_EVENTS = ["start", "end", "join", "leave", "mute", "hold"]
RING_SECONDS = 0.05
NO_ANSWER_SECONDS = 0.2
ROOT = Path(__file__).resolve().parents[2]
#: How long the harness waits for a webhook or a call state, and how often it looks.
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.01


class EmuServer:
    """An ASGI app served by uvicorn in a daemon thread.

    uvicorn gets a socket already bound to a port the kernel chose, rather than a port
    number to bind, so no other process can take the port in between.
    """

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> EmuServer:
        self._thread.start()
        wait_until(
            lambda: self._server.started, WAIT_SECONDS, f"uvicorn on {self.url}", POLL_SECONDS
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@dataclass(frozen=True)
class Hook:
    """One webhook as the receiver got it."""

    method: str
    path: str
    url: str
    query: dict[str, str]
    form: ImmutableMultiDict
    signature: str
    valid: bool

    @property
    def params(self) -> dict[str, str]:
        return dict(self.form)

    def __getitem__(self, key: str) -> str:
        return self.form[key]

    @property
    def event(self) -> str:
        """Conference event name, or the call status for call-progress webhooks."""
        return self.form.get("StatusCallbackEvent") or self.form.get("CallStatus", "")


class EmuReceiver:
    """Records webhooks, verifies signatures, answers with canned responses per path."""

    def __init__(self, auth_token: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.hooks: list[Hook] = []
        self.responses: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["GET", "POST"])])

    async def _receive(self, request: Request) -> Response:
        signature = request.headers.get("x-twilio-signature", "")
        url = str(request.url)
        if request.method == "POST":
            form = ImmutableMultiDict((await request.form()).multi_items())
            valid = self.validator.validate(url, form, signature)
        else:
            form = ImmutableMultiDict(request.query_params.multi_items())
            valid = self.validator.validate(url, {}, signature)
        hook = Hook(
            request.method,
            request.url.path,
            url,
            dict(request.query_params),
            form,
            signature,
            valid,
        )
        with self._lock:
            self.hooks.append(hook)
        status, body = self.responses.get(request.url.path, (204, ""))
        return Response(body, status_code=status, media_type="application/xml" if body else None)

    def snapshot(self, prefix: str) -> list[Hook]:
        with self._lock:
            return [h for h in self.hooks if h.path.startswith(prefix)]


class EmuHooks:
    """One test's slice of the receiver: URLs under ``/<id>/`` and the webhooks sent there."""

    def __init__(self, receiver: EmuReceiver, base_url: str) -> None:
        self.receiver = receiver
        self.prefix = f"/{uuid.uuid4().hex[:12]}"
        self.base_url = base_url

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.prefix}{path}"

    def serve(self, path: str, status: int, body: str = "") -> None:
        self.receiver.responses[self.prefix + path] = (status, body)

    def all(self) -> list[Hook]:
        return self.receiver.snapshot(self.prefix)

    def for_call(self, call_sid: str) -> list[Hook]:
        return [h for h in self.all() if h.form.get("CallSid") == call_sid]

    def events(self, hooks: list[Hook] | None = None) -> list[str]:
        return [h.event for h in (self.all() if hooks is None else hooks)]

    def wait_count(self, count: int, timeout: float = WAIT_SECONDS) -> list[Hook]:
        return wait_until(
            lambda: (hooks := self.all()) and len(hooks) >= count and hooks,
            timeout,
            f"{count} webhooks under {self.prefix} (have {self.events()})",
            POLL_SECONDS,
        )

    def wait_event(
        self, event: str, call_sid: str | None = None, timeout: float = WAIT_SECONDS
    ) -> Hook:
        def find() -> Hook | None:
            for hook in self.all():
                if hook.event == event and (call_sid is None or hook["CallSid"] == call_sid):
                    return hook
            return None

        return wait_until(
            find, timeout, f"{event} under {self.prefix} (have {self.events()})", POLL_SECONDS
        )


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def emu_receiver() -> Iterator[tuple[EmuReceiver, str]]:
    receiver = EmuReceiver(AUTH_TOKEN)
    with EmuServer(receiver.app) as server:
        yield receiver, server.url


@pytest.fixture(scope="module")
def emu_server(emu_receiver: tuple[EmuReceiver, str]) -> Iterator[str]:
    _, receiver_url = emu_receiver
    app = create_app(
        ACCOUNT_SID,
        AUTH_TOKEN,
        voice_url=f"{receiver_url}/voice",
        ring_seconds=RING_SECONDS,
        no_answer_seconds=NO_ANSWER_SECONDS,
    )
    with EmuServer(app) as server:
        yield server.url


@pytest.fixture
def emu_url(emu_server: str) -> str:
    """The emulator's base URL, reset to a blank state for this test."""
    assert net.post(f"{emu_server}/_emulator/reset").status_code == 200
    return emu_server


@pytest.fixture
def emu_hooks(emu_receiver: tuple[EmuReceiver, str]) -> Iterator[EmuHooks]:
    receiver, url = emu_receiver
    hooks = EmuHooks(receiver, url)
    yield hooks
    bad = [h.url for h in hooks.all() if not h.valid]
    assert not bad, f"webhooks with invalid signatures: {bad}"


@pytest.fixture(scope="module")
def emu_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m emulator`` in a subprocess (credentials from the environment), via its front."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TWILIO_REGION", "TWILIO_EDGE")}
    env.update(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    log = tmp_path_factory.mktemp("emulator-cli") / "emulator.log"
    args = python("-m", "emulator", "--port", str(port), "--ring-seconds", "0.05")
    process = Process("emulator", args, env, log, ROOT).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_emulator/health", [process], timeout=15)
        assert net.get(f"{url}/_emulator/health", timeout=1).json() == {"ok": True}
        yield url
    finally:
        process.stop()


@pytest.fixture
def emu_cli_url(emu_cli: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The subprocess emulator, reset; TWILIO_REGION/EDGE unset for clients built in the test."""
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    assert net.post(f"{emu_cli}/_emulator/reset").status_code == 200
    return emu_cli


@pytest.fixture
def emu_client(emu_url: str, monkeypatch: pytest.MonkeyPatch) -> Client:
    """The official client, pointed at the emulator."""
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = emu_url
    return client


def emu_dial(
    client: Client,
    hooks: EmuHooks,
    conference: str,
    label: str | None,
    to: str,
    *,
    call_events: list[str] | None = ALL_CALL_EVENTS,
    conference_events: list[str] | None = ALL_CONFERENCE_EVENTS,
    conference_callback: str = "/conference-status",
    **kwargs: Any,
) -> Any:
    """Dial like the orchestrator's worker: call events per member, conference events shared."""
    optional: dict[str, Any] = {}
    if call_events is not None:
        optional["status_callback_event"] = call_events
    if conference_events is not None:
        optional["conference_status_callback_event"] = conference_events
    if label is not None:
        optional["label"] = label
    kwargs.setdefault("status_callback_method", "POST")
    kwargs.setdefault("conference_status_callback_method", "POST")
    return client.conferences(conference).participants.create(
        from_=CALLER_ID,
        to=to,
        status_callback=hooks.url(f"/call-status?session={conference}&member={label}"),
        conference_status_callback=hooks.url(conference_callback),
        **optional,
        **kwargs,
    )


def emu_get(url: str, path: str) -> httpx.Response:
    return net.get(f"{url}/_emulator/{path}", timeout=5)


def emu_wait_status(url: str, call_sid: str, status: str) -> dict[str, Any]:
    """Wait until the emulator reports ``status`` for the call; return its inspection."""
    return wait_until(
        lambda: (body := emu_get(url, f"calls/{call_sid}").json())["status"] == status and body,
        WAIT_SECONDS,
        f"{call_sid} to be {status}",
        POLL_SECONDS,
    )


def emu_api(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return net.request(
        method,
        f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/{path}",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
        **kwargs,
    )


def emu_register_softphone(url: str, access_token: str, answer: str = "answer") -> dict[str, Any]:
    """Register an agent's softphone with the emulator, as the Voice SDK registers with
    Twilio: ``answer`` (``answer``, ``decline``, ``ignore``) is what it does when rung.
    Returns the registration (``identity``, ``expires``, ...); raises if it was refused."""
    response = net.post(
        f"{url}/_emulator/softphones",
        data={"AccessToken": access_token, "Answer": answer},
        timeout=5,
    )
    assert response.status_code == 201, f"softphone refused: {response.text}"
    return response.json()


def emu_softphone_call(url: str, identity: str, to: str, **params: str) -> httpx.Response:
    """The softphone of ``identity`` places a call to ``to`` (``device.connect``), with
    ``params`` as custom parameters (``callerId=...``); the emulator's answer, unchecked."""
    return net.post(
        f"{url}/_emulator/softphones/{identity}/calls", data={"To": to, **params}, timeout=20
    )
