"""The HTTP/1.1 client the emulator sends its webhooks with: asyncio streams, kept-alive
connections, nothing else.

Why not httpx: a webhook through ``httpx.AsyncClient`` costs about 2 ms of CPU, a tenth of
that through plain streams. The emulator shares its one event loop between Twilio's REST API
and the webhooks each request sets off (a cancelled leg sends two), so at httpx's price
the webhooks of one request delayed the next request by milliseconds: the emulator, not the
app under test, set the pace of anything that sends Twilio several requests at once.

What a webhook needs of HTTP and no more: ``http`` and ``https`` URLs (credentials in the URL
sent as Basic auth, as Twilio does), a body of bytes with its length, and an answer read by
``Content-Length``, ``chunked`` or to the end of the connection. An idle kept-alive
connection the app has closed meanwhile is found out on reuse and the request is sent once
more on a new connection, as every HTTP client does; a request is never sent twice after
any byte of an answer came back. Webhooks go straight to the app, never through a proxy
named by the environment: the app checks the signature against the URL it receives.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

#: Idle connections kept per origin; more are closed once their answer is read.
MAX_IDLE = 32
#: The longest head (status line and headers) an answer may have.
MAX_HEAD = 64 * 1024

# Characters left as they are in a request target: RFC 3986's reserved and unreserved ones
# and '%', so a URL already percent-encoded is sent unchanged.
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"


class WebhookError(Exception):
    """The request got no answer; ``kind`` is the retry policy's name for why."""

    kind = "other"

    def __str__(self) -> str:
        return f"{type(self).__name__}: {super().__str__()}"


class ConnectError(WebhookError):
    """No connection could be made (refused, unreachable, name unknown, TLS refused)."""

    kind = "ct"


class ConnectTimeout(WebhookError):
    """The connection was not made within the connect timeout."""

    kind = "ct"


class ReadTimeout(WebhookError):
    """Connected and sent, but the whole answer did not come within the read timeout."""

    kind = "rt"


class ProtocolError(WebhookError):
    """The answer was not HTTP/1.x, or the connection closed in the middle of it."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""

    @property
    def text(self) -> str:
        charset = "utf-8"
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _Target:
    origin: tuple[str, str, int]  # scheme, host, port
    host_header: str
    path: str
    authorization: str | None


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    loop: asyncio.AbstractEventLoop
    reused: bool = False

    def usable(self) -> bool:
        if self.loop is not asyncio.get_running_loop():
            return False  # kept from an event loop that has ended
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


@dataclass
class WebhookClient:
    """Sends requests from one event loop; connections are kept per origin."""

    ssl_context: ssl.SSLContext | None = None
    _idle: dict[tuple[str, str, int], list[_Connection]] = field(default_factory=dict)

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> Answer:
        """One request and its whole answer; raises a WebhookError if none came."""
        target = _parse(url)
        head = _head(method, target, headers, body)
        for attempt in (1, 2):
            conn = await self._connection(target, connect_timeout)
            try:
                answer, keep = await _exchange(conn, head + (body or b""), method, read_timeout)
            except _Stale:
                conn.close()
                if conn.reused and attempt == 1:
                    continue  # the app closed it while idle: once more, on a new one
                raise ProtocolError("the connection closed before an answer came") from None
            except BaseException:
                conn.close()
                raise
            if keep:
                self._release(target.origin, conn)
            else:
                conn.close()
            return answer
        raise AssertionError("unreachable")

    async def _connection(self, target: _Target, timeout: float) -> _Connection:
        idle = self._idle.get(target.origin, [])
        while idle:
            conn = idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            if conn.loop.is_closed():
                continue  # its transport went with its loop
            conn.close()
        scheme, host, port = target.origin
        context = None
        if scheme == "https":
            if self.ssl_context is None:  # built once: loading the CA store takes milliseconds
                self.ssl_context = ssl.create_default_context()
            context = self.ssl_context
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, limit=MAX_HEAD
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {host}:{port} within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"{host}:{port}: {exc}") from None
        return _Connection(reader, writer, asyncio.get_running_loop())

    def _release(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) < MAX_IDLE:
            conn.reused = False
            idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                if not conn.loop.is_closed():
                    conn.close()
        self._idle.clear()


class _Stale(Exception):
    """The connection ended before any byte of the answer (safe to send again if reused)."""


def _parse(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"not an http(s) URL: {url}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ConnectError(f"bad port in {url}") from None
    host = parts.hostname
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header += f":{parts.port}"
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_TARGET_SAFE)
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return _Target((scheme, host, port), host_header, path, authorization)


def _head(method: str, target: _Target, headers: Mapping[str, str], body: bytes | None) -> bytes:
    lines = [f"{method} {target.path} HTTP/1.1", f"Host: {target.host_header}"]
    if target.authorization:
        lines.append(f"Authorization: {target.authorization}")
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ProtocolError(f"header {name!r} has a line break")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _exchange(
    conn: _Connection, request: bytes, method: str, timeout: float
) -> tuple[Answer, bool]:
    """Send the request and read its answer, all within `timeout`; the answer and whether
    the connection may carry another request."""
    try:
        async with asyncio.timeout(timeout):
            try:
                conn.writer.write(request)
                await conn.writer.drain()
            except ConnectionError:
                raise _Stale from None
            return await _read_answer(conn.reader, method)
    except TimeoutError:
        raise ReadTimeout(f"no whole answer within {timeout:g} s") from None
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise ProtocolError(f"the connection closed during the answer ({exc})") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"an answer's head or chunk line over {MAX_HEAD} bytes") from None


async def _read_answer(reader: asyncio.StreamReader, method: str) -> tuple[Answer, bool]:
    first = True
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if first and not exc.partial:
                raise _Stale from None
            raise
        except ConnectionError:
            if first:
                raise _Stale from None
            raise
        first = False
        status, version, headers = _parse_head(raw)
        if not (100 <= status < 200) or status == 101:
            break  # 1xx (100 Continue, 103 Early Hints) comes before the real answer
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Answer(status, headers), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Answer(status, headers, await _chunked(reader)), keep
    length = headers.get("content-length")
    if length is not None:
        try:
            size = int(length.split(",")[0])
        except ValueError:
            raise ProtocolError(f"bad Content-Length {length!r}") from None
        return Answer(status, headers, await reader.readexactly(size)), keep
    return Answer(status, headers, await reader.read()), False  # to the end of the connection


def _parse_head(raw: bytes) -> tuple[int, str, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise ProtocolError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(code), version, headers


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
