"""The official `twilio` REST client, pointed wherever TWILIO_API_BASE_URL says: built in
one place for the workers (which dial) and `orchestrator twilio setup` (which configures
the account), so both reach the emulator the same way.

Its HTTP goes through `PooledHttpClient`, the helper library's own extension point for a
transport (`twilio.http.HttpClient`), on urllib3's connection pool. The library's default
puts `requests` on top of that same pool, which doubles what a request costs the worker
(header parsing through the email package, sessions, hooks, the environment read on every
request): 1.3 ms of CPU a request against 0.67 ms, measured against a bare server. A
worker that ends a ring-all's nine other legs at once pays that nine times over, under
one interpreter lock, before the last phone stops ringing."""

from __future__ import annotations

import base64
import json
import logging
import os
from urllib.parse import unquote, urlencode, urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

import certifi
import urllib3
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from orchestrator.settings import TWILIO_API

# Every call-related Twilio request is cut at 15 s; waiting longer only holds a worker.
TIMEOUT_SECONDS = 15
# Connections kept open to Twilio, at least the legs a worker ends at once (LEG_CONCURRENCY).
POOL_SIZE = 16
_JSON_TYPES = ("application/json", "application/scim+json")

_logger = logging.getLogger("twilio.http_client")


class TwilioUnreachable(Exception):
    """No answer came from Twilio: the connection failed or was cut, or the answer did not
    come in time. Whether Twilio acted on the request is unknown."""


def client(
    account_sid: str,
    auth_token: str,
    api_base_url: str = TWILIO_API,
    timeout: float = TIMEOUT_SECONDS,
) -> Client:
    """A client of the account `account_sid`, against `api_base_url` (Twilio's, or the
    emulator's)."""
    rest = Client(account_sid, auth_token, http_client=PooledHttpClient(api_base_url, timeout))
    if api_base_url != TWILIO_API:
        # TWILIO_REGION / TWILIO_EDGE would rewrite the emulator's host name.
        rest.region = None
        rest.edge = None
        rest.api.base_url = api_base_url
    return rest


class PooledHttpClient(HttpClient):
    """The helper library's requests sent on urllib3 directly, with what `requests` would
    have done for them: the environment's proxy (HTTPS_PROXY, NO_PROXY...) and CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's), read once, here; no retries
    (a create sent twice could dial twice; the jobs decide what to try again); no
    redirects unless asked. Failures to get an answer raise `TwilioUnreachable`."""

    def __init__(self, api_base_url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        super().__init__(_logger, False, timeout)
        self.ca_certs = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or certifi.where()
        )
        self.proxy = _proxy_for(api_base_url)
        options = {"maxsize": POOL_SIZE, "cert_reqs": "CERT_REQUIRED", "ca_certs": self.ca_certs}
        if self.proxy is None:
            self.pool: urllib3.PoolManager = urllib3.PoolManager(**options)
        else:
            parts = urlsplit(self.proxy)
            headers = {}
            if parts.username:
                pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                headers["Proxy-Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            self.pool = urllib3.ProxyManager(self.proxy, proxy_headers=headers, **options)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if timeout is None:
            timeout = self.timeout
        elif timeout <= 0:
            raise ValueError(timeout)
        method = method.upper()
        headers = dict(headers or {})
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        body: str | None = None
        if data:
            if headers.get("Content-Type") in _JSON_TYPES:
                body = json.dumps(data)
            else:
                body = urlencode(data, doseq=True)
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        self.log_request({"method": method, "url": url, "params": None, "headers": headers})
        try:
            answer = self.pool.request(
                method,
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(timeout),
                retries=False,
                redirect=allow_redirects,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TwilioUnreachable(f"{type(exc).__name__}: {exc}") from exc
        response = Response(answer.status, answer.data.decode("utf-8", "replace"), answer.headers)
        self.log_response(answer.status, response)
        return response


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url`, unless NO_PROXY exempts its host."""
    parts = urlsplit(url)
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
