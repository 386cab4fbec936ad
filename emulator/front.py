"""A TCP front that lets the emulator reset a client's connection (fault ``mode=reset``).

uvicorn gives an ASGI app no way to make a client see a TCP reset, so ``python -m emulator``
puts this small asyncio proxy on the public port. For each client connection it opens one
connection to the real uvicorn server on an internal loopback port and copies bytes both ways
without parsing them, so keep-alive, pipelining and any framing pass through untouched.

The front and uvicorn run in one process on one event loop. uvicorn sees each proxied
connection as coming from the front's end of the upstream connection, which is the ASGI
scope's ``client``; the front indexes its connections by that address. To reset a request's
connection the app calls ``ResetFront.reset(scope["client"])`` (wired in as
``create_app(..., reset_connection=front.reset)``): the front sets ``SO_LINGER`` (on, 0
seconds) on the client socket and aborts it, so the kernel sends RST instead of FIN and the
client's pending read fails with ``ECONNRESET``. This happens synchronously inside the
handler, before it returns, so not one byte of any response reaches that client. The
upstream connection is closed too; other connections are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp

#: ``struct linger`` with l_onoff=1, l_linger=0: close() sends RST and discards unsent data.
LINGER_RESET = struct.pack("ii", 1, 0)
CHUNK = 65536

Address = tuple[str, int]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until EOF, then pass the EOF on; abort on socket errors."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    except OSError:  # reset by the peer, or the other side was closed or reset under us
        writer.transport.abort()


class ResetFront:
    """Forwards TCP connections to ``upstream`` and can reset any of them on request."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        # The front's local address on each upstream connection -> (client, upstream) writers.
        self._links: dict[Address, tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen on ``host:port``; raises ``OSError`` at once if that address is taken."""
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        return self._server

    async def aclose(self) -> None:
        """Stop listening, drop every proxied connection and wait for their handlers."""
        if self._server is not None:
            self._server.close()
        for client, upstream in list(self._links.values()):
            client.transport.abort()
            upstream.transport.abort()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    def reset(self, peer: Any) -> bool:
        """Reset the client connection whose upstream end is ``peer`` (an ASGI scope's client).

        Returns False if ``peer`` is not one of this front's connections (for example when
        the request reached uvicorn directly).
        """
        if not peer:
            return False
        link = self._links.pop((peer[0], peer[1]), None)
        if link is None:
            return False
        client, upstream = link
        sock = client.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        client.transport.abort()
        upstream.transport.abort()
        return True

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        key: Address = upstream_w.get_extra_info("sockname")[:2]
        link = self._links[key] = (client_w, upstream_w)
        try:
            await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
        finally:
            if self._links.get(key) == link:  # not reset, nor the address reused since
                del self._links[key]
            client_w.close()
            upstream_w.close()


async def serve_behind_front(
    make_app: Callable[[Callable[[Any], bool]], ASGIApp],
    host: str,
    port: int,
    log_level: str = "warning",
) -> None:
    """Serve ``make_app(front.reset)`` under uvicorn on a loopback port, fronted on host:port.

    Returns when uvicorn shuts down (SIGINT or SIGTERM, handled by uvicorn as usual).
    """
    internal = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    internal.bind(("127.0.0.1", 0))
    # Listen now so connections the front opens before uvicorn starts accepting just queue.
    internal.listen(2048)
    front = ResetFront(internal.getsockname()[:2])
    # proxy_headers=False: uvicorn must report the real peer (the front) as scope["client"],
    # never an address from a client's X-Forwarded-For header.
    config = uvicorn.Config(
        make_app(front.reset), log_level=log_level, proxy_headers=False, timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    try:
        await front.start(host, port)
        await server.serve(sockets=[internal])
    finally:
        await front.aclose()
        internal.close()
