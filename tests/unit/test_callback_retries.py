"""Callbacks that Twilio retries: the connection overrides on every URL the
service hands Twilio, and the emulator honouring them as Twilio does (against a
receiver in this process). End to end, a callback refused while Redis was away
is applied once when it is back: tests/test_faults.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlsplit

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from emulator.callbacks import CallbackDispatcher
from emulator.overrides import ALL, OverrideError, Overrides, parse_url
from orchestrator import callback_urls

TOKEN = "retry-test-token"
BASE = "https://orchestrator.example.com"


# --- the URLs the service hands Twilio


@pytest.mark.parametrize(
    "url",
    [
        callback_urls.voice(BASE),
        callback_urls.conference_status(BASE),
        callback_urls.call_status(BASE, "ses_1", "mem_1"),
    ],
    ids=["voice", "conference-status", "call-status"],
)
def test_every_callback_url_asks_twilio_to_retry_5xx_and_timeouts(url: str) -> None:
    base, overrides = parse_url(url)  # raises, as Twilio fails the call, on a bad value
    fragment = dict(parse_qsl(urlsplit(url).fragment))
    assert set(fragment) == {"ct", "rt", "tt", "rc", "rp"}
    assert 100 <= int(fragment["ct"]) <= 10000 and 100 <= int(fragment["rt"]) <= 15000
    assert 100 <= int(fragment["tt"]) <= 15000 and 0 <= int(fragment["rc"]) <= 5
    assert {"5xx", "ct", "rt"} <= overrides.policy
    assert overrides.retries == 5
    assert "#" not in base and base == callback_urls.without_fragment(url)
    assert base.startswith(BASE + "/twilio/")


# --- the emulator's reading of the fragment


def test_without_a_fragment_twilio_retries_once_on_connection_failure_only() -> None:
    assert parse_url("https://x.example/cb?a=1") == ("https://x.example/cb?a=1", Overrides())
    assert Overrides().retries == 1 and Overrides().policy == {"ct"}


def test_overrides_are_read_in_twilios_units() -> None:
    base, o = parse_url("https://x.example/cb?a=1#ct=150&rt=900&tt=3000&rc=3&rp=4xx,rt&e=ashburn")
    assert base == "https://x.example/cb?a=1"
    assert (o.connect_timeout, o.read_timeout, o.total, o.retries) == (0.15, 0.9, 3.0, 3)
    assert o.policy == {"4xx", "rt"}
    assert parse_url("https://x.example/#rp=all")[1].policy == ALL


@pytest.mark.parametrize(
    "fragment",
    ["rp=5xx,sometimes", "rp=", "rc=6", "ct=50", "rt=20000", "tt=99", "rc=-1", "rc=two", "zz=1"],
)
def test_values_twilio_refuses_are_refused(fragment: str) -> None:
    with pytest.raises(OverrideError):
        parse_url(f"https://x.example/cb#{fragment}")


# --- the emulator's retries, against a real HTTP server


def _listening_socket() -> socket.socket:
    """A loopback socket already listening: connections made before the server accepts
    wait in its backlog, so nobody has to wait for the server to start."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@asynccontextmanager
async def _receiver(answer: Callable[[int], int]) -> AsyncIterator[tuple[str, list[dict]]]:
    """An app that answers the n-th request (from 1) with answer(n); records what it got."""
    seen: list[dict] = []

    async def hook(request: Request) -> Response:
        form = await request.form()
        seen.append(
            {
                "url": str(request.url),
                "token": request.headers.get("i-twilio-idempotency-token"),
                "valid": RequestValidator(TOKEN).validate(
                    str(request.url), dict(form), request.headers.get("x-twilio-signature", "")
                ),
            }
        )
        status = answer(len(seen))
        if status == 0:  # never answer: a read timeout at Twilio's end
            await asyncio.sleep(30)
        return Response(status_code=status)

    sock = _listening_socket()
    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook?session=s1", seen
    finally:
        server.should_exit = True
        server.force_exit = True
        await task
        sock.close()


async def _deliver(url: str, answer: Callable[[int], int], fragment: str):
    async with _receiver(answer) as (base, seen):
        dispatcher = CallbackDispatcher(TOKEN, retry_delay=0.05)
        try:
            delivery = await dispatcher.send(base + fragment, {"CallSid": "CA" + "1" * 32})
        finally:
            await dispatcher.aclose()
        return delivery, seen


def test_a_refused_callback_is_retried_with_the_same_token_until_it_is_taken() -> None:
    answers = {1: 503, 2: 500}
    delivery, seen = asyncio.run(
        _deliver("", lambda n: answers.get(n, 204), "#rc=5&rp=5xx,ct,rt&tt=15000")
    )
    assert [a.get("status") for a in delivery.as_json()["attempts"]] == [503, 500, 204]
    assert delivery.status == 204 and len(seen) == 3
    assert len({s["token"] for s in seen}) == 1 and seen[0]["token"] == delivery.token
    # The fragment is neither sent nor signed: the app validates the URL it received.
    assert all(s["valid"] and "#" not in s["url"] for s in seen)
    assert seen[0]["url"].endswith("/hook?session=s1")


def test_retries_stop_at_the_count_and_follow_the_policy() -> None:
    delivery, seen = asyncio.run(_deliver("", lambda n: 503, "#rc=2&rp=5xx"))
    assert len(seen) == 3 and delivery.status == 503
    # Twilio's default policy (ct) does not retry an answer, even a 5xx.
    delivery, seen = asyncio.run(_deliver("", lambda n: 503, ""))
    assert len(seen) == 1 and delivery.status == 503
    delivery, seen = asyncio.run(_deliver("", lambda n: 404, "#rc=3&rp=5xx,ct"))
    assert len(seen) == 1
    delivery, seen = asyncio.run(_deliver("", lambda n: 404 if n == 1 else 204, "#rc=3&rp=4xx"))
    assert len(seen) == 2 and delivery.status == 204


def test_a_read_timeout_is_retried_and_the_total_time_bounds_every_attempt() -> None:
    answers = {1: 0}  # the first attempt gets no answer within rt
    delivery, seen = asyncio.run(
        _deliver("", lambda n: answers.get(n, 204), "#rt=300&rc=2&rp=rt&tt=5000")
    )
    assert len(seen) == 2 and delivery.status == 204
    assert "Timeout" in delivery.attempts[0].error
    # tt caps the lot: no answer ever, read timeouts of 400 ms, 1 s in all.
    delivery, seen = asyncio.run(_deliver("", lambda n: 0, "#rt=400&rc=5&rp=rt&tt=1000"))
    assert 1 <= len(seen) <= 3 and delivery.status is None


def test_an_invalid_retry_policy_fails_the_callback_unsent() -> None:
    delivery, seen = asyncio.run(_deliver("", lambda n: 204, "#rc=2&rp=5xx,sometimes"))
    assert not seen and not delivery.delivered and "11243" in delivery.error


def test_connection_failures_are_retried() -> None:
    sock = _listening_socket()
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now

    async def go():
        dispatcher = CallbackDispatcher(TOKEN, retry_delay=0.01)
        try:
            return await dispatcher.send(f"http://127.0.0.1:{port}/x#rc=3&rp=ct", {"A": "1"})
        finally:
            await dispatcher.aclose()

    delivery = asyncio.run(go())
    assert len(delivery.attempts) == 4 and not delivery.delivered
