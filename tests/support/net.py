"""HTTP clients for the tests, all sharing one TLS context.

httpx builds a new TLS context for every client it creates, loading the system's
CA store each time (about 20 ms of CPU), and `httpx.get()` and friends create a
client per call. The tests make thousands of requests to processes on loopback,
so every client here shares one context, and the one-off calls share one client.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

TLS = ssl.create_default_context()
_SHARED = httpx.Client(verify=TLS, timeout=10)


def client(**options: Any) -> httpx.Client:
    """An `httpx.Client` with the shared TLS context."""
    return httpx.Client(verify=TLS, **options)


def async_client(**options: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` with the shared TLS context."""
    return httpx.AsyncClient(verify=TLS, **options)


def request(method: str, url: str, **options: Any) -> httpx.Response:
    """One request through the shared client (as `httpx.request`, 10 s timeout by default)."""
    return _SHARED.request(method, url, **options)


def get(url: str, **options: Any) -> httpx.Response:
    return request("GET", url, **options)


def post(url: str, **options: Any) -> httpx.Response:
    return request("POST", url, **options)
