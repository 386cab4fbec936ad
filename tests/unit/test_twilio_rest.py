"""The Twilio REST client's HTTP settings: the environment's proxy and CA bundle are read
once, when the client is built, and still apply (orchestrator/twilio_rest.py)."""

from __future__ import annotations

import pytest

from orchestrator.twilio_rest import client

API = "https://api.twilio.com"


def test_the_environments_proxy_and_ca_bundle_are_read_once_and_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-ca.pem")
    session = client("AC" + "0" * 32, "token", API).http_client.session
    assert session.trust_env is False  # not read again on every request
    assert session.proxies["https"] == "http://proxy.example:3128"
    assert session.verify == "/etc/ssl/our-ca.pem"


def test_no_proxy_leaves_the_api_unproxied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.twilio.com")
    session = client("AC" + "0" * 32, "token", API).http_client.session
    assert "https" not in session.proxies
