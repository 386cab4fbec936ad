"""The Twilio REST client's transport (orchestrator/twilio_rest.py): the environment's proxy
and CA bundle are read once, when the client is built, and still apply; requests go out as
the helper library's own client would send them, against a real HTTP server; no answer is
`TwilioUnreachable`, never a retry."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import urllib3

from orchestrator.twilio_rest import TwilioUnreachable, client

API = "https://api.twilio.com"
ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "1" * 32


def test_the_environments_proxy_and_ca_bundle_are_read_once_and_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-ca.pem")
    http = client(ACCOUNT, "token", API).http_client
    monkeypatch.delenv("HTTPS_PROXY")  # read when built, not on every request
    assert isinstance(http.pool, urllib3.ProxyManager)
    assert http.pool.proxy.host == "proxy.example" and http.pool.proxy.port == 3128
    expected = "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert http.pool.proxy_headers["Proxy-Authorization"] == expected
    assert http.pool.connection_pool_kw["ca_certs"] == "/etc/ssl/our-ca.pem"


def test_no_proxy_leaves_the_api_unproxied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.twilio.com")
    http = client(ACCOUNT, "token", API).http_client
    assert http.proxy is None and not isinstance(http.pool, urllib3.ProxyManager)


class _Twilio(BaseHTTPRequestHandler):
    """Answers a Calls update the way Twilio does; records each request it got."""

    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    delay = threading.Event()  # set: never answer (a read timeout at the client)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.command, self.path, dict(self.headers), body))
        if self.delay.is_set():
            threading.Event().wait(2)  # answer nothing until the client has given up
            return
        answer = (
            b'{"sid": "' + CALL.encode() + b'", "status": "canceled", '
            b'"account_sid": "' + ACCOUNT.encode() + b'"}'
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _server() -> Iterator[str]:
    _Twilio.seen = []
    _Twilio.delay.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Twilio)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_goes_out_as_the_helper_library_builds_it() -> None:
    with _server() as base:
        rest = client(ACCOUNT, "secret", base)
        placed = rest.api.v2010.account.calls.create(
            to="+14155550100",
            from_="+14155550101",
            url="https://example.com/twiml",
            status_callback_event=["initiated", "ringing"],
        )
        call = rest.api.v2010.account.calls(CALL).update(status="canceled")
    assert placed.sid == call.sid == CALL and call.status == "canceled"
    assert len(_Twilio.seen) == 2
    method, path, headers, body = _Twilio.seen[0]
    assert (method, path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json")
    credentials = base64.b64encode(f"{ACCOUNT}:secret".encode()).decode()
    assert headers["Authorization"] == f"Basic {credentials}"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["User-Agent"].startswith("twilio-python/")
    # A list is sent as its key repeated, as Twilio reads it.
    assert parse_qs(body.decode())["StatusCallbackEvent"] == ["initiated", "ringing"]
    method, path, _, body = _Twilio.seen[1]
    assert path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert parse_qs(body.decode()) == {"Status": ["canceled"]}


def test_no_answer_is_twilio_unreachable_and_the_request_is_not_sent_twice() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there
    with pytest.raises(TwilioUnreachable, match=r"NewConnectionError|ConnectionRefused"):
        client(ACCOUNT, "secret", f"http://127.0.0.1:{port}").calls(CALL).update(status="canceled")
    with _server() as base:
        _Twilio.delay.set()
        impatient = client(ACCOUNT, "secret", base, timeout=0.3)
        with pytest.raises(TwilioUnreachable, match="ReadTimeout"):
            impatient.calls(CALL).update(status="canceled")
        assert len(_Twilio.seen) == 1
