"""The emulator's webhook HTTP client (emulator/webhook_client.py) against real sockets: a
scripted HTTP/1.1 server in this process says exactly what goes over the wire, so each
framing and each failure Twilio's webhooks meet is reproduced byte for byte."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from emulator.webhook_client import (
    ConnectError,
    ProtocolError,
    ReadTimeout,
    WebhookClient,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


@dataclass
class Seen:
    """What the scripted server received: one entry per request, and its connections."""

    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    connections: int = 0


# How the server answers the n-th request (from 1) on a connection: it writes what the
# function returns, then closes the connection if the function says so.
Script = Callable[[int, Seen], Awaitable[tuple[bytes, bool]]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return head[0], headers, body


@asynccontextmanager
async def _server(script: Script, hang_up_after: int = 0) -> AsyncIterator[tuple[str, Seen]]:
    """`hang_up_after` n: once a connection's n-th answer is sent, the next request on it
    is not read; the connection closes as its first bytes arrive (an app's keep-alive
    timeout meeting a client's new request)."""
    seen = Seen()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        n = 0
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                n += 1
                seen.requests.append(request)
                answer, close = await script(n, seen)
                writer.write(answer)
                await writer.drain()
                if close:
                    return
                if n == hang_up_after:
                    await reader.read(1)
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()


def _always(answer: bytes, close: bool = False) -> Script:
    async def script(n: int, seen: Seen) -> tuple[bytes, bool]:
        return answer, close

    return script


async def _post(client: WebhookClient, url: str, body: bytes = b"A=1", read_timeout: float = 5):
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "s"}
    return await client.request(
        "POST", url, headers, body, connect_timeout=5, read_timeout=read_timeout
    )


def test_requests_share_one_kept_alive_connection_and_carry_their_bodies() -> None:
    async def go() -> tuple[list, Seen]:
        async with _server(_always(OK)) as (base, seen):
            client = WebhookClient()
            answers = [
                await _post(client, f"{base}/hook?session=s1", f"A={i}".encode()) for i in range(3)
            ]
            await client.aclose()
            return answers, seen

    answers, seen = asyncio.run(go())
    assert [(a.status, a.text) for a in answers] == [(200, "ok")] * 3
    assert seen.connections == 1
    first, headers, _ = seen.requests[0]
    assert first == "POST /hook?session=s1 HTTP/1.1"
    assert headers["host"].startswith("127.0.0.1:") and headers["content-length"] == "3"
    assert headers["x-twilio-signature"] == "s"
    assert [r[2] for r in seen.requests] == [b"A=0", b"A=1", b"A=2"]


def test_chunked_and_read_to_close_answers_are_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: text/xml; charset=utf-8\r\n\r\n"
        b"5;ext=1\r\n<Resp\r\n8\r\nonse/>\xc3\xa9\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    to_close = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<Response/>"

    async def go():
        async with _server(_always(chunked)) as (base, seen):
            client = WebhookClient()
            a = await _post(client, base + "/voice")
            b = await _post(client, base + "/voice")  # the chunked answer left it reusable
            await client.aclose()
            chunked_connections = seen.connections
        async with _server(_always(to_close, close=True)) as (base, seen):
            client = WebhookClient()
            c = await _post(client, base + "/voice")
            d = await _post(client, base + "/voice")  # read to the end: a new connection
            await client.aclose()
            return a, b, c, d, chunked_connections, seen.connections

    a, b, c, d, chunked_connections, close_connections = asyncio.run(go())
    assert a.text == b.text == "<Response/>é" and chunked_connections == 1
    assert c.text == d.text == "<Response/>" and close_connections == 2


def test_an_idle_connection_the_app_closed_is_replaced_and_the_request_sent_once() -> None:
    async def go():
        async with _server(_always(OK), hang_up_after=1) as (base, seen):
            client = WebhookClient()
            await _post(client, base + "/a")
            answer = await _post(client, base + "/b")
            await client.aclose()
            return answer, seen

    answer, seen = asyncio.run(go())
    assert answer.status == 200
    # /b reached the app once, on a second connection.
    assert [r[0] for r in seen.requests] == ["POST /a HTTP/1.1", "POST /b HTTP/1.1"]
    assert seen.connections == 2


def test_a_connection_cut_in_the_middle_of_an_answer_is_an_error_not_a_resend() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"

    async def go():
        async with _server(_always(cut, close=True)) as (base, seen):
            client = WebhookClient()
            with pytest.raises(ProtocolError) as failed:
                await _post(client, base + "/hook")
            await client.aclose()
            return failed.value, seen

    error, seen = asyncio.run(go())
    assert error.kind == "other" and len(seen.requests) == 1


def test_no_connection_is_ct_and_no_answer_in_time_is_rt() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there

    async def slow(n: int, seen: Seen) -> tuple[bytes, bool]:
        await asyncio.sleep(2)
        return OK, False

    async def go():
        client = WebhookClient()
        with pytest.raises(ConnectError) as refused:
            await _post(client, f"http://127.0.0.1:{port}/hook")
        async with _server(slow) as (base, _seen):
            with pytest.raises(ReadTimeout) as late:
                await _post(client, base + "/hook", read_timeout=0.2)
        await client.aclose()
        return refused.value, late.value

    refused, late = asyncio.run(go())
    assert refused.kind == "ct" and str(refused).startswith("ConnectError")
    assert late.kind == "rt" and str(late).startswith("ReadTimeout")


def test_credentials_in_the_url_are_sent_as_basic_auth_and_interim_answers_skipped() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + OK

    async def go():
        async with _server(_always(interim)) as (base, seen):
            client = WebhookClient()
            url = base.replace("http://", "http://us%40er:p%3Ass@") + "/hook?a=1&b=%2F"
            answer = await client.request(
                "GET", url, {"Accept": "*/*"}, None, connect_timeout=5, read_timeout=5
            )
            await client.aclose()
            return answer, seen

    answer, seen = asyncio.run(go())
    assert answer.status == 200 and answer.text == "ok"
    first, headers, _ = seen.requests[0]
    assert first == "GET /hook?a=1&b=%2F HTTP/1.1" and "content-length" not in headers
    assert headers["authorization"] == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert "@" not in headers["host"]


def test_a_header_with_a_line_break_is_refused_unsent() -> None:
    async def go():
        async with _server(_always(OK)) as (base, seen):
            client = WebhookClient()
            with pytest.raises(ProtocolError):
                await client.request(
                    "POST", base, {"X-Evil": "a\r\nInjected: 1"}, b"", connect_timeout=5,
                    read_timeout=5,
                )  # fmt: skip
            await client.aclose()
            return seen

    assert asyncio.run(go()).requests == []
